"""Read queries for the web service (sync psycopg), returning plain dicts.

Every function takes ``db``: a ``psycopg.Connection`` or a ``psycopg_pool.ConnectionPool``
(a connection is borrowed for the call). The same SQL runs in both storage modes.
Personal data (``reporter_contacts``) is written here but never joined into a request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import psycopg

from core.errors import Conflict, NotFound
from core.schemas import ACTIVE_STATUSES
from store._db import Db, fetch

log = logging.getLogger(__name__)

ACTIVE = tuple(sorted(s.value for s in ACTIVE_STATUSES))


@dataclass(frozen=True)
class BBox:
    """A bounding box in degrees (Open311 order: west, south, east, north)."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float


def _one(db: Db, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
    found = fetch(db, query, params)
    return found[0] if found else None


# --- incidents -------------------------------------------------------------------------

_INCIDENT_COLS = """incident_id, version, status, category, family, priority, manual_priority,
score, score_breakdown, lat, lon, reporters, sensor_corroborated, opened_at, updated_at,
expected_at, assigned_at, resolved_at, district, road_class, asset_id, crew_id, merged_into"""


def _feature(row: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in row.items() if k not in ("lat", "lon")}
    return {
        "type": "Feature",
        "id": row["incident_id"],
        "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
        "properties": props,
    }


def incident_filters(
    status: Sequence[str],
    priority: Sequence[str] | None,
    category: Sequence[str] | None,
    district: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    **params: Any,
) -> tuple[list[str], dict[str, Any]]:
    """The WHERE conditions (joined by AND) and parameters of an incident layer's filters.

    Each given list keeps the incidents whose column is one of its values;
    ``since``/``until`` bound ``opened_at`` (``until`` exclusive). Only fixed column names
    are formatted into the conditions; values stay parameters. ``params`` are passed
    through (a limit, say).
    """
    where = ["status = ANY(%(status)s)"]
    params["status"] = list(status)
    for name, values in (("priority", priority), ("category", category), ("district", district)):
        if values:
            where.append(f"{name} = ANY(%({name})s)")
            params[name] = list(values)
    if since is not None:
        where.append("opened_at >= %(since)s")
        params["since"] = since
    if until is not None:
        where.append("opened_at < %(until)s")
        params["until"] = until
    return where, params


def open_incidents(
    db: Db,
    *,
    status: Sequence[str] | None = None,
    priority: Sequence[str] | None = None,
    category: Sequence[str] | None = None,
    district: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bbox: BBox | None = None,
    limit: int = 500,
) -> dict[str, Any]:
    """Incidents as a GeoJSON FeatureCollection, most urgent first.

    ``status`` defaults to the active ones; ``since``/``until`` bound ``opened_at``.
    """
    where, params = incident_filters(
        status or ACTIVE, priority, category, district, since, until, limit=limit
    )
    if bbox is not None:
        where.append("lat BETWEEN %(s)s AND %(n)s AND lon BETWEEN %(w)s AND %(e)s")
        params |= {"s": bbox.min_lat, "n": bbox.max_lat, "w": bbox.min_lon, "e": bbox.max_lon}
    found = fetch(
        db,
        f"SELECT {_INCIDENT_COLS} FROM incidents WHERE {' AND '.join(where)} "  # noqa: S608 - fixed identifiers; values are bound
        "ORDER BY priority, opened_at LIMIT %(limit)s",
        params,
        custom_plan=True,
    )
    return {"type": "FeatureCollection", "features": [_feature(r) for r in found]}


def incident(db: Db, incident_id: str) -> dict[str, Any]:
    """One incident with its evidence and every transition (``events``), oldest first."""
    row = _one(
        db,
        f"SELECT {_INCIDENT_COLS}, evidence, history FROM incidents WHERE incident_id = %s",  # noqa: S608 - fixed identifiers; values are bound
        (incident_id,),
    )
    if row is None:
        raise NotFound(f"no incident {incident_id!r}")
    row["events"] = fetch(
        db,
        "SELECT at, status, reason, version, since_open_s FROM incident_events "
        "WHERE incident_id = %s ORDER BY at, seq",
        (incident_id,),
    )
    return row


def crews(db: Db) -> list[dict[str, Any]]:
    """Every crew with its last status, last position and current plan."""
    return fetch(
        db,
        "SELECT crew_id, status, incident_id, skills, shift_end, status_at, lat, lon, "
        "heading_deg, speed_kph, position_at, plan_id, plan_at, stops, route "
        "FROM crews ORDER BY crew_id",
    )


def crew_track(db: Db, crew_id: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """A crew's positions in a time range, oldest first."""
    return fetch(
        db,
        "SELECT at, lat, lon, heading_deg, speed_kph FROM crew_positions "
        "WHERE crew_id = %s AND at >= %s AND at < %s ORDER BY at",
        (crew_id, since, until),
    )


def telemetry(db: Db, device_id: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """A device's telemetry in a time range, oldest first."""
    return fetch(
        db,
        "SELECT observed_at, metrics FROM telemetry "
        "WHERE device_id = %s AND observed_at >= %s AND observed_at < %s ORDER BY observed_at",
        (device_id, since, until),
    )


# --- KPIs (from the aggregates) ---------------------------------------------------------


def kpis(db: Db, *, now: datetime | None = None, days: int = 7) -> dict[str, Any]:
    """The dashboard's headline numbers.

    ``open_by_priority``; mean time to assign / resolve (seconds, first assignment and
    first resolution, over the last ``days`` days of the daily aggregate); and today's
    SLA record: incidents resolved since midnight UTC of ``now`` and how many of them
    before their ``expected_at``. ``now`` is the shared clock's now (database now if None).
    """
    by_priority = {
        r["priority"]: r["n"]
        for r in fetch(
            db,
            "SELECT priority, count(*) AS n FROM incidents WHERE status = ANY(%s) "
            "GROUP BY priority ORDER BY priority",
            (list(ACTIVE),),
        )
    }
    times = _one(
        db,
        "SELECT sum(n_assigned) AS n_assigned, sum(sum_assign_s) AS sum_assign_s, "
        "sum(n_resolved) AS n_resolved, sum(sum_resolve_s) AS sum_resolve_s "
        "FROM incident_times_daily "
        "WHERE day >= coalesce(%(now)s, now()) - make_interval(days => %(days)s)",
        {"now": now, "days": days},
    ) or {}
    sla = _one(
        db,
        "SELECT count(*) AS resolved, count(*) FILTER (WHERE resolved_at <= expected_at) AS met "
        "FROM incidents WHERE resolved_at >= date_trunc('day', coalesce(%(now)s, now()), 'UTC') "
        "AND resolved_at <= coalesce(%(now)s, now())",
        {"now": now},
    ) or {"resolved": 0, "met": 0}

    def _mean(total: Any, n: Any) -> float | None:
        return float(total) / float(n) if n else None

    return {
        "open_by_priority": by_priority,
        "open_total": sum(by_priority.values()),
        "mean_time_to_assign_s": _mean(times.get("sum_assign_s"), times.get("n_assigned")),
        "mean_time_to_resolve_s": _mean(times.get("sum_resolve_s"), times.get("n_resolved")),
        "sla_today": {
            "resolved": sla["resolved"],
            "met": sla["met"],
            "ratio": sla["met"] / sla["resolved"] if sla["resolved"] else None,
        },
    }


def reports_per_hour(
    db: Db,
    since: datetime,
    until: datetime,
    *,
    by: Literal["category", "district", "both"] = "category",
    category: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Reports per hour from the aggregate, by category, by district, or by both.

    Rows carry ``bucket``, ``reports`` and the grouping column(s).
    """
    keys = {"category": "category", "district": "district", "both": "category, district"}[by]
    return fetch(
        db,
        f"SELECT bucket, {keys}, sum(reports)::bigint AS reports FROM reports_hourly "  # noqa: S608
        "WHERE bucket >= %(since)s AND bucket < %(until)s "
        "AND (%(cats)s::text[] IS NULL OR category = ANY(%(cats)s)) "
        f"GROUP BY bucket, {keys} ORDER BY bucket, {keys}",
        {"since": since, "until": until, "cats": list(category) if category else None},
    )


def incidents_per_hour(db: Db, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Incidents opened and resolved per hour, from the aggregate."""
    return fetch(
        db,
        "SELECT bucket, opened, resolved FROM incidents_hourly "
        "WHERE bucket >= %s AND bucket < %s ORDER BY bucket",
        (since, until),
    )


def save_contact(
    db: Db,
    report_id: UUID | str,
    *,
    email: str | None = None,
    phone: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
) -> None:
    """Keep a requester's contact details, apart from the report (idempotent)."""
    fetch(
        db,
        "INSERT INTO reporter_contacts (report_id, email, phone, first_name, last_name) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (report_id) DO NOTHING",
        (UUID(str(report_id)), email, phone, first_name, last_name),
    )


# --- API keys and users ------------------------------------------------------------------


def create_api_key(db: Db, name: str, key_hash: str) -> dict[str, Any]:
    """Store a new API key by its hash (the key itself is never stored)."""
    try:
        row = _one(
            db,
            "INSERT INTO api_keys (name, key_hash) VALUES (%s, %s) "
            "RETURNING key_id, name, created_at, revoked",
            (name, key_hash),
        )
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("an API key with this hash exists") from exc
    assert row is not None
    return row


def api_key_by_hash(db: Db, key_hash: str) -> dict[str, Any] | None:
    """The active (not revoked) API key with this hash, or None."""
    return _one(
        db,
        "SELECT key_id, name, created_at, revoked FROM api_keys "
        "WHERE key_hash = %s AND NOT revoked",
        (key_hash,),
    )


def list_api_keys(db: Db) -> list[dict[str, Any]]:
    """Every API key (without hashes), newest first."""
    return fetch(
        db,
        "SELECT key_id, name, created_at, revoked, revoked_at FROM api_keys ORDER BY key_id DESC",
    )


def revoke_api_key(db: Db, key_id: int) -> bool:
    """Revoke a key; False when there was no such active key."""
    row = _one(
        db,
        "UPDATE api_keys SET revoked = true, revoked_at = now() "
        "WHERE key_id = %s AND NOT revoked RETURNING key_id",
        (key_id,),
    )
    return row is not None


def create_user(db: Db, username: str, password_hash: str, role: str = "viewer") -> dict[str, Any]:
    """Create a user (role viewer | dispatcher | admin); Conflict if the name is taken."""
    try:
        row = _one(
            db,
            "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s) "
            "RETURNING username, role, created_at, disabled",
            (username, password_hash, role),
        )
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"user {username!r} exists") from exc
    assert row is not None
    return row


def user_by_name(db: Db, username: str) -> dict[str, Any] | None:
    """A user with the password hash (for login), or None."""
    return _one(
        db,
        "SELECT username, password_hash, role, created_at, disabled FROM users "
        "WHERE username = %s",
        (username,),
    )


def disable_user(db: Db, username: str) -> bool:
    """Revoke a user's access; False when there was no such user."""
    row = _one(
        db, "UPDATE users SET disabled = true WHERE username = %s RETURNING username", (username,)
    )
    return row is not None
