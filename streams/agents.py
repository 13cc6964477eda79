"""The Faust shell around ``streams.engine``: topics, tables, agents, the aging timer.

Data flow (all keys UTF-8 strings)::

    raw.reports, raw.sensor-alerts --locate (parse, snap, family)--+
    crew.events --crew status about an incident--------------------+
    commands ----reprioritise / mark_duplicate / close-------------+--> {app id}-dedup-cells
    assignments --plans (table crew-plans, diffed per crew)--------+    (key = cell key)
                                                                             |
                     cell agent: tables cells, incidents, seen  <------------+
                       |-- incidents (compacted, key = incident id)
                       |-- MQTT cityfix/v1/requests/{id}/status (retained, QoS 1)
                       +-- index / join / merge / absorb messages back into the cell topic

Every state change happens in the cell agent, while processing a message of the cell
topic, so Faust writes each table change to the changelog partition of that message:
the state of a cell, of the incidents whose id starts with that cell's key, and the
``seen`` ids of the observations decided there all live in the partition that processes
them. A restarted or rebalanced worker recovers the tables from their changelogs
(kept in a local RocksDB store through ``rocksdict``, so a restart on the same disk only
replays the changelog tail).

Sends are flushed before offsets are committed (at-least-once); replays are harmless
because the engine is idempotent (see ``streams.engine``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

from core import schemas, topics
from core.schemas import Assignment, DeadLetter, Incident, RequestStatus
from streams.app import app, settings
from streams.engine import Engine, Msg, Rejected, dumps, loads
from streams.publisher import StatusPublisher
from streams.roads import GeoRoads

_log = logging.getLogger(__name__)

_ASSIGNMENT_PARTITIONS = next(
    t.partitions for t in topics.KAFKA_TOPICS if t.name == topics.ASSIGNMENTS
)

raw_reports = app.topic(topics.RAW_REPORTS, key_serializer="raw", value_serializer="raw")
raw_alerts = app.topic(topics.RAW_SENSOR_ALERTS, key_serializer="raw", value_serializer="raw")
crew_events = app.topic(topics.CREW_EVENTS, key_serializer="raw", value_serializer="raw")
commands = app.topic(topics.COMMANDS, key_serializer="raw", value_serializer="raw")
assignments = app.topic(topics.ASSIGNMENTS, key_serializer="raw", value_serializer="raw")
incidents_topic = app.topic(topics.INCIDENTS, key_serializer="raw", value_serializer="raw")
dlq_topic = app.topic(topics.INGEST_DLQ, key_serializer="raw", value_serializer="raw")

_RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "default": None}
cells_table = app.Table("cells", help="dedup index: cell key -> entries", **_RAW)
incidents_table = app.Table("incidents", help="incident id -> full state", **_RAW)
seen_table = app.Table("seen", help="evidence id -> incident id", **_RAW)
plans_table = app.Table(
    "crew-plans",
    help="crew id -> incident ids in its plan",
    partitions=_ASSIGNMENT_PARTITIONS,
    **_RAW,
)


class _Keyed(MutableMapping[str, Any]):
    """A table seen through string keys (stored as bytes, whatever the store)."""

    def __init__(self, table: Any) -> None:
        self._t = table

    def __getitem__(self, key: str) -> Any:
        value = self._t.get(key.encode())
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._t[key.encode()] = value.encode() if isinstance(value, str) else value

    def __delitem__(self, key: str) -> None:
        del self._t[key.encode()]

    def __iter__(self) -> Iterator[str]:
        for k in self._t:
            yield k.decode() if isinstance(k, bytes | bytearray) else str(k)

    def __len__(self) -> int:
        return len(self._t)


class Sink:
    """Where the agents' outputs go: Kafka topics and MQTT (a seam for tests)."""

    def __init__(self) -> None:
        self._publisher: StatusPublisher | None = None

    async def incident(self, inc: Incident) -> None:
        """Publish an incident's full current state (compacted topic, key = id)."""
        # The header names the app that wrote the record: several deployments (a demo, a
        # test) may share one Kafka, and readers can tell their records apart.
        await incidents_topic.send(
            key=inc.incident_id.encode(),
            value=schemas.dumps(inc),
            headers=[("cityfix-app", app.conf.id.encode())],
        )

    async def route(self, key: str, msg: Msg) -> None:
        """Send a message to a cell."""
        await cells.send(
            key=key.encode(), value=dumps(msg), key_serializer="raw", value_serializer="raw"
        )

    async def dead_letter(self, source: str, payload: bytes, rejected: Rejected) -> None:
        """Record input the processors cannot use."""
        import base64

        letter = DeadLetter(
            topic=source,
            payload_b64=base64.b64encode(payload[:65536]).decode(),
            reason=f"streams: {rejected.reason}",
            field=rejected.field,
            received_at=datetime.now(UTC),
            size_bytes=len(payload),
        )
        await dlq_topic.send(key=source.encode(), value=schemas.dumps(letter))

    def status(self, status: RequestStatus) -> None:
        """Tell the reporting app (retained MQTT, QoS 1; never blocks)."""
        if not settings().streams.publish_request_status:
            return
        if self._publisher is None:
            self._publisher = StatusPublisher(settings().mqtt)
            self._publisher.start()
        self._publisher.publish(status)


sink = Sink()
_engine: Engine | None = None


def engine() -> Engine:
    """The process's engine over the tables (built on first use)."""
    global _engine
    if _engine is None:
        s = settings()
        _engine = Engine(
            s.streams,
            GeoRoads.load(s.geo),
            s.make_clock(),
            cells=_Keyed(cells_table),
            incidents=_Keyed(incidents_table),
            seen=_Keyed(seen_table),
        )
    return _engine


async def _deliver(out: Any) -> None:
    for inc in out.incidents:
        await sink.incident(inc)
    for key, msg in out.routes:
        await sink.route(key, msg)
    for st in out.statuses:
        sink.status(st)


async def _locate(kind: str, source: str, payloads: list[bytes]) -> None:
    results = engine().locate([(kind, p) for p in payloads])
    for payload, r in zip(payloads, results, strict=True):
        if isinstance(r, Rejected):
            _log.debug("%s refused: %s", kind, r.reason, extra={"field": r.field})
            await sink.dead_letter(source, payload, r)
        else:
            await sink.route(*r)


@app.agent(raw_reports)
async def locate_reports(stream: AsyncIterator[Any]) -> None:
    """Citizen reports -> observations at their home cell (snapped in batches)."""
    async for batch in stream.take(500, within=0.005):  # type: ignore[attr-defined]
        await _locate("report", topics.RAW_REPORTS, [v for v in batch if v is not None])


@app.agent(raw_alerts)
async def locate_alerts(stream: AsyncIterator[Any]) -> None:
    """Sensor alerts -> observations at their home cell."""
    async for batch in stream.take(500, within=0.005):  # type: ignore[attr-defined]
        await _locate("alert", topics.RAW_SENSOR_ALERTS, [v for v in batch if v is not None])


@app.agent(
    name="dedup-cells",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
async def cells(stream: Any) -> None:
    """The one stateful agent: dedup, fusion, scoring and lifecycle per cell."""
    async for key, value in stream.items():
        if key is None or value is None:
            continue
        try:
            out = engine().handle(
                _text(key), loads(value) if isinstance(value, bytes | str) else value
            )
        except Exception:  # a bad message must not stop the partition
            _log.exception("cell message dropped", extra={"key": _text(key)})
            continue
        await _deliver(out)
        await _drain_changelogs()


async def _drain_changelogs() -> None:
    """Hand this message's table writes to the Kafka producer before it is acknowledged.

    Faust buffers changelog writes and its pre-commit flush gives up after 0.1 s without
    progress, so under load it can commit an offset whose table writes are still in the
    buffer; a crash then loses them. Draining here, before the next message (which
    acknowledges this one), closes that gap: the commit's producer flush covers them.
    """
    buf = app.producer.buffer
    while buf.size and buf.state == "running":
        await buf.flush()


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


@app.agent(crew_events)
async def crew(stream: Any) -> None:
    """Crew statuses about an incident -> the incident's cell."""
    async for value in stream:
        routed = engine().route_crew_event(value) if value else None
        if routed is not None:
            await sink.route(*routed)


@app.agent(commands)
async def dispatcher_commands(stream: Any) -> None:
    """Dispatcher commands (reprioritise, mark_duplicate, close) -> the incident's cell."""
    async for value in stream:
        routed = engine().route_command(value) if value else None
        if routed is not None:
            await sink.route(*routed)


@app.agent(assignments)
async def plans(stream: Any) -> None:
    """Crew plans -> assign/unassign for the incidents that entered or left them."""
    async for key, value in stream.items():
        if key is None:
            continue
        crew_id = key.decode()
        before = loads(plans_table.get(key) or b"[]")
        if value is None:
            after: list[str] = []
            at_s = engine().clock.time()  # a tombstone has no time of its own
        else:
            try:
                plan = schemas.parse(Assignment, value)
            except schemas.InvalidMessage as exc:
                _log.warning("assignment ignored: %s", exc, extra={"crew_id": crew_id})
                continue
            after = [s.incident_id for s in plan.stops]
            at_s = plan.created_at.timestamp()
        plans_table[key] = dumps(after)
        for cell, msg in Engine.plan_changes(crew_id, before, after, at_s):
            await sink.route(cell, msg)
        await _drain_changelogs()


_last_aging = 0.0


@app.timer(interval=5.0)
async def aging() -> None:
    """Every ``aging_interval_s``: tick incidents whose score aged or whose close is due."""
    global _last_aging
    now = time.monotonic()
    if now - _last_aging < settings().streams.aging_interval_s:
        return
    _last_aging = now
    ticks = engine().due_ticks((k, v) for k, v in incidents_table.items() if v)
    for key, msg in ticks:
        await sink.route(key, msg)
    if ticks:
        _log.info("aging: %d incidents re-scored or closing", len(ticks))
