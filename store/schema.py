"""Versioned SQL migrations, the storage mode, and aggregate upkeep.

Migrations are files in ``store/migrations/`` named ``NNNN_name.sql`` (applied in both
modes) and ``NNNN_name.timescaledb.sql`` / ``NNNN_name.postgres.sql`` (applied only in
that mode). One version is the common file followed by the mode's file, run in one
transaction and recorded in ``schema_migrations`` with its mode and checksum. ``migrate``
holds a session advisory lock, so two processes never migrate at once, and applies only
versions not yet recorded: running it twice changes nothing.

The mode is ``"timescaledb"`` when the extension is installed in the database (or can be
created there) and ``"postgres"`` otherwise; a database keeps the mode it was first
migrated in. ``mode="postgres"`` forces plain tables even where TimescaleDB exists.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from core.errors import ConfigError

log = logging.getLogger(__name__)

Mode = Literal["timescaledb", "postgres"]
MODES: tuple[Mode, ...] = ("timescaledb", "postgres")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
AGGREGATES: tuple[str, ...] = ("reports_hourly", "incidents_hourly", "incident_times_daily")

# Arbitrary but fixed: every cityfix process agrees on it ("cityfix" in ASCII).
_LOCK_KEY = 0x63697479666978
_FILE_RE = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<mode>timescaledb|postgres))?\.sql$"
)


@dataclass(frozen=True)
class Migration:
    """One schema version as it applies in one mode."""

    version: int
    name: str
    sql: str
    checksum: str

    def __repr__(self) -> str:
        return f"Migration({self.version:04d}_{self.name})"


def load_migrations(mode: Mode, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations for ``mode``, in version order (pure: reads files only)."""
    if mode not in MODES:
        raise ConfigError(f"unknown storage mode {mode!r}; expected one of {MODES}")
    found: dict[int, dict[str | None, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise ConfigError(f"migration file with an unexpected name: {path.name}")
        version = int(m["version"])
        if names.setdefault(version, m["name"]) != m["name"]:
            raise ConfigError(
                f"migration {version:04d} has two names: {names[version]}, {m['name']}"
            )
        found.setdefault(version, {})[m["mode"]] = path
    out: list[Migration] = []
    for version in sorted(found):
        parts = [found[version][k].read_text() for k in (None, mode) if k in found[version]]
        text = "\n".join(parts)
        digest = hashlib.sha256(text.encode()).hexdigest()
        out.append(Migration(version, names[version], text, digest))
    return out


def _extension_installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def _extension_available(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None


def _recorded_mode(conn: psycopg.Connection[Any]) -> Mode | None:
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
        return None
    row = conn.execute("SELECT mode FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    return row[0] if row else None


def detect_mode(conn: psycopg.Connection[Any]) -> Mode:
    """The storage mode of the database behind ``conn``.

    A migrated database answers with the mode it was migrated in; an empty one with
    ``"timescaledb"`` when the extension is installed in it, else ``"postgres"``.
    """
    recorded = _recorded_mode(conn)
    if recorded is not None:
        return recorded
    return "timescaledb" if _extension_installed(conn) else "postgres"


def _choose_mode(conn: psycopg.Connection[Any], requested: Mode | None) -> Mode:
    recorded = _recorded_mode(conn)
    if recorded is not None:
        if requested is not None and requested != recorded:
            raise ConfigError(
                f"database was migrated in {recorded} mode; refusing to continue in {requested}"
            )
        return recorded
    if requested == "postgres":
        return "postgres"
    if _extension_installed(conn):
        return "timescaledb"
    if _extension_available(conn):
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            return "timescaledb"
        except psycopg.Error as exc:
            if requested == "timescaledb":
                raise ConfigError(f"cannot create the timescaledb extension: {exc}") from exc
            log.warning("timescaledb is available but cannot be created here (%s)", exc)
    if requested == "timescaledb":
        raise ConfigError("timescaledb mode requested but the extension is not installed")
    return "postgres"


def _ensure_ledger(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     integer     PRIMARY KEY,
            name        text        NOT NULL,
            mode        text        NOT NULL,
            checksum    text        NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def migrate(conn: psycopg.Connection[Any], *, mode: Mode | None = None) -> list[Migration]:
    """Apply every pending migration; return the ones applied (empty when up to date).

    ``conn`` must be in autocommit mode (each version gets its own transaction).
    ``mode`` forces a storage mode; by default it is chosen as the module doc says.
    """
    if not conn.autocommit:
        raise ConfigError("migrate() needs an autocommit connection")
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        chosen = _choose_mode(conn, mode)
        log.info("storage mode %s", chosen, extra={"mode": chosen})
        _ensure_ledger(conn)
        done = {
            version: checksum
            for version, checksum in conn.execute(
                "SELECT version, checksum FROM schema_migrations"
            ).fetchall()
        }
        applied: list[Migration] = []
        for m in load_migrations(chosen):
            if m.version in done:
                if done[m.version] != m.checksum:
                    log.warning("migration %04d_%s changed since it was applied", m.version, m.name)
                continue
            log.info("applying migration %04d_%s", m.version, m.name)
            with conn.transaction():
                conn.execute(m.sql.encode())  # bytes: run as one multi-statement script
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, mode, checksum) "
                    "VALUES (%s, %s, %s, %s)",
                    (m.version, m.name, chosen, m.checksum),
                )
            applied.append(m)
        log.info("migrations up to date", extra={"applied": len(applied), "mode": chosen})
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    mode: str
    checksum: str
    applied_at: datetime


def applied_migrations(conn: psycopg.Connection[Any]) -> list[AppliedMigration]:
    """The migrations recorded in the database, oldest first (empty if never migrated)."""
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
        return []
    rows = conn.execute(
        "SELECT version, name, mode, checksum, applied_at FROM schema_migrations ORDER BY version"
    ).fetchall()
    return [AppliedMigration(*r) for r in rows]


def pending_migrations(conn: psycopg.Connection[Any]) -> list[Migration]:
    """Migrations on disk that the database has not recorded yet."""
    done = {m.version for m in applied_migrations(conn)}
    return [m for m in load_migrations(detect_mode(conn)) if m.version not in done]


def refresh_aggregates(
    conn: psycopg.Connection[Any], *, since: datetime | None = None
) -> None:
    """Bring the dashboard aggregates up to date.

    Plain mode refreshes the materialised views (concurrently, so readers are not
    blocked). TimescaleDB mode refreshes the continuous aggregates from ``since`` (all
    history when None); its real-time aggregates are current without this, the call only
    moves work from query time to now. Needs an idle autocommit connection.
    """
    if not conn.autocommit:
        raise ConfigError("refresh_aggregates() needs an autocommit connection")
    mode = detect_mode(conn)
    for view in AGGREGATES:
        if mode == "timescaledb":
            conn.execute(
                "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, NULL)",
                (view, since),
            )
        else:
            conn.execute(
                sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(sql.Identifier(view))
            )
    log.debug("aggregates refreshed", extra={"mode": mode})


def apply_retention(conn: psycopg.Connection[Any], *, keep_days: float = 30.0) -> int:
    """Drop raw telemetry older than ``keep_days``; return rows deleted.

    TimescaleDB mode has a background retention policy, so this does nothing there and
    returns 0; plain mode deletes the rows.
    """
    if detect_mode(conn) == "timescaledb":
        return 0
    row = conn.execute(
        "SELECT cityfix_apply_retention(make_interval(secs => %s))", (keep_days * 86400.0,)
    ).fetchone()
    return int(row[0]) if row else 0


# Held by the one process running the plain mode's upkeep at a time.
_UPKEEP_LOCK_KEY = _LOCK_KEY + 1


def plain_upkeep(conn: psycopg.Connection[Any], *, keep_days: float) -> bool:
    """Plain mode's stand-in for TimescaleDB's background jobs; ``True`` if it ran.

    Refreshes the dashboard views and drops raw telemetry older than ``keep_days``. In
    TimescaleDB mode the refresh and retention policies do this, and so does nothing
    here. One caller at a time: while another process holds the upkeep lock, the call
    returns ``False`` at once. Needs an idle autocommit connection.
    """
    if detect_mode(conn) == "timescaledb":
        return False
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_UPKEEP_LOCK_KEY,)).fetchone()
    if not (row and row[0]):
        return False
    try:
        refresh_aggregates(conn)
        dropped = apply_retention(conn, keep_days=keep_days)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_UPKEEP_LOCK_KEY,))
    log.info("plain-mode upkeep done", extra={"telemetry_rows_dropped": dropped})
    return True

