"""Live push of incident and assignment changes, resumable through Kafka offsets.

The cursor is where a client is in the two compacted topics, as the next offset to read
per partition: ``{"incidents": {"0": 12, ...}, "assignments": {"0": 3, ...}}``. Every
pushed change carries the cursor just after it. A client that reconnects with
``?cursor=<that JSON>`` is replayed everything after it from Kafka (a consumer without a
group: ``assign`` + ``seek``), so a disconnect loses nothing. Without a cursor the client
first gets a snapshot, read from the compacted topics themselves up to their end offsets
(so the snapshot and the cursor that follows it agree exactly; the database could lag
behind Kafka), then live changes.

A client without a cursor is served by the process's ``LiveHub``: one consumer that has
read both topics once and keeps the latest record of every key, so the snapshot is ready at
once and costs no Kafka reads of its own (before, every such client read both compacted
topics from their beginning, and the incidents topic keeps every incident ever opened).
The hub's snapshot leaves out finished incidents (closed, merged, duplicate): the map
shows work, and the REST API keeps the history. Changes to them are still pushed. A
client that falls more than ``LiveHub.queue_max`` changes behind is closed with 1013 and
comes back with its cursor.

Messages sent (JSON text frames):

- ``{"type": "snapshot", "incidents": [...], "assignments": [...], "cursor": {...}}``
- ``{"type": "resumed", "cursor": {...}}`` first on a resume, once the replay is set up
  (so a client knows the feed answers even when nothing has changed since)
- ``{"type": "incident" | "assignment", "key": "...", "data": {...} | null, "cursor": {...}}``
  (``data`` null is a deletion)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core import topics
from core.errors import InvalidMessage, ServiceUnavailable
from core.schemas import IncidentStatus
from core.settings import Settings

log = logging.getLogger(__name__)

STREAMS = {"incidents": topics.INCIDENTS, "assignments": topics.ASSIGNMENTS}
_KIND = {"incidents": "incident", "assignments": "assignment"}
Cursor = dict[str, dict[int, int]]


def parse_cursor(text: str) -> Cursor:
    """Decode a cursor from its JSON text; ``InvalidMessage`` naming what is wrong."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage("cursor is not JSON", field="cursor") from exc
    if not isinstance(doc, dict):
        raise InvalidMessage("cursor must be an object", field="cursor")
    out: Cursor = {}
    for name, parts in doc.items():
        if name not in STREAMS:
            raise InvalidMessage(f"unknown stream {name!r}", field="cursor")
        if not isinstance(parts, dict):
            raise InvalidMessage(f"{name} must map partitions to offsets", field="cursor")
        out[name] = {}
        for p, off in parts.items():
            try:
                partition, offset = int(p), int(off)
            except (TypeError, ValueError) as exc:
                raise InvalidMessage(f"{name}: bad partition/offset", field="cursor") from exc
            if partition < 0 or offset < 0:
                raise InvalidMessage(f"{name}: negative partition/offset", field="cursor")
            out[name][partition] = offset
    return out


def cursor_doc(cursor: Cursor) -> dict[str, dict[str, int]]:
    """A cursor as JSON-ready data (partition numbers as strings)."""
    return {name: {str(p): o for p, o in sorted(parts.items())} for name, parts in cursor.items()}


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


Send = Callable[[bytes], Awaitable[None]]

_SETUP_LIMIT_S = 30.0  # the hub's consumer start, partition lookup and end offsets

# Incidents in these states are done with: the hub's snapshot leaves them out.
_FINISHED = frozenset(
    s.value for s in (IncidentStatus.CLOSED, IncidentStatus.MERGED, IncidentStatus.DUPLICATE)
)


async def _partitions(settings: Settings, streams: dict[str, str]) -> list[TopicPartition]:
    """Every partition of the live topics, as the broker describes them now."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka.bootstrap, client_id="cityfix-api-live"
    )
    await admin.start()
    try:
        described = await admin.describe_topics(list(streams.values()))
    finally:
        await admin.close()
    return sorted(
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t["error_code"] == 0
        for p in t["partitions"]
    )


class FeedLagging(Exception):
    """A hub subscriber fell too far behind; it should come back with its cursor."""


class FeedLost(ServiceUnavailable):
    """The hub's consumer stopped (Kafka unavailable)."""


class LiveHub:
    """The latest record of every key of the live topics, shared by the process's clients.

    One group-less consumer reads both topics from their beginning once, then follows
    them; ``subscribe`` hands a client the snapshot of that state with the cursor just
    after it and a queue of every change after it, so a new map costs no Kafka reads of
    its own. Partitions added to the topics later are picked up within ``refresh_s``.
    Records are kept as the JSON bytes Kafka holds (checked once), not decoded.
    """

    def __init__(
        self,
        settings: Settings,
        streams: dict[str, str] | None = None,
        queue_max: int = 10_000,
        refresh_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.streams = streams or STREAMS
        self.queue_max = queue_max
        self.refresh_s = refresh_s
        self._topic_name = {t: n for n, t in self.streams.items()}
        self._app_id = settings.streams.app_id
        self.state: dict[str, dict[str, bytes]] = {n: {} for n in self.streams}
        self.cursor: Cursor = {n: {} for n in self.streams}
        self._subscribers: set[asyncio.Queue[bytes | Exception]] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self._advanced = asyncio.Event()  # set after every batch the hub has applied

    async def subscribe(self) -> tuple[bytes, asyncio.Queue[bytes | Exception]]:
        """The snapshot message and a queue of the change messages after it.

        The queue yields message bytes, or an exception (``FeedLagging``, ``FeedLost``)
        after which nothing more comes. Starts the hub's consumer on first use and waits
        until it has read up to where the topics ended then.
        """
        if self._task is None or self._task.done():
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(self._ready), name="live-hub")
        assert self._ready is not None
        await asyncio.shield(self._ready)
        await self._caught_up()
        # No await from here on: the snapshot and the queue start at the same record.
        queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(self.queue_max + 1)
        self._subscribers.add(queue)
        return self._snapshot(), queue

    async def _caught_up(self, limit_s: float = 5.0) -> None:
        """Wait (up to ``limit_s``) until the hub has read what the topics hold now.

        So a snapshot holds every record written before the client connected; past the
        limit, the rest follows as changes.
        """
        consumer, tps = self._consumer, self._tps
        if consumer is None or not tps:
            return
        # Best effort: a timeout or a consumer going away just ends the wait.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(limit_s):
                end = await consumer.end_offsets(tps)
                while True:
                    behind = [tp for tp in tps if await consumer.position(tp) < end[tp]]
                    if not behind:
                        return
                    await self._advanced.wait()

    def unsubscribe(self, queue: asyncio.Queue[bytes | Exception]) -> None:
        """Stop feeding ``queue``."""
        self._subscribers.discard(queue)

    async def stop(self) -> None:
        """Stop the consumer (its subscribers get ``FeedLost``)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _snapshot(self) -> bytes:
        return orjson.dumps(
            {
                "type": "snapshot",
                "incidents": [orjson.Fragment(v) for v in self.state["incidents"].values()],
                "assignments": [orjson.Fragment(v) for v in self.state["assignments"].values()],
                "cursor": cursor_doc(self.cursor),
            }
        )

    async def _run(self, ready: asyncio.Future[None]) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="cityfix-api-live-hub",
        )
        try:
            # Bounded: a broker that cannot say where the partitions begin and end fails
            # the waiting clients (1011, they retry) instead of holding them for ever.
            async with asyncio.timeout(_SETUP_LIMIT_S):
                await consumer.start()
                self.state = {n: {} for n in self.streams}
                self.cursor = {n: {} for n in self.streams}
                tps = await self._follow(consumer, [])
                end = await consumer.end_offsets(tps)
            self._consumer, self._tps = consumer, tps
            pending = set(tps)
            refresh_at = asyncio.get_running_loop().time() + self.refresh_s
            while True:
                if pending:
                    for tp in list(pending):
                        if await consumer.position(tp) >= end[tp]:
                            pending.discard(tp)
                    if not pending:
                        for tp in tps:  # exact, past any control records at the end
                            name = self._topic_name[tp.topic]
                            self.cursor[name][tp.partition] = await consumer.position(tp)
                        ready.set_result(None)
                        continue
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for tp, records in batch.items():
                    name = self._topic_name[tp.topic]
                    for rec in records:
                        self._apply(name, tp.partition, rec)
                self._advanced.set()
                self._advanced.clear()
                if asyncio.get_running_loop().time() >= refresh_at:
                    tps = self._tps = await self._follow(consumer, tps)
                    refresh_at = asyncio.get_running_loop().time() + self.refresh_s
        except BaseException as exc:
            lost = FeedLost(f"kafka: live feed stopped: {exc!r}")
            if not ready.done():
                ready.set_exception(lost)
                ready.exception()  # retrieved: a hub nobody waited for is not an error
            for queue in list(self._subscribers):
                self._end(queue, lost)
            self._subscribers.clear()
            if not isinstance(exc, Exception):
                raise
            log.warning("live hub stopped: %r", exc)
        finally:
            self._consumer, self._tps = None, []
            self._advanced.set()  # let waiters see the end
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _follow(
        self, consumer: AIOKafkaConsumer, known: list[TopicPartition]
    ) -> list[TopicPartition]:
        """Assign every partition there is now; new ones are read from their beginning."""
        tps = await _partitions(self.settings, self.streams)
        if set(tps) <= set(known):
            return known
        consumer.assign(tps)  # a new assignment forgets positions: put the old ones back
        for tp in tps:
            name = self._topic_name[tp.topic]
            offset = self.cursor[name].get(tp.partition)
            if offset is not None:
                consumer.seek(tp, offset)
            elif not known:  # the first assignment: every partition has its leader
                await consumer.seek_to_beginning(tp)
                self.cursor[name][tp.partition] = (await consumer.beginning_offsets([tp]))[tp]
            else:
                # Added since: read from offset 0, the start of a new partition. Asking
                # where it begins could wait until the consumer learns its leader, and
                # it enters the cursor with its first record.
                consumer.seek(tp, 0)
        return tps

    def _apply(self, name: str, partition: int, rec: Any) -> None:
        self.cursor[name][partition] = rec.offset + 1
        if name == "incidents" and topics.from_another_app(rec.headers, self._app_id):
            return
        key = rec.key.decode("utf-8", "replace") if rec.key else str(rec.offset)
        doc = _decode(rec.value)
        value = None if doc is None else rec.value
        finished = name == "incidents" and isinstance(doc, dict) and doc.get("status") in _FINISHED
        if value is None or finished:
            self.state[name].pop(key, None)
        else:
            self.state[name][key] = value
        if not self._subscribers:
            return
        message = orjson.dumps(
            {
                "type": _KIND[name],
                "key": key if rec.key else None,
                "data": None if value is None else orjson.Fragment(value),
                "cursor": cursor_doc(self.cursor),
            }
        )
        for queue in list(self._subscribers):
            if queue.qsize() >= self.queue_max:
                self._subscribers.discard(queue)
                self._end(queue, FeedLagging(f"more than {self.queue_max} changes behind"))
            else:
                queue.put_nowait(message)

    @staticmethod
    def _end(queue: asyncio.Queue[bytes | Exception], error: Exception) -> None:
        # The queue holds one more than queue_max, so the end always fits.
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(error)


async def follow_hub(hub: LiveHub, send: Send) -> None:
    """Send ``hub``'s snapshot, then its changes, until it ends the subscription (raises)."""
    snapshot, queue = await hub.subscribe()
    try:
        await send(snapshot)
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            await send(item)
    finally:
        hub.unsubscribe(queue)


class LiveFeed:
    """One client's feed: a group-less consumer of the incidents and assignments topics."""

    def __init__(self, settings: Settings, streams: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.streams = streams or STREAMS
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="cityfix-api-live",
        )
        self._topic_name = {t: n for n, t in self.streams.items()}
        self.cursor: Cursor = {name: {} for name in self.streams}
        # Incidents written by another deployment's stream worker sharing the Kafka (a
        # test, a benchmark) are not this city's: they stay off the map.
        self._app_id = settings.streams.app_id

    def _foreign(self, name: str, rec: Any) -> bool:
        return name == "incidents" and topics.from_another_app(rec.headers, self._app_id)

    async def run(self, send: Send, cursor: Cursor | None) -> None:
        """Send a snapshot (no cursor) or the replay after ``cursor``, then live changes."""
        await self.consumer.start()
        try:
            tps = await _partitions(self.settings, self.streams)
            self.consumer.assign(tps)
            if cursor is None:
                await self._snapshot(send, tps)
            else:
                for tp in tps:
                    name = self._topic_name[tp.topic]
                    offset = cursor.get(name, {}).get(tp.partition)
                    if offset is None:
                        await self.consumer.seek_to_beginning(tp)
                        offset = (await self.consumer.beginning_offsets([tp]))[tp]
                    else:
                        self.consumer.seek(tp, offset)
                    self.cursor[name][tp.partition] = offset
                await send(orjson.dumps({"type": "resumed", "cursor": cursor_doc(self.cursor)}))
            while True:
                batch = await self.consumer.getmany(timeout_ms=1000, max_records=500)
                for tp, records in batch.items():
                    name = self._topic_name[tp.topic]
                    for rec in records:
                        self.cursor[name][tp.partition] = rec.offset + 1
                        if self._foreign(name, rec):
                            continue
                        await send(
                            orjson.dumps(
                                {
                                    "type": _KIND[name],
                                    "key": rec.key.decode("utf-8", "replace") if rec.key else None,
                                    "data": _decode(rec.value),
                                    "cursor": cursor_doc(self.cursor),
                                }
                            )
                        )
        finally:
            await self.consumer.stop()

    async def _snapshot(self, send: Send, tps: list[TopicPartition]) -> None:
        end = await self.consumer.end_offsets(tps)
        state: dict[str, dict[str, Any]] = {name: {} for name in self.streams}
        pending = {tp for tp in tps if end[tp] > 0}
        for tp in tps:
            await self.consumer.seek_to_beginning(tp)
            self.cursor[self._topic_name[tp.topic]][tp.partition] = end[tp]
        while pending:
            batch = await self.consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                name = self._topic_name[tp.topic]
                for rec in records:
                    if rec.offset >= end[tp]:
                        break
                    if self._foreign(name, rec):
                        continue
                    key = rec.key.decode("utf-8", "replace") if rec.key else str(rec.offset)
                    value = _decode(rec.value)
                    if value is None:
                        state[name].pop(key, None)
                    else:
                        state[name][key] = value
            for tp in list(pending):
                if await self.consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        for tp in tps:
            self.consumer.seek(tp, end[tp])
        await send(
            orjson.dumps(
                {
                    "type": "snapshot",
                    "incidents": list(state["incidents"].values()),
                    "assignments": list(state["assignments"].values()),
                    "cursor": cursor_doc(self.cursor),
                }
            )
        )
