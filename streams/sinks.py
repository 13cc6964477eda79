"""Sink agents: every Kafka topic cityfix keeps, written to the store in batches.

One agent per topic, each with its own ``store.writers.Writer`` (its own connection), so
a slow table never holds up another. Each agent reads its topic through a channel of its
own (``value_serializer="raw"``), independent of any other agent subscribed to the same
topic; Faust commits an offset only after every subscribed agent acknowledged the
message, and ``stream.take`` acknowledges a batch only after the loop body (the write)
returned: an outage stalls the sink, it never skips data. A value that fails to parse is
logged and counted, and the batch goes on without it.

In plain PostgreSQL mode a store worker also does what TimescaleDB's background jobs do
(``store.plain_upkeep``): every ``streams.store_upkeep_interval_s`` it refreshes the
dashboard views and drops raw telemetry older than ``streams.telemetry_keep_days``; with
several store workers, one at a time does it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import psycopg
from prometheus_client import Counter
from pydantic import BaseModel

import store
from core import topics
from core.errors import ConfigError, InvalidMessage
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
    parse,
)
from store.writers import Writer
from streams.app import app, settings

log = logging.getLogger(__name__)

BATCH_MAX = 2000
BATCH_WITHIN_S = 1.0
_RETRY_S = 5.0  # between attempts at a batch the writer raised on

INVALID = Counter(
    "cityfix_sink_invalid_total", "Values a sink could not parse, by topic", ["topic"]
)
WRITTEN = Counter("cityfix_sink_written_total", "Rows written by the sinks, by topic", ["topic"])

Picker = Callable[[dict[str, Any]], type[BaseModel]]


def _always(model: type[BaseModel]) -> Picker:
    return lambda _doc: model


def pick_crew_event(doc: dict[str, Any]) -> type[BaseModel]:
    """``crew.events`` carries statuses (with ``status``) and positions (with ``lat``)."""
    if "status" in doc:
        return CrewStatus
    if "lat" in doc:
        return CrewPosition
    raise InvalidMessage("neither a crew status nor a crew position", field="payload")


def pick_sensor_data(doc: dict[str, Any]) -> type[BaseModel]:
    """``raw.telemetry`` carries telemetry (``metrics``) and device status (``online``)."""
    if "online" in doc:
        return DeviceStatus
    return Telemetry


def decode(topic: str, values: Iterable[bytes | str | None], pick: Picker) -> list[BaseModel]:
    """Parse a batch of raw values; log and count the ones that are not valid messages.

    On ``incidents`` only the newest version of each incident in the batch is parsed:
    each record is the incident's full state, so it holds all an older one would write.
    """
    docs: list[dict[str, Any]] = []
    for value in values:
        if value is None:  # a tombstone on a compacted topic: nothing to keep
            continue
        try:
            doc = orjson.loads(value)
            if not isinstance(doc, dict):
                raise InvalidMessage("payload must be a JSON object", field="payload")
        except (InvalidMessage, orjson.JSONDecodeError) as exc:
            _invalid(topic, exc)
            continue
        docs.append(doc)
    if topic == topics.INCIDENTS:
        docs = _newest_per_incident(docs)
    out: list[BaseModel] = []
    for doc in docs:
        try:
            out.append(parse(pick(doc), doc))
        except InvalidMessage as exc:
            _invalid(topic, exc)
    return out


def _invalid(topic: str, exc: Exception) -> None:
    INVALID.labels(topic).inc()
    log.warning("sink skipped an invalid value", extra={"topic": topic, "error": str(exc)})


def _newest_per_incident(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    newest: dict[Any, dict[str, Any]] = {}
    odd: list[dict[str, Any]] = []  # no usable id/version: let the parser say why
    for doc in docs:
        key, version = doc.get("incident_id"), doc.get("version")
        if not isinstance(key, str) or not isinstance(version, int):
            odd.append(doc)
            continue
        have = newest.get(key)
        if have is None or version >= have["version"]:
            newest[key] = doc
    return [*newest.values(), *odd]


async def _write(writer: Writer, messages: list[BaseModel]) -> int:
    """Write a batch, however long it takes.

    ``Writer.write`` waits out outages itself; anything else it raises is a defect, and
    letting it escape would restart the agent, and the restart acknowledges the batch
    unwritten. The sink stalls on the batch instead, saying why, until it goes through.
    """
    while True:
        try:
            return await writer.write(messages)
        except Exception:
            log.exception("sink write failed; retrying", extra={"writer": writer.name})
            await asyncio.sleep(_RETRY_S)


def _make_sink(topic_name: str, pick: Picker) -> None:
    channel = app.topic(topic_name, value_serializer="raw")
    agent_name = "store-" + topic_name.replace(".", "-")

    async def sink(stream: Any) -> None:
        writer = Writer(settings().pg.dsn, name=agent_name)
        app_id = settings().streams.app_id
        try:
            async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
                # Incidents another deployment's worker wrote to a shared Kafka (a test, a
                # benchmark) are not this city's; nor are they on its live map.
                values = [
                    e.value
                    for e in events
                    if not (
                        topic_name == topics.INCIDENTS
                        and topics.from_another_app(e.message.headers, app_id)
                    )
                ]
                messages = decode(topic_name, values, pick)
                if messages:
                    WRITTEN.labels(topic_name).inc(await _write(writer, messages))
        finally:
            await writer.close()

    sink.__name__ = sink.__qualname__ = agent_name.replace("-", "_")
    app.agent(channel, name=agent_name)(sink)


SINKS: dict[str, Picker] = {
    topics.RAW_REPORTS: _always(CitizenReport),
    topics.RAW_SENSOR_ALERTS: _always(SensorAlert),
    topics.RAW_TELEMETRY: pick_sensor_data,
    topics.CREW_EVENTS: pick_crew_event,
    topics.INCIDENTS: _always(Incident),
    topics.ASSIGNMENTS: _always(Assignment),
    topics.DISPATCH_RUNS: _always(DispatchRun),
    topics.INGEST_DLQ: _always(DeadLetter),
}


for _topic, _pick in SINKS.items():
    _make_sink(_topic, _pick)


_last_upkeep = 0.0


@app.timer(interval=5.0)
async def upkeep() -> None:
    """Plain PostgreSQL: the dashboard views' refresh and telemetry retention, on time."""
    global _last_upkeep
    conf = settings().streams
    now = time.monotonic()
    if now - _last_upkeep < conf.store_upkeep_interval_s:
        return
    _last_upkeep = now

    def run() -> None:
        with psycopg.connect(settings().pg.dsn, autocommit=True, connect_timeout=10) as conn:
            store.plain_upkeep(conn, keep_days=conf.telemetry_keep_days)

    try:
        await asyncio.to_thread(run)
    except (psycopg.Error, ConfigError) as exc:  # the next interval tries again
        log.warning("store upkeep failed", extra={"error": str(exc).strip()[:300]})

