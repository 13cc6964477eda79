"""Batched, idempotent writers: wire messages into PostgreSQL / TimescaleDB.

A batch is COPied into session temp tables (``stage_<table>``) and merged into the real
tables with ``INSERT ... SELECT ... ON CONFLICT`` in one transaction, so:

* a replay changes nothing: time series upsert by message id, or by the natural key
  where a message has none (telemetry ``(device_id, observed_at)``, positions
  ``(crew_id, at)``, device status ``(device_id, at)``);
* an incident's state row is replaced only by a newer ``version``, and every transition
  of its history lands in ``incident_events`` exactly once;
* a crew's current status, position and plan each move forward only in time.

On a lost or refused connection, or any error about the database rather than the rows
(read-only after a failover, a missing table or privilege, not migrated yet), a write
retries with capped exponential backoff and does not return until the batch is
committed, so a caller that commits its Kafka offsets after the call returns never skips
unwritten data. A batch the database rejects for its
content (not for an outage) is retried row by row and the rows it still rejects are
logged and counted, so one bad row cannot wedge a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps
from pydantic import BaseModel

from core.errors import ConfigError
from core.schemas import (
    Assignment,
    CitizenReport,
    CrewPosition,
    CrewStatus,
    DeadLetter,
    DeviceStatus,
    DispatchRun,
    Incident,
    SensorAlert,
    Telemetry,
)
from store import rows as R

log = logging.getLogger(__name__)

# What the database says about the rows themselves (a value out of range, a broken
# constraint): those rows are rejected and the rest written. Every other error is about
# the database (down, read-only after a failover, a missing table or privilege, not
# migrated yet): the batch waits and is retried, so nothing is acknowledged unwritten.
_ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


def _stage(table: str) -> str:
    return f"stage_{table}"


def _cols(table: str) -> str:
    return ", ".join(R.TABLES[table].columns)


def _insert_new(table: str) -> str:
    spec = R.TABLES[table]
    return (
        f"INSERT INTO {table} ({_cols(table)}) SELECT {_cols(table)} FROM {_stage(table)} "  # noqa: S608 - fixed identifiers; values are bound
        f"ON CONFLICT ({', '.join(spec.key)}) DO NOTHING"
    )


# A report takes its district from the incident it already belongs to, if that incident
# arrived first; otherwise the incident's merge fills it in (below).
_MERGE_REPORTS = f"""
INSERT INTO reports ({_cols("reports")})
SELECT s.report_id, s.reported_at, s.category, s.lat, s.lon, s.description, s.media_url,
       s.asset_id, s.client_id,
       coalesce(s.district, (SELECT i.district FROM report_incident l
                             JOIN incidents i ON i.incident_id = l.incident_id
                             WHERE l.report_id = s.report_id))
FROM stage_reports s
ON CONFLICT (report_id, reported_at) DO NOTHING
"""  # noqa: S608 - built from fixed column lists, no input

_INCIDENT_UPDATES = ", ".join(
    f"{c} = EXCLUDED.{c}" for c in R.TABLES["incidents"].columns if c != "incident_id"
)
_MERGE_INCIDENTS = f"""
INSERT INTO incidents ({_cols("incidents")})
SELECT DISTINCT ON (incident_id) {_cols("incidents")} FROM stage_incidents
ORDER BY incident_id, version DESC
ON CONFLICT (incident_id) DO UPDATE SET {_INCIDENT_UPDATES}
WHERE incidents.version < EXCLUDED.version
"""  # noqa: S608 - built from fixed column lists, no input

# Within one incident a newer version wins; a report that moved to another incident
# (a merge) follows the most recently updated one.
_MERGE_LINKS = f"""
INSERT INTO report_incident ({_cols("report_incident")})
SELECT DISTINCT ON (report_id) {_cols("report_incident")} FROM stage_report_incident
ORDER BY report_id, updated_at DESC, incident_version DESC
ON CONFLICT (report_id) DO UPDATE SET
    incident_id = EXCLUDED.incident_id, incident_version = EXCLUDED.incident_version,
    status = EXCLUDED.status, merged_into = EXCLUDED.merged_into,
    updated_at = EXCLUDED.updated_at
WHERE (report_incident.incident_id = EXCLUDED.incident_id
       AND report_incident.incident_version < EXCLUDED.incident_version)
   OR (report_incident.incident_id <> EXCLUDED.incident_id
       AND report_incident.updated_at < EXCLUDED.updated_at)
"""  # noqa: S608 - built from fixed column lists, no input

_BACKFILL_DISTRICT = """
UPDATE reports r SET district = s.district
FROM (SELECT DISTINCT ON (l.report_id) l.report_id, i.district
      FROM stage_report_incident l JOIN stage_incidents i ON i.incident_id = l.incident_id
      WHERE i.district IS NOT NULL
      ORDER BY l.report_id, i.version DESC) s
WHERE r.report_id = s.report_id AND r.district IS NULL
"""

_MERGE_CREW_POSITION = """
INSERT INTO crews (crew_id, lat, lon, heading_deg, speed_kph, position_at)
SELECT DISTINCT ON (crew_id) crew_id, lat, lon, heading_deg, speed_kph, at
FROM stage_crew_positions ORDER BY crew_id, at DESC
ON CONFLICT (crew_id) DO UPDATE SET
    lat = EXCLUDED.lat, lon = EXCLUDED.lon, heading_deg = EXCLUDED.heading_deg,
    speed_kph = EXCLUDED.speed_kph, position_at = EXCLUDED.position_at
WHERE crews.position_at IS NULL OR crews.position_at < EXCLUDED.position_at
"""

_MERGE_CREW_STATUS = """
INSERT INTO crews (crew_id, status, incident_id, skills, shift_end, status_at)
SELECT DISTINCT ON (crew_id) crew_id, status, incident_id, skills, shift_end, at
FROM stage_crew_status_events ORDER BY crew_id, at DESC
ON CONFLICT (crew_id) DO UPDATE SET
    status = EXCLUDED.status, incident_id = EXCLUDED.incident_id,
    skills = coalesce(EXCLUDED.skills, crews.skills),
    shift_end = coalesce(EXCLUDED.shift_end, crews.shift_end),
    status_at = EXCLUDED.status_at
WHERE crews.status_at IS NULL OR crews.status_at < EXCLUDED.status_at
"""

_MERGE_CREW_PLAN = """
INSERT INTO crews (crew_id, plan_id, plan_at, stops, route)
SELECT DISTINCT ON (crew_id) crew_id, plan_id, created_at, stops, route
FROM stage_assignments ORDER BY crew_id, created_at DESC
ON CONFLICT (crew_id) DO UPDATE SET
    plan_id = EXCLUDED.plan_id, plan_at = EXCLUDED.plan_at, stops = EXCLUDED.stops,
    route = EXCLUDED.route
WHERE crews.plan_at IS NULL OR crews.plan_at < EXCLUDED.plan_at
"""


@dataclass(frozen=True)
class _Kind:
    """How one kind of message is staged and merged."""

    name: str
    stage: Callable[[Sequence[Any]], dict[str, list[R.Row]]]
    merges: tuple[str, ...]


_Stager = Callable[[Sequence[Any]], dict[str, list[R.Row]]]


def _one(table: str, fn: Callable[[Any], R.Row]) -> _Stager:
    return lambda msgs: {table: [fn(m) for m in msgs]}


def _stage_incidents(msgs: Sequence[Incident]) -> dict[str, list[R.Row]]:
    out: dict[str, list[R.Row]] = {"incidents": [], "incident_events": [], "report_incident": []}
    for inc in msgs:
        split = R.incident_rows(inc)
        out["incidents"].append(split.state)
        out["incident_events"] += split.events
        out["report_incident"] += split.links
    return out


_KINDS: dict[type[BaseModel], _Kind] = {
    CitizenReport: _Kind("reports", _one("reports", R.report_row), (_MERGE_REPORTS,)),
    SensorAlert: _Kind("sensor_alerts", _one("sensor_alerts", R.alert_row),
                       (_insert_new("sensor_alerts"),)),
    Telemetry: _Kind("telemetry", _one("telemetry", R.telemetry_row),
                     (_insert_new("telemetry"),)),
    DeviceStatus: _Kind("device_status", _one("device_status", R.device_status_row),
                        (_insert_new("device_status"),)),
    CrewPosition: _Kind("crew_positions", _one("crew_positions", R.crew_position_row),
                        (_insert_new("crew_positions"), _MERGE_CREW_POSITION)),
    CrewStatus: _Kind("crew_status_events", _one("crew_status_events", R.crew_status_row),
                      (_insert_new("crew_status_events"), _MERGE_CREW_STATUS)),
    Incident: _Kind("incidents", _stage_incidents,
                    (_MERGE_INCIDENTS, _insert_new("incident_events"), _MERGE_LINKS,
                     _BACKFILL_DISTRICT)),
    Assignment: _Kind("assignments", _one("assignments", R.assignment_row),
                      (_insert_new("assignments"), _MERGE_CREW_PLAN)),
    DispatchRun: _Kind("dispatch_runs", _one("dispatch_runs", R.dispatch_run_row),
                       (_insert_new("dispatch_runs"),)),
    DeadLetter: _Kind("dead_letters", _one("dead_letters", R.dead_letter_row),
                      (_insert_new("dead_letters"),)),
}


def _orjson_dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


@dataclass
class WriterStats:
    """What a writer has done since it was made."""

    batches: int = 0
    rows: int = 0
    retries: int = 0
    rejected: int = 0
    by_table: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Writer:
    """Writes batches of wire messages, idempotently, retrying through outages.

    One connection per writer, opened lazily and reopened after a failure; calls are
    serialised by a lock, so a writer may be shared by tasks (one per agent is faster).
    """

    def __init__(
        self,
        dsn: str,
        *,
        name: str = "store",
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.stats = WriterStats()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Writer({self.name!r}, rows={self.stats.rows}, retries={self.stats.retries})"

    async def __aenter__(self) -> Writer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (a later write reopens it)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s)),
            application_name=f"cityfix-{self.name}",
        )
        set_json_dumps(_orjson_dumps, context=conn)
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT to_regclass('schema_migrations')")
                if await cur.fetchone() == (None,):
                    raise ConfigError("database is not migrated; run `cityfix db migrate`")
                await cur.execute("SELECT mode FROM schema_migrations ORDER BY version LIMIT 1")
                mode = (await cur.fetchone() or ("postgres",))[0]
                for spec in R.TABLES.values():
                    await cur.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS {_stage(spec.table)} "
                        f"(LIKE {spec.table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    )
        except BaseException:
            await conn.close()
            raise
        log.info("writer connected", extra={"writer": self.name, "mode": mode})
        self._conn = conn
        return conn

    async def _apply(self, kind: _Kind, msgs: Sequence[Any]) -> None:
        staged = kind.stage(msgs)
        conn = await self._connect()
        async with conn.transaction(), conn.cursor() as cur:
            for table, table_rows in staged.items():
                if not table_rows:
                    continue
                copy_sql = f"COPY {_stage(table)} ({_cols(table)}) FROM STDIN"
                async with cur.copy(copy_sql) as copy:
                    for row in table_rows:
                        await copy.write_row(row)
            for stmt in kind.merges:
                await cur.execute(stmt)

    async def _apply_retrying(self, kind: _Kind, msgs: Sequence[Any]) -> None:
        attempt = 0
        down_since: float | None = None
        while True:
            try:
                await self._apply(kind, msgs)
                if down_since is not None:
                    log.info(
                        "database back; batch written",
                        extra={"writer": self.name,
                               "outage_s": round(time.monotonic() - down_since, 1)},
                    )
                return
            except _ROW_ERRORS:
                raise
            except (psycopg.Error, ConfigError) as exc:
                await self._drop()
                down_since = down_since or time.monotonic()
                delay = min(self.max_backoff_s, self.initial_backoff_s * 2**attempt)
                delay *= random.uniform(0.8, 1.0)  # de-synchronise writers retrying together
                attempt += 1
                self.stats.retries += 1
                log.warning(
                    "database unavailable or refusing writes; retrying",
                    extra={"writer": self.name, "attempt": attempt,
                           "retry_in_s": round(delay, 2), "error": str(exc).strip()[:200]},
                )
                await asyncio.sleep(delay)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except psycopg.Error:
                log.debug("closing a broken connection failed", exc_info=True)

    async def _write_kind(self, kind: _Kind, msgs: Sequence[Any]) -> int:
        try:
            await self._apply_retrying(kind, msgs)
            written = len(msgs)
        except _ROW_ERRORS as exc:
            if len(msgs) == 1:
                self.stats.rejected += 1
                log.error(
                    "row rejected by the database",
                    extra={"writer": self.name, "table": kind.name,
                           "error": str(exc).strip()[:300]},
                )
                return 0
            log.warning(
                "batch rejected; retrying row by row",
                extra={"writer": self.name, "table": kind.name, "rows": len(msgs)},
            )
            written = 0
            for m in msgs:
                written += await self._write_kind(kind, [m])
            return written
        self.stats.batches += 1
        self.stats.rows += written
        self.stats.by_table[kind.name] += written
        return written

    async def write(self, messages: Iterable[BaseModel]) -> int:
        """Write a batch of any mix of wire messages; return how many were written.

        Returns only when the batch is committed (retrying through outages); rows the
        database refuses for their content are counted in ``stats.rejected``.
        """
        groups: dict[type[BaseModel], list[BaseModel]] = defaultdict(list)
        for m in messages:
            if type(m) not in _KINDS:
                raise TypeError(f"no table for {type(m).__name__}")
            groups[type(m)].append(m)
        written = 0
        async with self._lock:
            for typ, msgs in groups.items():
                written += await self._write_kind(_KINDS[typ], msgs)
        return written


class Batcher:
    """Collects messages; writes them when ``max_rows`` wait or the oldest is ``max_delay_s`` old.

    ``add`` flushes inline when the batch is full; ``start`` runs a background task that
    flushes on time. ``flush``/``aclose`` write whatever is pending.
    """

    def __init__(self, writer: Writer, *, max_rows: int = 1000, max_delay_s: float = 1.0) -> None:
        self.writer = writer
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self._pending: list[BaseModel] = []
        self._oldest: float | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Batcher(pending={len(self._pending)}, max_rows={self.max_rows})"

    async def add(self, message: BaseModel) -> None:
        """Queue one message; write the batch if it is full or old enough."""
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(message)
        if len(self._pending) >= self.max_rows or self._due():
            await self.flush()

    def _due(self) -> bool:
        return self._oldest is not None and time.monotonic() - self._oldest >= self.max_delay_s

    async def flush(self) -> int:
        """Write what is pending now; return rows written."""
        batch, self._pending, self._oldest = self._pending, [], None
        return await self.writer.write(batch) if batch else 0

    def start(self) -> None:
        """Start the background task that flushes on time."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.max_delay_s / 4)
            if self._due():
                await self.flush()

    async def aclose(self) -> None:
        """Stop the timer and write what is pending."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
