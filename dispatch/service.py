"""The dispatcher service (``cityfix dispatch run``): Kafka and MQTT around the pure model.

::

    incidents ─┐                        ┌─ worker process ──────────────────┐
    crew.events├─ World ─ Draft ──────► │ snap → matrix → solve → routes    │ ─┐
    commands ──┘    ▲                   └───────────────────────────────────┘  │
                    │                                                          ▼
           assignments (read once at start)        assignments (Kafka, key = crew id)
                                                   cityfix/v1/crews/{id}/assignment (retained)
                                                   dispatch.runs

Start-up rebuilds the world: ``assignments`` (what was last published), ``incidents``,
``crew.events`` and ``commands`` are read from the beginning to the end offsets taken at
start, and only then is the first plan made. After that, a new or re-prioritised
incident, a crew status change, a pin or a stand-down, and a timer
(``replan_interval_s``) each ask for a re-plan; requests within ``debounce_s`` of the
first are served by one run. Both intervals are wall-clock seconds: they pace the
process, not the simulated city.

The CPU-bound work runs in a one-process pool, so the event loop keeps consuming while
the solver thinks. Each crew's plan is published only when its stops changed (all of
them on the first plan after start); crews that drop out of the plan (off shift, stood
down) get an empty plan. One structured log line and one ``dispatch.runs`` record
describe every run. SIGTERM (and SIGINT) stop consuming, let a running plan finish and
publish, flush Kafka and MQTT, and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import signal
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from core import schemas, topics
from core.clock import Clock
from core.errors import CityfixError, InvalidMessage
from core.mqtt import service_client
from core.schemas import Assignment, Command, CrewPosition, CrewStatus, DispatchRun, Incident
from core.settings import Settings
from dispatch import _worker, solver, world
from dispatch.model import Plan

__all__ = ["Dispatcher", "run"]

log = logging.getLogger(__name__)

_LIVE_TOPICS = (topics.INCIDENTS, topics.CREW_EVENTS, topics.COMMANDS)
_POLL_MS = 500
# How far ahead of the dispatcher's clock a crew message may be stamped (clock drift).
_CLOCK_SKEW = timedelta(minutes=5)
_MQTT_FLUSH_S = 5.0


class _Publisher:
    """The MQTT side: each crew's plan, retained, QoS 1, as the service identity."""

    def __init__(self, settings: Settings) -> None:
        cfg = settings.mqtt
        self._connected = threading.Event()
        self._acked = threading.Condition()
        self._unacked: set[int] = set()
        self._early: set[int] = set()  # acked before publish() returned its mid
        self._stopping = False
        self._client = service_client(
            cfg,
            f"{settings.dispatch.client_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self._client.max_inflight_messages_set(cfg.max_inflight)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.connect_async(cfg.host, cfg.port, cfg.keepalive_s)

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt connect refused", extra={"reason": str(reason)})
            return
        self._connected.set()
        log.info("mqtt connected")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        if not self._stopping:
            log.warning("mqtt disconnected; reconnecting", extra={"reason": str(reason)})

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        with self._acked:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early.add(mid)
            self._acked.notify_all()

    async def start(self, timeout_s: float) -> None:
        """Start the network thread and wait (bounded) for the first connection."""
        self._client.loop_start()
        if not await asyncio.to_thread(self._connected.wait, timeout_s):
            log.warning("mqtt not connected yet; plans are queued until it is")

    def publish(self, plan: Assignment) -> None:
        """Queue a crew's plan (retained, QoS 1); paho sends it now, or after reconnecting."""
        # Not under our lock: paho calls on_publish holding its own.
        info = self._client.publish(
            topics.crew_topic(plan.crew_id, "assignment"), schemas.dumps(plan), qos=1, retain=True
        )
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.error("plan not queued for mqtt", extra={"crew_id": plan.crew_id, "rc": info.rc})
            return
        with self._acked:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._unacked.add(info.mid)

    async def stop(self) -> None:
        """Wait (bounded) until the broker acknowledged every plan, then disconnect."""

        def flush() -> bool:
            with self._acked:
                return self._acked.wait_for(lambda: not self._unacked, _MQTT_FLUSH_S)

        if not await asyncio.to_thread(flush):
            log.warning("plans not acknowledged by mqtt", extra={"count": len(self._unacked)})
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()


def _decode(
    record: ConsumerRecord[bytes, bytes],
    state: world.World,
    streams_app: str | None = None,
    now: datetime | None = None,
) -> str | None:
    """Apply one record to ``state``; the re-plan reason, if any. Bad input is skipped.

    A crew status or position stamped more than ``_CLOCK_SKEW`` ahead of ``now`` is bad
    input too: kept, it would hide every later message of that crew (older ones are
    ignored), and ``crew.events`` would replay it at every restart for a week.

    An incident record written by another deployment's stream worker (its ``cityfix-app``
    header names another app than ``streams_app``) is not this city's work: a benchmark or
    a test sharing the Kafka would otherwise fill the plan. Records without the header
    (published by hand, by an older worker) are taken.
    """
    topic, value = record.topic, record.value
    try:
        if topic == topics.INCIDENTS:
            if streams_app is not None and topics.from_another_app(record.headers, streams_app):
                return None
            if value is None:
                key = record.key.decode() if record.key else ""
                return state.remove_incident(key)
            return state.apply_incident(schemas.parse(Incident, value))
        if value is None:
            return None
        if topic == topics.CREW_EVENTS:
            doc = json.loads(value)
            if not isinstance(doc, dict):
                raise InvalidMessage("payload must be a JSON object", field="payload")
            msg: CrewStatus | CrewPosition = (
                schemas.parse(CrewStatus, doc)
                if "status" in doc
                else schemas.parse(CrewPosition, doc)
            )
            if now is not None and msg.at > now + _CLOCK_SKEW:
                raise InvalidMessage(f"stamped {msg.at.isoformat()}, ahead of the clock", "at")
            if isinstance(msg, CrewStatus):
                return state.apply_crew_status(msg)
            return state.apply_crew_position(msg)
        if topic == topics.COMMANDS:
            return state.apply_command(schemas.parse(Command, value))
    except (InvalidMessage, ValueError) as exc:
        log.warning(
            "record skipped",
            extra={"topic": topic, "offset": record.offset, "reason": str(exc)},
        )
    return None


class Dispatcher:
    """The re-planning loop. ``await Dispatcher(settings).run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or settings.make_clock()
        self.world = world.World()
        self.published: dict[str, Assignment] = {}
        self.previous: Plan | None = None
        self.runs = 0
        self._reasons: set[str] = set()
        self._dirty = asyncio.Event()
        self._executor: ProcessPoolExecutor | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._mqtt: _Publisher | None = None

    # -- life cycle -------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Start up, rebuild the world, plan, and keep re-planning until ``stop``."""
        kafka = self.settings.kafka.bootstrap
        self._executor = self._new_executor()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka,
            enable_idempotence=True,
            acks="all",
            client_id=self.settings.dispatch.client_id,
        )
        self._mqtt = _Publisher(self.settings)
        try:
            nodes = await self._in_worker(_worker.ready)
            log.info("road graph loaded", extra={"city": self.settings.geo.city, "nodes": nodes})
            await self._producer.start()
            await self._mqtt.start(self.settings.mqtt.keepalive_s)
            await self._bootstrap()
            # The solver starts its part helper beside the worker now, not in the first plan.
            await self._in_worker(solver.prepare, self.settings.dispatch, len(self.world.crews))
            self._request("start")
            consume = asyncio.create_task(self._consume(), name="dispatch-consume")
            planner = asyncio.create_task(self._planner(stop), name="dispatch-planner")
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait(
                {consume, planner, stopped}, return_when=asyncio.FIRST_COMPLETED
            )
            consume.cancel()
            stop.set()  # a failed task stops the other one too
            with contextlib.suppress(asyncio.CancelledError):
                await consume
            await planner  # lets a running plan finish and publish
            for task in done:
                if task is not stopped and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self._producer.flush()
            await self._producer.stop()
        if self._mqtt is not None:
            await self._mqtt.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        log.info("dispatcher stopped", extra={"runs": self.runs})

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker.init,
            initargs=(self.settings.geo, self.settings.log_level, self.settings.log_json),
        )

    async def _in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except BrokenProcessPool:
            log.error("worker process died; starting a new one")
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()
            raise

    # -- reading ----------------------------------------------------------------------
    async def _partitions(self, names: Iterable[str]) -> list[TopicPartition]:
        assert self._producer is not None
        out = []
        for name in names:
            out += [
                TopicPartition(name, p) for p in sorted(await self._producer.partitions_for(name))
            ]
        return out

    async def _read_to_end(
        self,
        consumer: AIOKafkaConsumer,
        parts: list[TopicPartition],
        handle: Callable[[ConsumerRecord[bytes, bytes]], object],
    ) -> int:
        """Read ``parts`` from the beginning up to the end offsets as of now."""
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        todo = {tp for tp in parts if end[tp] > 0}
        count = 0
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=_POLL_MS)
            for records in batch.values():
                for record in records:
                    handle(record)
                    count += 1
            for tp in list(todo):
                if await consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
        return count

    async def _bootstrap(self) -> None:
        """Rebuild the world and the last published plans from the topics."""
        kafka = self.settings.kafka.bootstrap
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        published = AIOKafkaConsumer(
            bootstrap_servers=kafka, enable_auto_commit=False, group_id=None
        )
        await published.start()
        try:

            def keep(record: ConsumerRecord[bytes, bytes]) -> None:
                crew_id = record.key.decode() if record.key else ""
                if record.value is None:
                    self.published.pop(crew_id, None)
                    return
                try:
                    self.published[crew_id] = schemas.parse(Assignment, record.value)
                except InvalidMessage as exc:
                    log.warning(
                        "assignment skipped", extra={"crew_id": crew_id, "reason": str(exc)}
                    )

            n_plans = await self._read_to_end(
                published, await self._partitions([topics.ASSIGNMENTS]), keep
            )
        finally:
            await published.stop()
        self.previous = world.plan_from_assignments(self.published.values())

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka,
            enable_auto_commit=False,
            group_id=None,
            client_id=self.settings.dispatch.client_id,
        )
        await self._consumer.start()
        n_events = await self._read_to_end(
            self._consumer,
            await self._partitions(_LIVE_TOPICS),
            lambda r: _decode(r, self.world, self.settings.streams.app_id, self.clock.now()),
        )
        log.info(
            "world rebuilt",
            extra={
                "records": n_events,
                "assignments": n_plans,
                "incidents": len(self.world.incidents),
                "crews": len(self.world.crews),
                "pins": len(self.world.pins),
                "ms": round((loop.time() - t0) * 1000, 1),
            },
        )

    async def _consume(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=_POLL_MS)
            for records in batch.values():
                for record in records:
                    reason = _decode(
                        record, self.world, self.settings.streams.app_id, self.clock.now()
                    )
                    if reason is not None:
                        self._request(reason)

    # -- planning ---------------------------------------------------------------------
    def _request(self, reason: str) -> None:
        self._reasons.add(reason)
        self._dirty.set()

    async def _planner(self, stop: asyncio.Event) -> None:
        cfg = self.settings.dispatch
        while not stop.is_set():
            if not await _first(stop, self._dirty, timeout_s=cfg.replan_interval_s):
                if stop.is_set():
                    return
                self._request("timer")
            elif stop.is_set():
                return
            elif "start" not in self._reasons and cfg.debounce_s > 0:
                # More events usually follow the first; one plan serves them all.
                await _first(stop, timeout_s=cfg.debounce_s)
                if stop.is_set():
                    return
            reasons, self._reasons = self._reasons, set()
            self._dirty.clear()
            await self._replan("+".join(sorted(reasons)))

    async def _replan(self, trigger: str) -> None:
        cfg = self.settings.dispatch
        at = self.clock.now()
        plan_id = f"{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        try:
            draft = self.world.draft(at, cfg)
            outcome: _worker.Outcome = await self._in_worker(
                _worker.plan, draft, cfg, self.previous, plan_id
            )
        except (CityfixError, BrokenProcessPool) as exc:
            log.error("re-plan failed", extra={"trigger": trigger, "reason": repr(exc)})
            return
        except Exception:  # a defect, not a state of the world: the next plan may work
            log.exception("re-plan failed", extra={"trigger": trigger})
            return
        for note in outcome.notes:
            log.debug("draft note: %s", note)
        first = self.runs == 0
        # A crew that went off duty while the solver worked is not sent this plan (an empty
        # one if it had stops): the status that took it off has asked for the next plan,
        # which gives its jobs to others.
        kept = {c: a for c, a in outcome.assignments.items() if not self.world.off_duty(c)}
        gone = outcome.assignments.keys() - kept.keys()
        changed = [
            a
            for crew_id, a in kept.items()
            if first or not world.same_stops(self.published.get(crew_id), a)
        ]
        # Crews this world knows and left out (off shift, stood down, shift over) get an
        # empty plan; crews outside this city's graph belong to another dispatcher, unless
        # this plan gives one of their stops to a crew of its own (the crew drove out of
        # the graph): a job is never on two crews' plans.
        drafted = {c.crew_id for c in draft.crews} - gone
        planned = set(outcome.crew_ids) - gone
        taken = {s.incident_id for a in kept.values() for s in a.stops}
        for crew_id, old in sorted(self.published.items()):
            if not old.stops or crew_id in planned or crew_id not in self.world.crews:
                continue
            if crew_id in drafted and taken.isdisjoint(s.incident_id for s in old.stops):
                continue
            where = self.world.crew_position(crew_id)
            lonlat = (where[1], where[0]) if where else old.route.coordinates[0]
            changed.append(world.empty_assignment(crew_id, plan_id, at, lonlat))
        await self._publish(changed)
        self.previous = outcome.plan
        self.runs += 1
        plan = outcome.plan
        record = DispatchRun(
            plan_id=plan_id,
            at=at,
            trigger=trigger,
            # Every job of the draft: the ones planned, deferred to a later plan, and
            # refused at snapping all count, and all but the planned ones are unassigned.
            jobs=len(draft.jobs) + len(draft.deferred),
            crews=len(outcome.crew_ids),
            matrix_ms=round(outcome.matrix_ms, 1),
            solve_ms=round(outcome.solve_ms, 1),
            objective=float(plan.objective),
            unassigned=len(plan.unassigned)
            + len(draft.deferred)
            + len(draft.jobs)
            - outcome.job_count,
            moved=outcome.moved,
        )
        assert self._producer is not None
        try:
            await self._producer.send_and_wait(
                topics.DISPATCH_RUNS, schemas.dumps(record), key=plan_id.encode()
            )
        except KafkaError as exc:
            log.warning("dispatch run not recorded", extra={"reason": repr(exc)})
        log.info(
            "re-planned",
            extra={
                **record.model_dump(mode="json", exclude={"v", "at"}),
                "published": len(changed),
                "warm": plan.warm_started,
                "deferred": len(draft.deferred),
                "notes": len(outcome.notes),
            },
        )

    async def _publish(self, plans: list[Assignment]) -> None:
        """Send every plan to Kafka (key = crew id) and MQTT (retained)."""
        assert self._producer is not None and self._mqtt is not None
        producer = self._producer

        async def send(a: Assignment) -> Any:
            # ``send`` itself raises when the record cannot even be queued (no metadata,
            # buffer full): that crew's plan is not sent, the others still are.
            delivered = await producer.send(
                topics.ASSIGNMENTS, schemas.dumps(a), key=a.crew_id.encode()
            )
            return await delivered

        results = await asyncio.gather(*(send(a) for a in plans), return_exceptions=True)
        for a, result in zip(plans, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "assignment not sent", extra={"crew_id": a.crew_id, "reason": repr(result)}
                )
                continue
            self.published[a.crew_id] = a
            self._mqtt.publish(a)


async def _first(*events: asyncio.Event, timeout_s: float) -> bool:
    """Wait until any of ``events`` is set; ``False`` on timeout."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return bool(done)


async def run(settings: Settings) -> None:
    """Run the dispatcher until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await Dispatcher(settings).run(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
