"""``cityfix dispatch run`` on real Kafka and Mosquitto: a crew and an incident in, the
crew's plan out on Kafka ``assignments`` and on its retained MQTT topic; a restart keeps
the plan.

Other tests and demos leave crews and incidents in the compacted topics; this test only
looks at its own ids, and its incident needs a skill only its own crew has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion

from core import topics
from core.settings import Settings
from tests.integration.procs import CityfixProcess

CREW_AT = (21.8632, -102.2795)  # aguascalientes, west
INCIDENT_AT = (21.8650, -102.2750)  # a few hundred metres east of it

pytestmark = pytest.mark.timeout(180)


def _iso(dt: datetime) -> str:
    return dt.isoformat()


class Kafka:
    """Produce records, and tap one topic from the offsets at creation."""

    def __init__(self, settings: Settings, tap: str) -> None:
        self.bootstrap = settings.kafka.bootstrap
        self.tap = tap
        self.records: list[tuple[str, dict[str, Any] | None]] = []
        self.pos = asyncio.run(self._ends())

    async def _consumer(self) -> AIOKafkaConsumer:
        c = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False
        )
        await c.start()
        return c

    def _tps(self) -> list[TopicPartition]:
        n = next(t.partitions for t in topics.KAFKA_TOPICS if t.name == self.tap)
        return [TopicPartition(self.tap, p) for p in range(n)]

    async def _ends(self) -> dict[TopicPartition, int]:
        c = await self._consumer()
        try:
            return dict(await c.end_offsets(self._tps()))
        finally:
            await c.stop()

    async def _poll(self) -> None:
        c = await self._consumer()
        try:
            c.assign(list(self.pos))
            for tp, off in self.pos.items():
                c.seek(tp, off)
            batch = await c.getmany(timeout_ms=300)
            for tp, recs in batch.items():
                for r in recs:
                    key = r.key.decode() if r.key else ""
                    self.records.append((key, json.loads(r.value) if r.value else None))
                self.pos[tp] = await c.position(tp)
        finally:
            await c.stop()

    def wait_for(
        self, pred: Callable[[str, dict[str, Any] | None], bool], timeout_s: float, what: str
    ) -> dict[str, Any]:
        """The first tapped record with ``pred(key, value)`` (re-checked on every poll)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for key, value in self.records:
                if pred(key, value):
                    assert value is not None
                    return value
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} on {self.tap} within {timeout_s} s")
            asyncio.run(self._poll())

    def send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        async def go() -> None:
            p = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await p.start()
            try:
                await p.send_and_wait(topic, json.dumps(value).encode(), key=key.encode())
            finally:
                await p.stop()

        asyncio.run(go())


class Dispatcher(CityfixProcess):
    """One ``cityfix dispatch run`` subprocess."""

    def __init__(self, log: Path) -> None:
        env = {
            **os.environ,
            "CITYFIX_GEO__CITY": "aguascalientes",
            "CITYFIX_DISPATCH__TIME_LIMIT_S": "0.5",
            "CITYFIX_DISPATCH__DEBOUNCE_S": "0.2",
        }
        super().__init__(["dispatch", "run"], env, log)

    def wait_log(self, text: str, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.output().count(text) < count:
            assert self.alive(), self.log()
            assert time.monotonic() < deadline, f"no {text!r} in time:\n{self.log()}"
            time.sleep(0.2)

    def made(self, plan: dict[str, Any] | None, run: int = 1) -> bool:
        """Whether ``plan`` came from this dispatcher's ``run``-th process."""
        if plan is None:
            return False
        starts = self.output().split("road graph loaded")
        return len(starts) > run and f"plan_id={plan['plan_id']} " in starts[run]


class RetainedPlan:
    """Subscribe (service identity) to a crew's assignment topic; keep what arrives."""

    def __init__(self, settings: Settings, crew_id: str) -> None:
        self.topic = topics.crew_topic(crew_id, "assignment")
        self.messages: list[tuple[bool, dict[str, Any]]] = []
        self._got = threading.Condition()
        cfg = settings.mqtt
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"itest-dispatch-{uuid.uuid4().hex[:8]}"
        )
        self.client.username_pw_set(cfg.service_username, cfg.service_password.get_secret_value())
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect(cfg.host, cfg.port, 30)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return
        with self._got:
            self.messages.append((bool(msg.retain), json.loads(msg.payload)))
            self._got.notify_all()

    def wait(self, timeout_s: float) -> tuple[bool, dict[str, Any]]:
        with self._got:
            assert self._got.wait_for(lambda: self.messages, timeout_s), "no retained plan"
            return self.messages[0]

    def clear(self) -> None:
        with contextlib.suppress(RuntimeError, ValueError):  # the broker may be restarting
            self.client.publish(self.topic, b"", qos=1, retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def dispatcher(tmp_path: Path) -> Iterator[Dispatcher]:
    d = Dispatcher(tmp_path / "dispatch.log")
    yield d
    d.stop()


def test_a_crew_gets_its_plan_on_kafka_and_mqtt_and_keeps_it_across_a_restart(
    settings: Settings, uid: str, dispatcher: Dispatcher
) -> None:
    crew_id, incident_id, skill = f"itest-crew-{uid}", f"itest-inc-{uid}", f"itest-{uid}"
    now = datetime.now(UTC)
    assignments = Kafka(settings, topics.ASSIGNMENTS)
    runs = Kafka(settings, topics.DISPATCH_RUNS)
    status = {
        "v": 1,
        "crew_id": crew_id,
        "status": "available",
        "incident_id": None,
        "at": _iso(now),
        "skills": [skill],
        "shift_end": _iso(now + timedelta(hours=8)),
    }
    position = {"v": 1, "crew_id": crew_id, "lat": CREW_AT[0], "lon": CREW_AT[1], "at": _iso(now)}
    incident = {
        "v": 1,
        "incident_id": incident_id,
        "version": 1,
        "status": "open",
        "category": "pothole",
        "family": "road_surface",
        "priority": "P2",
        "score": 50.0,
        "score_breakdown": {"severity": 20.0},
        "lat": INCIDENT_AT[0],
        "lon": INCIDENT_AT[1],
        "evidence": [{"v": 1, "kind": "report", "id": str(uuid.uuid4())}],
        "reporters": 1,
        "opened_at": _iso(now),
        "updated_at": _iso(now),
        "expected_at": _iso(now + timedelta(hours=4)),
        "skill": skill,
        "service_s": 900.0,
    }

    def mine_with_incident(key: str, value: dict[str, Any] | None) -> bool:
        return (
            key == crew_id
            and value is not None
            and any(s["incident_id"] == incident_id for s in value["stops"])
        )

    sent_off = False

    def send_off() -> None:
        nonlocal sent_off
        later = datetime.now(UTC)
        off = {**status, "status": "off_shift", "at": _iso(later)}
        closed = {**incident, "version": 2, "status": "closed", "updated_at": _iso(later)}
        assignments.send(topics.CREW_EVENTS, crew_id, off)
        assignments.send(topics.INCIDENTS, incident_id, closed)
        sent_off = True

    dispatcher.start()
    plan_mqtt: RetainedPlan | None = None
    try:
        dispatcher.wait_log("re-planned", 1, timeout_s=60)
        assignments.send(topics.CREW_EVENTS, crew_id, status)
        assignments.send(topics.CREW_EVENTS, crew_id, position)
        assignments.send(topics.INCIDENTS, incident_id, incident)

        # Another dispatcher may run on the same Kafka (a demo): take this one's plans only.
        first = assignments.wait_for(
            lambda k, v: mine_with_incident(k, v) and dispatcher.made(v),
            30,
            "plan with the incident",
        )
        assert first["crew_id"] == crew_id
        assert [s["incident_id"] for s in first["stops"]] == [incident_id]
        stop = first["stops"][0]
        eta = datetime.fromisoformat(stop["eta"])
        assert now < eta < now + timedelta(minutes=30), "a few minutes' drive away"
        assert (stop["lat"], stop["lon"]) == INCIDENT_AT
        assert first["route"]["type"] == "LineString"
        assert len(first["route"]["coordinates"]) >= 2
        assert first["route"]["coordinates"][0] == [CREW_AT[1], CREW_AT[0]]
        assert len(first["leg_eta_s"]) == 1

        plan_mqtt = RetainedPlan(settings, crew_id)
        retained, on_mqtt = plan_mqtt.wait(10)
        assert retained, "a late subscriber gets the crew's plan from the broker"
        assert on_mqtt["crew_id"] == crew_id
        assert [s["incident_id"] for s in on_mqtt["stops"]] == [incident_id]

        run = runs.wait_for(
            lambda _k, v: v is not None and v["plan_id"] == first["plan_id"], 10, "run record"
        )
        assert run["jobs"] >= 1 and run["crews"] >= 1 and run["solve_ms"] > 0

        # Restart: the world comes back from the topics and the plan stays.
        assert dispatcher.stop() == 0, dispatcher.log()
        assert "dispatcher stopped" in dispatcher.output()
        dispatcher.start()
        dispatcher.wait_log("world rebuilt", 2, timeout_s=60)
        again = assignments.wait_for(
            lambda k, v: mine_with_incident(k, v) and dispatcher.made(v, run=2),
            30,
            "the crew's plan after the restart",
        )
        assert [s["incident_id"] for s in again["stops"]] == [incident_id]
        rebuilt = [ln for ln in dispatcher.output().splitlines() if "world rebuilt" in ln][-1]
        assert "assignments=0" not in rebuilt

        # The crew goes home and the incident is closed: the crew's plan empties (a crew
        # that leaves the plan gets an empty one). This also leaves the topics clean.
        send_off()
        emptied = assignments.wait_for(
            lambda k, v: (
                k == crew_id and v is not None and v["stops"] == [] and dispatcher.made(v, 2)
            ),
            30,
            "an empty plan once the crew is off shift",
        )
        assert emptied["plan_id"] != again["plan_id"]
        assert dispatcher.stop() == 0
    finally:
        if not sent_off:
            send_off()
        if plan_mqtt is not None:
            plan_mqtt.clear()
            plan_mqtt.close()
