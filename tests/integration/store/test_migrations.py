"""Migrations from an empty database, re-runs, modes and the migration lock."""

from __future__ import annotations

import threading

import psycopg
import pytest

import store
from core.errors import ConfigError
from core.settings import PostgresSettings, Settings

TABLES = {
    "reports", "sensor_alerts", "telemetry", "device_status", "crew_positions",
    "crew_status_events", "incident_events", "assignments", "dispatch_runs", "dead_letters",
    "incidents", "crews", "report_incident", "reporter_contacts", "api_keys", "users",
    "open311_details", "schema_migrations",
}


def _timescaledb_on_server() -> bool:
    try:
        with psycopg.connect(Settings().pg.dsn, connect_timeout=3) as c:
            return c.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone() is not None
    except psycopg.Error:
        return False


needs_timescaledb = pytest.mark.skipif(
    not _timescaledb_on_server(),
    reason="timescaledb is not in pg_available_extensions on this PostgreSQL server; "
    "the TimescaleDB mode runs only where the extension is installed",
)


def schema_snapshot(conn: psycopg.Connection) -> list[tuple]:
    """Every column, index, constraint and view of the public schema."""
    cols = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
    ).fetchall()
    idx = conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
        "ORDER BY 1, 2"
    ).fetchall()
    cons = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
    ).fetchall()
    views = conn.execute(
        "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind IN ('v', 'm') ORDER BY 1"
    ).fetchall()
    return [*cols, *idx, *cons, *views]


def test_plain_mode_from_empty_then_rerun_applies_nothing(conn: psycopg.Connection) -> None:
    # Forced: even on a server with TimescaleDB, the plain path must work on its own.
    applied = store.migrate(conn, mode="postgres")
    assert [m.version for m in applied] == [1, 2, 3, 4]
    assert store.detect_mode(conn) == "postgres"
    before = schema_snapshot(conn)
    tables = {r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}
    assert tables >= TABLES
    kinds = dict(conn.execute(
        "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)",
        (list(store.AGGREGATES),)).fetchall())
    assert kinds == {name: "m" for name in store.AGGREGATES}

    assert store.migrate(conn, mode="postgres") == []
    assert store.migrate(conn) == []  # the recorded mode is kept
    assert schema_snapshot(conn) == before
    assert [m.mode for m in store.applied_migrations(conn)] == ["postgres"] * 4
    assert store.pending_migrations(conn) == []


def test_mode_cannot_change_after_first_migration(conn: psycopg.Connection) -> None:
    store.migrate(conn, mode="postgres")
    with pytest.raises(ConfigError, match="migrated in postgres mode"):
        store.migrate(conn, mode="timescaledb")


def test_two_migrators_at_once_apply_each_version_once(pg: PostgresSettings) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(pg.dsn, autocommit=True) as c:
                results.append([m.version for m in store.migrate(c, mode="postgres")])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [[], [], [1, 2, 3, 4]]


@needs_timescaledb
def test_timescaledb_mode_from_empty_then_rerun_applies_nothing(conn: psycopg.Connection) -> None:
    applied = store.migrate(conn)
    assert [m.version for m in applied] == [1, 2, 3, 4]
    assert store.detect_mode(conn) == "timescaledb"
    hypertables = {r[0] for r in conn.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()}
    assert {"reports", "telemetry", "crew_positions", "incident_events", "assignments",
            "dispatch_runs", "sensor_alerts", "device_status"} <= hypertables
    caggs = {r[0] for r in conn.execute(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates").fetchall()}
    assert caggs == set(store.AGGREGATES)
    jobs = {r[0] for r in conn.execute(
        "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
    ).fetchall()}
    assert {"policy_retention", "policy_compression", "policy_refresh_continuous_aggregate"} <= jobs
    before = schema_snapshot(conn)
    assert store.migrate(conn) == []
    assert schema_snapshot(conn) == before
