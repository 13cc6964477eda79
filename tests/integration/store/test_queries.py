"""Read queries the API serves, on the plain-PostgreSQL schema."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import ConnectionPool

import store
from core.errors import Conflict, NotFound
from core.settings import PostgresSettings
from store import api_queries, queries
from store.queries import BBox
from store.writers import Writer
from tests.unit.store.factories import changed, citizen_report, crew_position, crew_status, incident

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CLOSED = ["resolved", "closed", "duplicate", "merged"]


@pytest.fixture
async def city(pg: PostgresSettings, conn: psycopg.Connection) -> psycopg.Connection:
    store.migrate(conn, mode="postgres")
    rnd = random.Random(11)
    reports = [citizen_report(rnd, T0 + timedelta(minutes=i)) for i in range(6)]
    incidents = [
        incident("inc-open", 1, T0, reports=[reports[0].report_id], district="D1"),
        changed(incident("inc-p1", 2, T0, reports=[reports[1].report_id], district="D2"),
                priority="P1"),
        incident("inc-done", 5, T0, reports=[reports[2].report_id], district="D1"),  # resolved
    ]
    async with Writer(pg.dsn) as w:
        await w.write([*reports, *incidents,
                       crew_position("crew-1", T0), crew_status("crew-1", T0)])
    queries.save_contact(conn, reports[0].report_id, email="ana@example.org", first_name="Ana")
    store.refresh_aggregates(conn)
    return conn


def test_open_incidents_is_a_feature_collection_filtered_and_most_urgent_first(city) -> None:
    fc = queries.open_incidents(city)
    assert fc["type"] == "FeatureCollection"
    assert [f["id"] for f in fc["features"]] == ["inc-p1", "inc-open"]
    assert fc["features"][0]["geometry"] == {"type": "Point", "coordinates": [-8.61, 41.15]}
    in_d1 = queries.open_incidents(city, district=["D1"])["features"]
    assert [f["id"] for f in in_d1] == ["inc-open"]
    assert queries.open_incidents(city, priority=["P3"])["features"] == []
    away = BBox(0.0, 0.0, 1.0, 1.0)
    assert queries.open_incidents(city, bbox=away)["features"] == []
    assert len(queries.open_incidents(city, status=["resolved"])["features"]) == 1


def test_one_incident_has_its_history_and_evidence(city) -> None:
    got = queries.incident(city, "inc-done")
    assert [e["status"] for e in got["events"]] == ["open", "assigned", "en_route", "on_site",
                                                    "resolved"]
    assert got["evidence"][0]["kind"] == "report"
    with pytest.raises(NotFound):
        queries.incident(city, "nope")


def test_kpis_come_from_the_aggregates(city) -> None:
    k = queries.kpis(city, now=T0 + timedelta(hours=1), days=30)
    assert k["open_by_priority"] == {"P1": 1, "P2": 1}
    assert k["mean_time_to_assign_s"] == 600.0  # assigned ten minutes after opening
    assert k["mean_time_to_resolve_s"] == 2400.0
    assert k["sla_today"] == {"resolved": 1, "met": 1, "ratio": 1.0}
    hours = queries.incidents_per_hour(city, T0 - timedelta(hours=1), T0 + timedelta(hours=2))
    assert sum(h["opened"] for h in hours) == 3 and sum(h["resolved"] for h in hours) == 1
    per_hour = queries.reports_per_hour(city, T0, T0 + timedelta(hours=1), by="both")
    assert sum(r["reports"] for r in per_hour) == 6


def test_open311_request_rows_filter_page_and_never_show_contacts(city) -> None:
    rows = api_queries.request_rows
    everything = rows(city, limit=100)
    assert len(everything) == 6
    assert all("email" not in r and "first_name" not in r for r in everything)
    assert [r["reported_at"] for r in everything] == sorted(
        (r["reported_at"] for r in everything), reverse=True)
    assert len(rows(city, limit=4, offset=4)) == 2
    closed = rows(city, closed_statuses=CLOSED, want_closed=True)
    assert len(closed) == 1 and closed[0]["incident_status"] == "resolved"
    assert len(rows(city, closed_statuses=CLOSED, want_closed=False)) == 5
    # both ends inclusive, as Open311's date range
    assert len(rows(city, start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=4))) == 3
    code = everything[0]["category"]
    assert all(r["category"] == code for r in rows(city, service_codes=[code]))
    [one] = rows(city, ids=[str(everything[0]["report_id"])], with_history=True)
    assert "history" in one


def test_api_keys_and_users(city, pg: PostgresSettings) -> None:
    with ConnectionPool(pg.dsn, min_size=1, max_size=2, open=True) as pool:
        key = queries.create_api_key(pool, "citizen-app", "sha256:abc")
        assert queries.api_key_by_hash(pool, "sha256:abc")["name"] == "citizen-app"
        with pytest.raises(Conflict):
            queries.create_api_key(pool, "again", "sha256:abc")
        assert queries.revoke_api_key(pool, key["key_id"]) is True
        assert queries.api_key_by_hash(pool, "sha256:abc") is None
        assert queries.revoke_api_key(pool, key["key_id"]) is False
        queries.create_user(pool, "dina", "argon2:hash", "dispatcher")
        assert queries.user_by_name(pool, "dina")["role"] == "dispatcher"
        with pytest.raises(Conflict):
            queries.create_user(pool, "dina", "x", "viewer")
        assert queries.disable_user(pool, "dina") is True


def test_crews_have_last_position_and_status(city) -> None:
    [crew] = queries.crews(city)
    assert crew["crew_id"] == "crew-1" and crew["status"] == "en_route"
    assert crew["lat"] == 41.15 and crew["position_at"] == T0
