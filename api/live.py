"""Live push of incident and assignment changes, resumable through Kafka offsets.

The cursor is where a client is in the two compacted topics, as the next offset to read
per partition: ``{"incidents": {"0": 12, ...}, "assignments": {"0": 3, ...}}``. Every
pushed change carries the cursor just after it. A client that reconnects with
``?cursor=<that JSON>`` is replayed everything after it from Kafka (a consumer without a
group: ``assign`` + ``seek``), so a disconnect loses nothing. Without a cursor the client
first gets a snapshot, read from the compacted topics themselves up to their end offsets
(so the snapshot and the cursor that follows it agree exactly; the database could lag
behind Kafka), then live changes.

Messages sent (JSON text frames):

- ``{"type": "snapshot", "incidents": [...], "assignments": [...], "cursor": {...}}``
- ``{"type": "incident" | "assignment", "key": "...", "data": {...} | null, "cursor": {...}}``
  (``data`` null is a deletion)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core import topics
from core.errors import InvalidMessage
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

    async def _partitions(self) -> list[TopicPartition]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka.bootstrap, client_id="cityfix-api-live"
        )
        await admin.start()
        try:
            described = await admin.describe_topics(list(self.streams.values()))
        finally:
            await admin.close()
        return sorted(
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if t["error_code"] == 0
            for p in t["partitions"]
        )

    async def run(self, send: Send, cursor: Cursor | None) -> None:
        """Send a snapshot (no cursor) or the replay after ``cursor``, then live changes."""
        await self.consumer.start()
        try:
            tps = await self._partitions()
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
