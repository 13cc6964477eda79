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

The cell agent works in batches (``cell_batch_max`` messages or ``cell_batch_wait_ms``):
each message is handled in order with Faust's current event set to it, so every read and
write is routed to that message's partition; table writes go to a per-batch overlay and
reach the table (and its changelog) once per key at the end of the batch, with the event
of the message that wrote last; an incident changed several times in a batch is published
once, in its final state. Changelog records, incident records and cell messages are bytes
already and go straight to the producer: Faust's per-message send machinery was the
largest per-record cost of a worker (see ``bench/bench_streams.py``).

Sends are flushed before offsets are committed, and an offset is committed only once its
record has been processed (at-least-once; ``streams.offsets`` closes the holes Faust's
consumer leaves around a rebalance); replays are harmless because the engine is
idempotent (see ``streams.engine``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any, NoReturn

from faust.streams import _current_event, current_event
from faust.types import TP
from prometheus_client import Counter, Gauge

from core import schemas, topics
from core.schemas import Assignment, DeadLetter, Incident, RequestStatus
from streams import offsets
from streams.app import app, settings
from streams.engine import Engine, Msg, Outputs, Rejected, dumps, loads
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
    """A table seen through string keys (stored as bytes, whatever the store).

    ``on_write`` is told every batch of ``(key, value or None, event)`` records ``write``
    puts in the store, as soon as they are there (before the changelog sends yield).
    """

    def __init__(
        self,
        table: Any,
        on_write: Callable[[list[tuple[bytes, bytes | None, Any]]], None] | None = None,
    ) -> None:
        self._t = table
        self._on_write = on_write

    def __getitem__(self, key: str) -> Any:
        value = self._t.get(key.encode())
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key`` or ``default`` (misses are common: no exception)."""
        value = self._t.get(key.encode())
        return default if value is None else value

    def __setitem__(self, key: str, value: Any) -> None:
        self._t[key.encode()] = value.encode() if isinstance(value, str) else value

    def __delitem__(self, key: str) -> None:
        del self._t[key.encode()]

    async def write(self, items: Iterable[tuple[str, Any, Any]]) -> None:
        """Write a batch's ``(key, value or _GONE, event)`` to the store and the changelog.

        What a Faust table does for one assignment, for many: the local store and the
        changelog record both go to the partition of the event that wrote the key (the
        changelog send goes straight to the producer instead of through Faust's per-message
        buffer). In a RocksDB store the batch's writes to one partition's database go in
        one ``WriteBatch``, as Faust applies a changelog batch on recovery: a put per key
        was a tenth of a worker's time. The offset of the last record per partition becomes
        the store's persisted offset once Kafka acknowledges it, as Faust records it, so a
        restart on the same disk replays only the changelog after it.
        """
        store = self._t.data
        topic = self._t.changelog_topic.get_topic_name()
        records = [
            (
                key.encode(),
                None if value is _GONE else value.encode() if isinstance(value, str) else value,
                event,
            )
            for key, value, event in items
        ]
        if getattr(store, "use_rocksdict", False):
            _write_batches(store, records)
        else:
            _write_each(store, records)
        if self._on_write is not None:
            self._on_write(records)
        last: dict[int, Any] = {}
        for k, v, event in records:
            partition = event.message.partition
            last[partition] = await sink.changelog(topic, k, v, partition)
        for partition, fut in last.items():
            if fut is not None:
                fut.add_done_callback(functools.partial(_persisted, store, TP(topic, partition)))

    def __iter__(self) -> Iterator[str]:
        for k in self._t:
            yield k.decode() if isinstance(k, bytes | bytearray) else str(k)

    def __len__(self) -> int:
        return len(self._t)


def _write_batches(store: Any, records: list[tuple[bytes, bytes | None, Any]]) -> None:
    """``records`` into a Faust RocksDB store: one write per partition's database."""
    import rocksdict

    batches: dict[int, Any] = {}
    for k, v, event in records:
        partition = event.message.partition
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
        if v is None:
            batch.delete(k)
        else:
            batch.put(k, v)
            store._key_index[k] = partition  # where Faust's reads look for the key
    for partition, batch in batches.items():
        store._db_for_partition(partition).write(batch)


def _write_each(store: Any, records: list[tuple[bytes, bytes | None, Any]]) -> None:
    """``records`` into any other Faust store, key by key, each as its event's write."""
    token = _current_event.set(None)
    try:
        for k, v, event in records:
            _current_event.set(weakref.ref(event))  # the store's partition
            if v is None:
                store.pop(k, None)
            else:
                store[k] = v
    finally:
        _current_event.reset(token)


def _persisted(store: Any, tp: TP, fut: Any) -> None:
    if fut.cancelled() or fut.exception() is not None:
        return  # the worker is stopping (``_exit_unless_sent``)
    store.set_persisted_offset(tp, fut.result().offset)


class _AsEvent:
    """Make ``event`` Faust's current event: table reads and writes use its partition.

    Faust routes a table access to the store and changelog partition of the event being
    processed (a context variable its stream iterator sets); a batch handles many events
    from several partitions, so each gets its turn here.
    """

    __slots__ = ("_ref", "_token")

    def __init__(self, event: Any) -> None:
        self._ref = weakref.ref(event)

    def __enter__(self) -> None:
        self._token = _current_event.set(self._ref)

    def __exit__(self, *exc: object) -> None:
        _current_event.reset(self._token)


_GONE = object()


class _Overlay(MutableMapping[str, Any]):
    """A table's writes held for one batch, then written once per key (``flush``).

    Reads see the batch's own writes first. Every key of these tables belongs to the
    partition of the messages that write it (a cell key, an incident id that starts with
    its cell key, an evidence id decided at its home cell), so writing a key with the
    event of its last writer puts it where a per-message write would have.
    """

    def __init__(self, table: _Keyed) -> None:
        self._t = table
        self._dirty: dict[str, tuple[Any, Any]] = {}

    def __getitem__(self, key: str) -> Any:
        hit = self._dirty.get(key)
        if hit is None:
            return self._t[key]
        if hit[0] is _GONE:
            raise KeyError(key)
        return hit[0]

    def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key`` or ``default`` (misses are common: no exception)."""
        hit = self._dirty.get(key)
        if hit is None:
            return self._t.get(key, default)
        return default if hit[0] is _GONE else hit[0]

    def __setitem__(self, key: str, value: Any) -> None:
        self._dirty[key] = (value, current_event())

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._dirty[key] = (_GONE, current_event())

    def __iter__(self) -> Iterator[str]:
        for key in self._t:
            if key not in self._dirty:
                yield key
        for key, (value, _event) in self._dirty.items():
            if value is not _GONE:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    async def flush(self) -> int:
        """Write the batch's last value of every changed key to the table."""
        items = [(key, value, event) for key, (value, event) in self._dirty.items()]
        self._dirty.clear()
        await self._t.write(items)
        return len(items)


class Sink:
    """Where the agents' outputs go: Kafka topics and MQTT (a seam for tests)."""

    def __init__(self) -> None:
        self._publisher: StatusPublisher | None = None
        # Since when commits have been held back for statuses, and when that was last said.
        self._held_since: float | None = None
        self._held_logged: float | None = None

    async def incident(self, inc: Incident, encoded: bytes | None = None) -> None:
        """Publish an incident's full current state (compacted topic, key = id)."""
        # The header names the app that wrote the record: several deployments (a demo, a
        # test) may share one Kafka, and readers can tell their records apart.
        await _produce(
            topics.INCIDENTS,
            inc.incident_id.encode(),
            encoded if encoded is not None else schemas.dumps(inc),
            [(topics.APP_HEADER, app.conf.id.encode())],
        )

    async def route(self, key: str, msg: Msg) -> Awaitable[Any]:
        """Send a message to a cell; the future resolves when Kafka has it."""
        return await _produce(cells.channel.get_topic_name(), key.encode(), dumps(msg), None)

    async def changelog(
        self, topic: str, key: bytes, value: bytes | None, partition: int
    ) -> asyncio.Future[Any]:
        """Send a table's changelog record; the future resolves when Kafka has it."""
        fut: asyncio.Future[Any] = await app.producer.send(
            topic, key, value, partition, None, None
        )
        fut.add_done_callback(_exit_unless_sent)
        return fut

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
        await _produce(topics.INGEST_DLQ, source.encode(), schemas.dumps(letter), None)

    def status(self, status: RequestStatus) -> None:
        """Tell the reporting app (retained MQTT, QoS 1; never blocks)."""
        if not settings().streams.publish_request_status:
            return
        if self._publisher is None:
            self._publisher = StatusPublisher(settings().mqtt)
            self._publisher.start()
        self._publisher.publish(status)

    def forget_refused_statuses(self) -> None:
        """Drop statuses paho would not queue: another worker may own them from now on."""
        if self._publisher is not None:
            self._publisher.forget_refused()

    async def statuses_delivered(self) -> bool:
        """Commit barrier: whether the broker acknowledged every status queued so far.

        Waits up to ``streams.status_ack_wait_s``. False holds the commit back, so the
        records behind an undelivered status are read again, and the status published
        again, if the worker dies before the broker has it (``streams.offsets``).
        """
        if self._publisher is None:
            return True
        if await self._publisher.delivered(settings().streams.status_ack_wait_s):
            if self._held_since is not None:
                _log.info(
                    "request statuses acknowledged again: offsets are committed",
                    extra={"held_s": round(time.monotonic() - self._held_since, 1)},
                )
                self._held_since = self._held_logged = None
            return True
        COMMITS_HELD.inc()
        now = time.monotonic()
        self._held_since = self._held_since or now
        if self._held_logged is None or now - self._held_logged >= _HELD_LOG_EVERY_S:
            self._held_logged = now
            _log.warning(
                "the broker has not acknowledged request statuses: offsets stay uncommitted",
                extra={
                    "unacknowledged": self._publisher.unacknowledged,
                    "held_s": round(now - self._held_since, 1),
                },
            )
        return False


async def _produce(
    topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None
) -> Awaitable[Any]:
    """Hand one already-encoded record to the app's Kafka producer.

    The hot outputs (incident records, cell messages) skip Faust's per-message channel
    machinery: they are bytes already, and the partition is the producer's key hash, as
    a topic send would choose. Delivery is what Faust gives a topic send: the producer is
    flushed before any offset is committed, and a record Kafka refuses stops the worker
    (``_exit_unless_sent``).
    """
    fut: asyncio.Future[Any] = await app.producer.send(topic, key, value, None, None, headers)
    fut.add_done_callback(_exit_unless_sent)
    return fut


def _exit_unless_sent(fut: asyncio.Future[Any]) -> None:
    """Stop the worker if Kafka did not take a record the agents sent.

    The producer has given up on the record (its retries and delivery timeout are spent).
    Faust's flush before a commit waits for the send but does not raise, so the offsets
    of the messages that produced the record would be committed and the record lost for
    good: an incident state, a cell message, a changelog entry. This callback runs before
    the commit that waits on the same send resumes (``failure`` sets the record's future
    in the same step as the batch's, and the flush wakes a step later), and exiting there
    leaves those offsets uncommitted for the replay.
    """
    if fut.cancelled():
        _fatal("record send (cancelled)")
    error = fut.exception()
    if error is not None:
        _fatal("record send", error)


def _fatal(what: str, error: BaseException | None = None) -> NoReturn:
    """Stop the worker at once, as a crash would, leaving the batch unacknowledged.

    An error escaping an agent's batch loop makes Faust acknowledge the whole batch and
    restart the agent, so the batch would be lost. Exiting instead (no commit on the way
    out) has the supervisor (compose's restart policy, the demo, systemd) start a worker
    that replays it from the last commit, which the engine handles idempotently.
    """
    _log.critical(
        "%s failed; exiting so the batch is replayed", what, exc_info=error or True
    )
    logging.shutdown()
    os._exit(70)  # EX_SOFTWARE


# Served with the sinks' counters at the worker's /metrics (``streams.app``).
PUBLISHED = Counter("cityfix_streams_incidents_published_total", "Incident records sent")
REFUSED = Counter(
    "cityfix_streams_refused_total", "Reports and alerts dead-lettered by streams", ["kind"]
)
DROPPED = Counter("cityfix_streams_cell_dropped_total", "Cell messages that failed to apply")
# While commits are held back for request statuses, a warning at most this often.
_HELD_LOG_EVERY_S = 60.0
COMMITS_HELD = Counter(
    "cityfix_streams_commits_held_total",
    "Waits of an offset commit (streams.status_ack_wait_s each) in which MQTT did not "
    "acknowledge every request status published before it",
)

sink = Sink()
offsets.add_commit_barrier(sink.statuses_delivered)
_engine: Engine | None = None
_overlays: list[_Overlay] = []


def engine() -> Engine:
    """The process's engine over the tables, seen through batch overlays (built on first use)."""
    global _engine
    if _engine is None:
        s = settings()
        _overlays[:] = [
            _Overlay(_Keyed(t, on_write=_incidents_written if t is incidents_table else None))
            for t in (cells_table, incidents_table, seen_table)
        ]
        cells_o, incidents_o, seen_o = _overlays
        _engine = Engine(
            s.streams,
            GeoRoads.load(s.geo),
            s.make_clock(),
            cells=cells_o,
            incidents=incidents_o,
            seen=seen_o,
        )
    return _engine


async def _flush_tables() -> None:
    for overlay in _overlays:
        await overlay.flush()


def coalesce(out: Outputs) -> Outputs:
    """A batch's outputs with only the last record per incident and per request.

    ``incidents`` is compacted and every record is the incident's full state (its history
    included), so the intermediate versions of one batch add nothing a reader keeps; the
    same holds for a report's retained status. Routed messages are all kept, in order.
    """
    incidents = {inc.incident_id: inc for inc in out.incidents}
    statuses = {st.request_id: st for st in out.statuses}
    return Outputs(
        incidents=list(incidents.values()), routes=out.routes, statuses=list(statuses.values())
    )


async def _deliver(out: Outputs) -> None:
    eng = engine()
    PUBLISHED.inc(len(out.incidents))
    for inc in out.incidents:
        await sink.incident(inc, eng.encoded(inc))
    for key, msg in out.routes:
        await sink.route(key, msg)
    for st in out.statuses:
        sink.status(st)


async def _locate(kind: str, source: str, payloads: list[bytes]) -> None:
    results = engine().locate([(kind, p) for p in payloads])
    for payload, r in zip(payloads, results, strict=True):
        if isinstance(r, Rejected):
            REFUSED.labels(kind).inc()
            _log.debug("%s refused: %s", kind, r.reason, extra={"field": r.field})
            await sink.dead_letter(source, payload, r)
        else:
            await sink.route(*r)


def _locate_batches(stream: Any) -> AsyncIterator[list[Any]]:
    conf = settings().streams
    batches: AsyncIterator[list[Any]] = stream.take(
        conf.locate_batch_max, within=conf.locate_batch_wait_ms / 1000.0
    )
    return batches


@app.agent(raw_reports)
async def locate_reports(stream: AsyncIterator[Any]) -> None:
    """Citizen reports -> observations at their home cell (snapped in batches)."""
    async for batch in _locate_batches(stream):
        try:
            await _locate("report", topics.RAW_REPORTS, [v for v in batch if v is not None])
        except Exception:
            _fatal("report batch")


@app.agent(raw_alerts)
async def locate_alerts(stream: AsyncIterator[Any]) -> None:
    """Sensor alerts -> observations at their home cell."""
    async for batch in _locate_batches(stream):
        try:
            await _locate("alert", topics.RAW_SENSOR_ALERTS, [v for v in batch if v is not None])
        except Exception:
            _fatal("alert batch")


@app.agent(
    name="dedup-cells",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
async def cells(stream: Any) -> None:
    """The one stateful agent: dedup, fusion, scoring and lifecycle per cell."""
    conf = settings().streams
    batches = stream.take_events(conf.cell_batch_max, within=conf.cell_batch_wait_ms / 1000.0)
    async for events in batches:
        try:
            out = handle_batch(engine(), events)
            await _flush_tables()
            await _deliver(coalesce(out))
        except Exception:
            _fatal("cell batch")


def handle_batch(eng: Engine, events: Iterable[Any]) -> Outputs:
    """Handle a batch of cell-topic events in order, each as Faust's current event."""
    out = Outputs()
    for event in events:
        key, value = event.key, event.value
        if key is None or value is None:
            continue
        try:
            msg = loads(value) if isinstance(value, bytes | str) else value
            with _AsEvent(event):
                out.extend(eng.handle(_text(key), msg))
        except Exception:  # a bad message must not stop the partition
            DROPPED.inc()
            _log.exception("cell message dropped", extra={"key": _text(key)})
    return out


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


@app.agent(crew_events)
async def crew(stream: Any) -> None:
    """Crew statuses about an incident -> the incident's cell."""
    async for value in stream:
        routed = engine().route_crew_event(value) if value else None
        if routed is not None:
            await _route_or_exit(routed, "crew event")


@app.agent(commands)
async def dispatcher_commands(stream: Any) -> None:
    """Dispatcher commands (reprioritise, mark_duplicate, close) -> the incident's cell."""
    async for value in stream:
        routed = engine().route_command(value) if value else None
        if routed is not None:
            await _route_or_exit(routed, "command")


async def _route_or_exit(routed: tuple[str, Msg], what: str) -> None:
    """Send one message to its cell, or stop the worker if it cannot even be queued.

    An error escaping the agent would have Faust acknowledge the message unrouted (see
    ``_fatal``); a record queued but refused later stops the worker too
    (``_exit_unless_sent``).
    """
    try:
        await sink.route(*routed)
    except Exception:
        _fatal(what)


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
        # The messages first, and in Kafka, before the table holds the new plan: written
        # first, a crash in between left the plan applied and its messages never sent,
        # and the replay found nothing to send. Replayed, they change nothing twice.
        try:
            changes = Engine.plan_changes(crew_id, before, after, at_s)
            sent = [await sink.route(cell, msg) for cell, msg in changes]
            if sent:
                # Not ``gather``: cancelled (the worker stopping), it would cancel the sends'
                # futures, which stops the worker as a refused record would.
                await asyncio.wait(sent)
                for fut in sent:
                    fut.result()
            # Written as the cell agent writes its tables (store and changelog partition of
            # this message, sent before the offset can commit). A table assignment would
            # first check the changelog's partition count in the consumer's metadata, which
            # on a fresh Kafka lacks the changelog topic the worker has just created for
            # minutes: every plan crashed the agent until it refreshed.
            await _Keyed(plans_table).write([(crew_id, dumps(after), current_event())])
        except Exception:
            _fatal("crew plan")


#: Incidents the aging timer reads and judges between two yields to the event loop.
AGING_SLICE = 250
#: Table records a scan of the open incidents reads between two yields to the event loop.
SCAN_SLICE = 1000


class OpenIncidents:
    """The ids of the incidents this worker holds that are not finished: what aging reads.

    The incidents table keeps every incident ever opened (closed, merged and duplicate
    ones for good, so a replayed report finds them), and after a year the finished ones
    are nearly all of it; aging only concerns the others. Reading all of it every interval,
    in one pass, held the one thread that handles every message for as long as the table
    was large.

    The set follows the writes: the cell agent's batch write to the incidents table
    (``note``, hooked on ``_Keyed.write``) adds an incident that is not finished and drops
    one that is, its status told by the engine, which has just built the record. Recovery
    writes into the store past every agent: it can bring incidents another worker opened
    or changed (a new partition, or one this worker held before a rebalance and gets back
    after the other worker wrote to it), so after every completed recovery the set is
    rebuilt by a scan of the table (``rebuild``), in slices that yield to the event loop.
    A revocation stops a scan under way (it would keep the revoked partitions' databases
    open, and Faust could not open them again if they came back). An id whose incident the
    worker no longer holds reads as missing, and one whose incident finished by recovery
    reads as finished; aging drops both (``forget``).
    """

    def __init__(self) -> None:
        self.ids: set[bytes] = set()
        #: The incidents partitions the last complete scan covered (None: none yet).
        self.scanned: frozenset[int] | None = None
        #: What the writes made of each id during a scan: its snapshot may be older.
        self._journal: dict[bytes, bool] | None = None
        self._scan: asyncio.Future[None] | None = None

    def note(self, records: list[tuple[bytes, bytes | None, Any]]) -> None:
        """Incident records just written to the table: keep the set in step with them."""
        eng = engine()
        journal = self._journal
        for key, value, _event in records:
            is_open = value is not None and not eng.finished(key.decode(), value)
            if is_open:
                self.ids.add(key)
            else:
                self.ids.discard(key)
            if journal is not None:
                journal[key] = is_open

    def forget(self, key: bytes) -> None:
        """The worker no longer holds ``key`` (its partition went to another worker)."""
        self.ids.discard(key)

    def revoked(self) -> None:
        """Partitions are being revoked: stop a scan under way (the next recovery scans)."""
        if self._scan is not None:
            self._scan.cancel()
            self._scan = None

    def recovered(self, held: frozenset[int]) -> None:
        """The tables hold the state of the assignment: rebuild the set from them.

        After every recovery, not only when the partitions changed: a recovery can replay
        another worker's writes into partitions this one held before. A scan under way (of
        an earlier assignment) stops: this one takes over.
        """
        self.revoked()
        self._scan = asyncio.ensure_future(self._rebuild_or_log(held))

    async def _rebuild_or_log(self, held: frozenset[int]) -> None:
        try:
            await self.rebuild(incidents_table, held)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The set keeps what the writes made of it; the next recovery scans again.
            _log.exception("open incidents: the scan of the table failed")

    async def rebuild(self, table: Any, held: frozenset[int]) -> None:
        """Replace the set with the open incidents of a full scan of ``table``.

        ``SCAN_SLICE`` records at a time, yielding to the event loop in between: the cell
        agent goes on writing meanwhile, and what it writes is kept aside (``_journal``)
        and wins over what the scan read, which may be from before.
        """
        eng = engine()
        journal: dict[bytes, bool] = {}
        self._journal = journal
        found: set[bytes] = set()
        started = time.monotonic()
        read = 0
        try:
            for key, value in _held_records(table):
                read += 1
                if value and not eng.finished(_text(key), value):
                    found.add(bytes(key))
                if read % SCAN_SLICE == 0:
                    await asyncio.sleep(0)
        finally:
            if self._journal is journal:
                self._journal = None
        for key, is_open in journal.items():
            if is_open:
                found.add(key)
            else:
                found.discard(key)
        self.ids = found
        self.scanned = held
        _log.info(
            "open incidents: %d of %d held",
            len(found),
            read,
            extra={"partitions": sorted(held), "seconds": round(time.monotonic() - started, 3)},
        )


def _held_records(table: Any) -> Iterator[tuple[Any, Any]]:
    """Every ``(key, value)`` of ``table`` in the partitions this worker holds, lazily.

    Safe to pause between records while the agents write. A RocksDB store is read through
    one iterator per partition database (each sees the database as it was when it was
    made), over the list of databases taken first: a write can open a database meanwhile.
    Any other store (the in-memory one) is a dict: its keys are copied first and each
    value read when its turn comes (None if it went meanwhile).
    """
    store = table.data
    dbs_for_actives = getattr(store, "_dbs_for_actives", None)
    if dbs_for_actives is not None:
        for db in list(dbs_for_actives()):
            yield from store._visible_items(db)
        return
    for key in list(store.keys()):
        yield key, store.get(key)


def held_partitions() -> frozenset[int]:
    """The partitions of the incidents table this worker holds as active (not standby)."""
    topic = incidents_table.changelog_topic.get_topic_name()
    return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)


open_incidents = OpenIncidents()
OPEN = Gauge(
    "cityfix_streams_open_incidents", "Incidents this worker holds that are not finished"
)
OPEN.set_function(lambda: len(open_incidents.ids))


def _incidents_written(records: list[tuple[bytes, bytes | None, Any]]) -> None:
    """The incidents table's batch writes, for ``open_incidents`` (``_Keyed.write``)."""
    open_incidents.note(records)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode's type fits no handler
async def _incidents_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
    """Before Faust lets go of the revoked partitions' databases."""
    open_incidents.revoked()
    # Their records are read again by their next owner from the offsets committed before
    # (commits wait for statuses, streams.offsets), which publishes those statuses anew.
    sink.forget_refused_statuses()


@incidents_table.on_recover
async def _incidents_recovered() -> None:
    """After every recovery: the table now holds the assignment's incidents."""
    open_incidents.recovered(held_partitions())


async def age_incidents() -> int:
    """Tick the open incidents whose score aged or whose close is due; how many were.

    Reads by id only the incidents ``open_incidents`` holds, ``AGING_SLICE`` at a time,
    yielding to the event loop in between: the loop also runs the cell agent and the
    consumer's heartbeats. A tick only asks: the incident's owner checks again what is due
    when it handles it, so one for an incident that finished or changed hands meanwhile
    does no harm (``Engine._on_tick``).
    """
    eng = engine()
    ids = list(open_incidents.ids)  # a copy: writes and scans change the set meanwhile
    ticked = 0
    for start in range(0, len(ids), AGING_SLICE):
        items = []
        for key in ids[start : start + AGING_SLICE]:
            value = incidents_table.get(key)
            if value and not eng.finished(_text(key), value):
                items.append((key, value))
            else:  # gone with its partition, or finished by a recovery
                open_incidents.forget(key)
        for cell, msg in eng.due_ticks(items):
            await sink.route(cell, msg)
            ticked += 1
        await asyncio.sleep(0)
    return ticked


_last_aging = 0.0


@app.timer(interval=5.0)
async def aging() -> None:
    """Every ``aging_interval_s``: tick open incidents whose score aged or whose close is due."""
    global _last_aging
    now = time.monotonic()
    if now - _last_aging < settings().streams.aging_interval_s:
        return
    _last_aging = now
    ticked = await age_incidents()
    if ticked:
        _log.info("aging: %d incidents re-scored or closing", ticked)
