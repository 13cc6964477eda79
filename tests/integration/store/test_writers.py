"""Writers: replays change nothing, incident versions only move forward."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

import store
from core.settings import PostgresSettings
from store import api_queries, queries
from store.writers import Writer
from tests.unit.store.factories import (
    assignment,
    citizen_report,
    crew_position,
    crew_status,
    device_status,
    incident,
    sensor_alert,
    telemetry,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CHECKED = {
    "reports": "report_id, reported_at",
    "sensor_alerts": "alert_id, observed_at",
    "telemetry": "device_id, observed_at",
    "device_status": "device_id, at",
    "crew_positions": "crew_id, at",
    "crew_status_events": "crew_id, at, status",
    "incidents": "incident_id",
    "incident_events": "incident_id, status, at",
    "report_incident": "report_id",
    "assignments": "crew_id, plan_id, created_at",
    "crews": "crew_id",
}


def fingerprint(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Row count and an md5 over every row (ordered by key) of each table."""
    out = {}
    for table, key in CHECKED.items():
        out[table] = conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY {key}), '')) "
            f"FROM {table} t"
        ).fetchone()
    return out


def ten_thousand_events(seed: int = 7) -> list:
    rnd = random.Random(seed)
    events: list = []
    reports = [citizen_report(rnd, T0 + timedelta(seconds=i)) for i in range(2000)]
    events += reports
    events += [sensor_alert(rnd, T0 + timedelta(seconds=i)) for i in range(1000)]
    events += [telemetry(f"dev-{i % 50}", T0 + timedelta(seconds=i)) for i in range(3500)]
    events += [device_status(f"dev-{i % 50}", T0 + timedelta(minutes=i), i % 3 != 0)
               for i in range(500)]
    events += [crew_position(f"crew-{i % 20}", T0 + timedelta(seconds=5 * i)) for i in range(1500)]
    events += [crew_status(f"crew-{i % 20}", T0 + timedelta(seconds=7 * i)) for i in range(500)]
    # 300 incidents, three versions each, citing the reports as evidence.
    for n in range(300):
        cited = [r.report_id for r in reports[n * 5:(n + 1) * 5]]
        events += [incident(f"inc-{n}", v, T0, reports=cited, district=f"D{n % 7}")
                   for v in (1, 2, 3)]
    events += [assignment(f"crew-{i % 20}", f"plan-{i}", T0 + timedelta(minutes=i))
               for i in range(100)]
    assert len(events) == 10_000
    return events


async def write_all(pg: PostgresSettings, events: list, batch: int = 1000) -> Writer:
    async with Writer(pg.dsn, name="test") as w:
        for i in range(0, len(events), batch):
            await w.write(events[i:i + batch])
    return w


async def test_the_same_10000_events_written_twice_give_the_same_rows(
    pg: PostgresSettings, conn: psycopg.Connection
) -> None:
    store.migrate(conn, mode="postgres")
    events = ten_thousand_events()
    w = await write_all(pg, events)
    assert w.stats.rows == 10_000 and w.stats.rejected == 0
    first = fingerprint(conn)
    assert first["reports"][0] == 2000
    assert first["telemetry"][0] == 3500
    assert first["incidents"][0] == 300
    assert first["report_incident"][0] == 1500

    replay = list(events)
    random.Random(1).shuffle(replay)  # a replay need not come in the same order
    await write_all(pg, replay, batch=700)
    assert fingerprint(conn) == first
    # The reports learned their incident's district, whichever arrived first.
    unset = conn.execute("SELECT count(*) FROM reports WHERE district IS NULL "
                         "AND report_id IN (SELECT report_id FROM report_incident)").fetchone()
    assert unset == (0,)


async def test_an_older_incident_version_never_overwrites_a_newer_one(
    pg: PostgresSettings, conn: psycopg.Connection
) -> None:
    store.migrate(conn, mode="postgres")
    v1, v2, v3 = (incident("inc-x", v, T0) for v in (1, 2, 3))
    async with Writer(pg.dsn) as w:
        await w.write([v3])
        await w.write([v1])
        await w.write([v2, v1])
        await w.write([v1, v3, v2])  # all in one batch
    got = queries.incident(conn, "inc-x")
    assert got["version"] == 3 and got["status"] == v3.status.value
    statuses = [e["status"] for e in got["events"]]
    assert statuses == [t.status.value for t in v3.history]  # each transition once
    assert conn.execute(
        "SELECT count(*) FROM incident_events WHERE incident_id = 'inc-x'"
    ).fetchone() == (len(v3.history),)


async def test_a_row_the_database_refuses_is_skipped_not_fatal(
    pg: PostgresSettings, conn: psycopg.Connection
) -> None:
    store.migrate(conn, mode="postgres")
    rnd = random.Random(3)
    good = [citizen_report(rnd, T0), citizen_report(rnd, T0)]
    bad = citizen_report(rnd, T0).model_copy(update={"description": "nul \x00 byte"})
    async with Writer(pg.dsn) as w:
        assert await w.write([good[0], bad, good[1]]) == 2
        assert w.stats.rejected == 1
    assert conn.execute("SELECT count(*) FROM reports").fetchone() == (2,)


async def test_a_database_refusing_every_write_stalls_the_batch_instead_of_rejecting_it(
    pg: PostgresSettings, conn: psycopg.Connection
) -> None:
    # Read-only (a standby after a failover) is about the database, not the rows: the
    # batch must wait, or its offsets would be committed with nothing written.
    store.migrate(conn, mode="postgres")
    read_only = sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}")
    conn.execute(read_only.format(sql.Identifier(pg.database), sql.SQL("on")))
    rnd = random.Random(4)
    reports = [citizen_report(rnd, T0) for _ in range(3)]
    async with Writer(pg.dsn, initial_backoff_s=0.05, max_backoff_s=0.2) as w:
        write = asyncio.create_task(w.write(reports))
        while w.stats.retries < 2:
            assert not write.done(), write
            await asyncio.sleep(0.05)
        assert w.stats.rejected == 0
        conn.execute(read_only.format(sql.Identifier(pg.database), sql.SQL("off")))
        assert await asyncio.wait_for(write, 10) == 3
    assert conn.execute("SELECT count(*) FROM reports").fetchone() == (3,)


async def test_a_request_follows_its_incident_through_a_merge(
    pg: PostgresSettings, conn: psycopg.Connection
) -> None:
    store.migrate(conn, mode="postgres")
    rnd = random.Random(5)
    r = citizen_report(rnd, T0)
    a = incident("inc-a", 1, T0, reports=[r.report_id], status="open")
    b = incident("inc-b", 4, T0, reports=[], status="resolved")
    merged = incident("inc-a", 2, T0, reports=[r.report_id], status="merged", merged_into="inc-b")
    closed = ["resolved", "closed", "duplicate", "merged"]
    async with Writer(pg.dsn) as w:
        await w.write([r, a, b])
        [before] = api_queries.request_rows(conn, ids=[str(r.report_id)])
        assert (before["incident_id"], before["incident_status"]) == ("inc-a", "open")
        await w.write([merged])
    [req] = api_queries.request_rows(conn, ids=[str(r.report_id)])
    # the request names the incident it now belongs to; the API reads it as a duplicate
    assert req["incident_status"] == "merged" and req["merged_into"] == "inc-b"
    [mine] = api_queries.request_rows(conn, closed_statuses=closed, want_closed=True)
    assert mine["report_id"] == r.report_id
    assert api_queries.request_rows(conn, closed_statuses=closed, want_closed=False) == []
    assert api_queries.request_rows(conn, ids=[str(uuid.uuid4())]) == []


async def test_plain_upkeep_refreshes_the_views_and_drops_old_telemetry_one_process_at_a_time(
    pg: PostgresSettings, conn: psycopg.Connection
) -> None:
    store.migrate(conn, mode="postgres")
    now = datetime.now(UTC)
    async with Writer(pg.dsn) as w:
        await w.write(
            [
                citizen_report(random.Random(6), now - timedelta(hours=1)),
                telemetry("old-sensor", now - timedelta(days=40)),
                telemetry("new-sensor", now - timedelta(days=1)),
            ]
        )
    assert conn.execute("SELECT count(*) FROM reports_hourly").fetchone() == (0,)

    with psycopg.connect(pg.dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (store.schema._UPKEEP_LOCK_KEY,))
        assert store.plain_upkeep(conn, keep_days=30) is False, "another process has it"
        other.execute("SELECT pg_advisory_unlock_all()")
    assert store.plain_upkeep(conn, keep_days=30) is True

    assert conn.execute("SELECT sum(reports) FROM reports_hourly").fetchone() == (1,)
    kept = conn.execute("SELECT device_id FROM telemetry").fetchall()
    assert kept == [("new-sensor",)]
