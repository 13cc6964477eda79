"""Queries the web service needs beyond ``store.queries`` (sync psycopg, plain dicts).

- Open311 request rows with everything a GeoReport answer shows: the address and typed
  attributes given with the request (table ``open311_details``), the state of the
  incident the report joined, the reason of its last transition and, for one request,
  the incident's history.
- Recording a POSTed request at once (report row, details, contact) so a GET finds it
  before the pipeline's sink writes the same report row (the sink's insert is
  ``ON CONFLICT DO NOTHING`` on the same key, so the two never disagree).
- Request updates (mySociety's ``servicerequestupdates``), users and keys by name.

Personal data (``reporter_contacts``) is written here and never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from store._db import Db, cursor, fetch
from store.queries import incident_filters


def ping(db: Db) -> None:
    """Run a trivial query (readiness)."""
    fetch(db, "SELECT 1")


# --- Open311 requests -------------------------------------------------------------------

_REQUEST_SELECT = """
SELECT r.report_id, r.category, r.description, r.media_url, r.lat, r.lon, r.reported_at,
       r.asset_id, d.address_string, d.address_id, d.attributes,
       l.incident_id, coalesce(i.status, l.status) AS incident_status,
       coalesce(i.merged_into, l.merged_into) AS merged_into,
       i.expected_at, greatest(coalesce(i.updated_at, l.updated_at), r.reported_at) AS updated_at,
       i.history -> -1 ->> 'reason' AS last_reason{extra}
FROM reports r
LEFT JOIN open311_details d ON d.report_id = r.report_id
LEFT JOIN report_incident l ON l.report_id = r.report_id
LEFT JOIN incidents i ON i.incident_id = l.incident_id
"""


def request_rows(
    db: Db,
    *,
    ids: Sequence[str] = (),
    service_codes: Sequence[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    closed_statuses: Sequence[str] | None = None,
    want_closed: bool | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    limit: int = 1000,
    offset: int = 0,
    with_history: bool = False,
) -> list[dict[str, Any]]:
    """Request rows, newest first.

    ``start``/``end`` bound ``reported_at`` (both inclusive, as the spec's date range);
    ``want_closed`` keeps closed (True) or open (False) requests, where closed means the
    incident's status is one of ``closed_statuses`` (a report not yet linked is open);
    ``bbox`` is ``(min_lon, min_lat, max_lon, max_lat)``.
    """
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if ids:
        where.append("r.report_id = ANY(%(ids)s)")
        params["ids"] = [UUID(i) for i in ids]
    if service_codes:
        where.append("r.category = ANY(%(codes)s)")
        params["codes"] = list(service_codes)
    if start is not None:
        where.append("r.reported_at >= %(start)s")
        params["start"] = start
    if end is not None:
        where.append("r.reported_at <= %(end)s")
        params["end"] = end
    if want_closed is not None:
        params["closed"] = list(closed_statuses or ())
        test = "coalesce(coalesce(i.status, l.status) = ANY(%(closed)s), false)"
        where.append(test if want_closed else f"NOT {test}")
    if bbox is not None:
        where.append("r.lon BETWEEN %(w)s AND %(e)s AND r.lat BETWEEN %(s)s AND %(n)s")
        params |= {"w": bbox[0], "s": bbox[1], "e": bbox[2], "n": bbox[3]}
    extra = ", i.history" if with_history else ""
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return fetch(
        db,
        _REQUEST_SELECT.format(extra=extra)
        + clause
        + " ORDER BY r.reported_at DESC, r.report_id LIMIT %(limit)s OFFSET %(offset)s",
        params,
        custom_plan=bbox is not None or start is not None or end is not None,
    )


def record_request(
    db: Db,
    *,
    report: dict[str, Any],
    address_string: str | None,
    address_id: str | None,
    attributes: dict[str, Any],
    api_key_name: str | None,
    device_id: str | None,
    contact: dict[str, str | None] | None,
) -> None:
    """Record a POSTed request in one transaction (idempotent by report id).

    ``report`` holds the ``reports`` columns of the CitizenReport that was published.
    """
    rid = UUID(str(report["report_id"]))
    with cursor(db) as cur:
        cur.execute(
            b"INSERT INTO reports (report_id, reported_at, category, lat, lon, description, "
            b"media_url, asset_id, client_id) VALUES (%(report_id)s, %(reported_at)s, "
            b"%(category)s, %(lat)s, %(lon)s, %(description)s, %(media_url)s, %(asset_id)s, "
            b"%(client_id)s) ON CONFLICT (report_id, reported_at) DO NOTHING",
            {**report, "report_id": rid},
        )
        cur.execute(
            b"INSERT INTO open311_details (report_id, address_string, address_id, attributes, "
            b"api_key_name, device_id) VALUES (%s, %s, %s, %s, %s, %s) "
            b"ON CONFLICT (report_id) DO NOTHING",
            (rid, address_string, address_id, Jsonb(attributes), api_key_name, device_id),
        )
        if contact and any(contact.values()):
            cur.execute(
                b"INSERT INTO reporter_contacts (report_id, email, phone, first_name, last_name) "
                b"VALUES (%s, %s, %s, %s, %s) ON CONFLICT (report_id) DO NOTHING",
                (
                    rid,
                    contact.get("email"),
                    contact.get("phone"),
                    contact.get("first_name"),
                    contact.get("last_name"),
                ),
            )


def forget_request(db: Db, report_id: str, reported_at: datetime) -> None:
    """Take back what ``record_request`` wrote, for a request that never reached the pipeline."""
    rid = UUID(report_id)
    with cursor(db) as cur:
        cur.execute(b"DELETE FROM reporter_contacts WHERE report_id = %s", (rid,))
        cur.execute(b"DELETE FROM open311_details WHERE report_id = %s", (rid,))
        cur.execute(
            b"DELETE FROM reports WHERE report_id = %s AND reported_at = %s", (rid, reported_at)
        )


def request_exists(db: Db, report_id: str) -> bool:
    """Whether a report with this id is recorded."""
    return bool(
        fetch(db, "SELECT 1 FROM reports WHERE report_id = %s LIMIT 1", (UUID(report_id),))
    )


def request_updates(
    db: Db, *, start: datetime, end: datetime, limit: int = 1000
) -> list[dict[str, Any]]:
    """Transitions of the incidents citizen reports joined, after each report, oldest first.

    One row per (report, transition) with ``report_id, incident_id, seq, at, status,
    reason, merged_into``.
    """
    return fetch(
        db,
        "SELECT l.report_id, e.incident_id, e.seq, e.at, e.status, e.reason, i.merged_into "
        "FROM report_incident l "
        "JOIN reports r ON r.report_id = l.report_id "
        "JOIN incident_events e ON e.incident_id = l.incident_id AND e.at >= r.reported_at "
        "LEFT JOIN incidents i ON i.incident_id = l.incident_id "
        "WHERE e.at >= %s AND e.at <= %s ORDER BY e.at, l.report_id, e.seq LIMIT %s",
        (start, end, limit),
    )


# --- incidents, crews, assignments --------------------------------------------------------


def incident_exists(db: Db, incident_id: str) -> bool:
    """Whether an incident with this id is recorded."""
    return bool(fetch(db, "SELECT 1 FROM incidents WHERE incident_id = %s", (incident_id,)))


def incident_status(db: Db, incident_id: str) -> str | None:
    """The recorded status of an incident (``None``: no such incident)."""
    rows = fetch(db, "SELECT status FROM incidents WHERE incident_id = %s", (incident_id,))
    return str(rows[0]["status"]) if rows else None


def crew_exists(db: Db, crew_id: str) -> bool:
    """Whether a crew with this id is recorded."""
    return bool(fetch(db, "SELECT 1 FROM crews WHERE crew_id = %s", (crew_id,)))


def assignment_history(
    db: Db, *, crew_id: str | None = None, since: datetime | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Plans sent to crews, newest first."""
    return fetch(
        db,
        "SELECT crew_id, plan_id, created_at, stops, route, leg_eta_s FROM assignments "
        "WHERE (%(crew)s::text IS NULL OR crew_id = %(crew)s) "
        "AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s) "
        "ORDER BY created_at DESC LIMIT %(limit)s",
        {"crew": crew_id, "since": since, "limit": limit},
    )


# --- users and keys ----------------------------------------------------------------------


def list_users(db: Db) -> list[dict[str, Any]]:
    """Every user, without password hashes."""
    return fetch(db, "SELECT username, role, created_at, disabled FROM users ORDER BY username")


def remove_user(db: Db, username: str) -> bool:
    """Delete a user; False when there was none."""
    return bool(fetch(db, "DELETE FROM users WHERE username = %s RETURNING username", (username,)))


def revoke_api_keys_named(db: Db, name: str) -> int:
    """Revoke every active key with this name; how many were revoked."""
    return len(
        fetch(
            db,
            "UPDATE api_keys SET revoked = true, revoked_at = now() "
            "WHERE name = %s AND NOT revoked RETURNING key_id",
            (name,),
        )
    )


# --- the incidents map layer, built by PostgreSQL ----------------------------------------

_FEATURE_PROPS = """incident_id, version, status, category, family, priority, manual_priority,
score, score_breakdown, reporters, sensor_corroborated, opened_at, updated_at, expected_at,
assigned_at, resolved_at, district, road_class, asset_id, crew_id, merged_into"""


def incidents_geojson(
    db: Db,
    *,
    status: Sequence[str],
    priority: Sequence[str] | None = None,
    category: Sequence[str] | None = None,
    district: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 10_000,
) -> bytes:
    """Incidents as GeoJSON FeatureCollection text, most urgent first.

    The same features as ``store.queries.open_incidents``, but the JSON is built by
    PostgreSQL and returned as one value, so a large layer costs the web service almost
    nothing to encode.
    """
    where, params = incident_filters(
        status, priority, category, district, since, until, limit=limit
    )
    # Only fixed column names and conditions are formatted in; values are parameters.
    query = f"""
SELECT json_build_object('type', 'FeatureCollection', 'features',
                         coalesce(json_agg(f.feature ORDER BY f.priority, f.opened_at), '[]'))::text
FROM (
    SELECT i.priority, i.opened_at, json_build_object(
        'type', 'Feature', 'id', i.incident_id,
        'geometry', json_build_object('type', 'Point',
                                      'coordinates', json_build_array(i.lon, i.lat)),
        'properties', (SELECT to_json(p) FROM (SELECT {_FEATURE_PROPS}) p)) AS feature
    FROM incidents i WHERE {" AND ".join(where)}
    ORDER BY i.priority, i.opened_at LIMIT %(limit)s
) f
"""  # noqa: S608
    with cursor(db) as cur:
        cur.execute(query.encode(), params)
        row = cur.fetchone()
    assert row is not None
    text = next(iter(row.values()))
    return str(text).encode()
