"""1,000 citizen reports of 100 faults, over MQTT, through ``cityfix ingest`` and
``cityfix streams worker`` on real Kafka: exactly 100 incidents, even when the worker is
SIGKILLed half-way and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from paho.mqtt.enums import CallbackAPIVersion

import geo
from cli import mosquitto
from cli.mosquitto import IdentityKind
from core import topics
from core.errors import NotFound
from core.kafka import skip_to_end
from core.settings import GeoSettings, Settings
from tests.integration.ingest.helpers import Bridges, Publisher, free_port
from tests.integration.procs import CityfixProcess
from tests.unit.streams.conftest import DATA, fault_sites, point_along

# Each run is a Faust app of its own (consumer group, changelogs, internal topic), so a
# demo's worker on the same Kafka neither takes this test's partitions nor shares its
# state, and earlier runs' incidents at the same places cannot absorb this run's reports.
# Its topics are deleted afterwards.
APP_PREFIX = "cityfix-streams-itest-"
CATEGORIES = ("pothole", "streetlight_out", "graffiti", "illegal_dumping", "water_leak")
FAULTS, PER_FAULT = 100, 10

pytestmark = pytest.mark.timeout(300)


class Worker(CityfixProcess):
    """One ``cityfix streams worker`` subprocess."""

    def __init__(self, env: dict[str, str], log: Path, args: tuple[str, ...] = ()) -> None:
        super().__init__(["streams", "worker", *args], env, log)


async def produce_reports(settings: Settings, docs: list[dict]) -> None:
    """Put citizen reports straight on ``raw.reports``, keyed by client id (no MQTT)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for doc in docs:
            await producer.send(
                topics.RAW_REPORTS, json.dumps(doc).encode(), key=doc["client_id"].encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


async def _delete_app_topics(settings: Settings, app_id: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(f"{app_id}-")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


class IncidentTap:
    """Reads ``incidents`` from the offsets at creation; keeps the latest record per id."""

    def __init__(self, settings: Settings, wanted: set[str], app_id: str) -> None:
        self.settings, self.wanted, self.app_id = settings, wanted, app_id.encode()
        self.latest: dict[str, dict] = {}
        self.dump_to: Path | None = None
        self.tps = [TopicPartition(topics.INCIDENTS, p) for p in range(6)]
        self.pos = asyncio.run(self._ends())

    async def _consumer(self) -> AIOKafkaConsumer:
        c = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        await c.start()
        return c

    async def _ends(self) -> dict[TopicPartition, int]:
        c = await self._consumer()
        try:
            return dict(await c.end_offsets(self.tps))
        finally:
            await c.stop()

    def poll(self, seconds: float) -> None:
        asyncio.run(self._poll(seconds))

    async def _poll(self, seconds: float) -> None:
        c = await self._consumer()
        try:
            c.assign(self.tps)
            for tp, off in self.pos.items():
                c.seek(tp, off)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=200, max_records=5000)
                for tp, records in batch.items():
                    for r in records:
                        self.pos[tp] = r.offset + 1
                        # only this run's worker: other workers on this Kafka may see
                        # the same reports (through another bridge) and keep state of
                        # earlier runs at the same places
                        if dict(r.headers or ()).get(topics.APP_HEADER) != self.app_id:
                            continue
                        doc = json.loads(r.value)
                        if any(e["id"] in self.wanted for e in doc["evidence"]):
                            old = self.latest.get(doc["incident_id"])
                            if old is None or doc["version"] >= old["version"]:
                                self.latest[doc["incident_id"]] = doc
        finally:
            await c.stop()

    def standing(self) -> dict[str, dict]:
        """Incidents holding this test's evidence that are not duplicates of another."""
        return {k: v for k, v in self.latest.items() if v["status"] not in ("duplicate", "merged")}

    def wait(self, done, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll(1.0)
            if done(self):
                return
        if self.dump_to is not None:  # what the tap saw, for the post-mortem
            self.dump_to.write_text(json.dumps(self.latest))
        counts = Counter(len(v["evidence"]) for v in self.standing().values())
        raise AssertionError(
            f"not done within {timeout_s} s: {len(self.standing())} standing incidents "
            f"(by pieces of evidence: {dict(counts)}), {len(self.latest)} in all"
        )


@pytest.fixture
def apps(settings: Settings, uid: str) -> Iterator[list[tuple[str, str]]]:
    made = []
    for i in range(PER_FAULT):
        ident = f"itest-app{i}-{uid}"
        made.append((ident, mosquitto.add_identity(settings, IdentityKind.APP, ident)))
    yield made
    for ident, _ in made:
        with contextlib.suppress(NotFound, OSError):  # OSError: a concurrent edit of the file
            mosquitto.revoke_identity(settings, ident)


def _connect(settings: Settings, user: str, password: str, deadline_s: float = 10.0) -> Publisher:
    deadline = time.monotonic() + deadline_s
    while True:  # the broker reloads its password file asynchronously
        try:
            return Publisher(settings, user, password)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _retained_status(settings: Settings, report_id: str, timeout_s: float = 10.0) -> dict | None:
    got: list[bytes] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"itest-status-{uuid.uuid4().hex[:8]}")
    c.username_pw_set(
        settings.mqtt.service_username, settings.mqtt.service_password.get_secret_value()
    )
    c.on_message = lambda _c, _u, m: got.append(m.payload)
    c.connect(settings.mqtt.host, settings.mqtt.port)
    c.subscribe(topics.request_status_topic(report_id), qos=1)
    c.loop_start()
    deadline = time.monotonic() + timeout_s
    while not got and time.monotonic() < deadline:
        time.sleep(0.1)
    c.disconnect()
    c.loop_stop()
    return json.loads(got[-1]) if got else None


def _gauge(port: str, name: str) -> float | None:
    """A metric's value on a worker's /metrics, or None when it is not served."""
    served = httpx.get(f"http://127.0.0.1:{port}/metrics")
    for line in served.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_thousand_reports_of_hundred_faults_survive_a_sigkilled_worker(
    settings, uid, tmp_path, apps
):
    graph = geo.load_city(
        GeoSettings(city="aguascalientes", osm_dir=DATA, cache_dir=settings.geo.cache_dir)
    )
    rng = random.Random(7)
    sites = fault_sites(graph, FAULTS, min_gap_m=120.0)
    # reports[fault][k] = (app index, report doc)
    reports: list[list[dict]] = []
    for f, (edge, along) in enumerate(sites):
        category = CATEGORIES[f % len(CATEGORIES)]
        docs = []
        for _ in range(PER_FAULT):
            lat, lon = point_along(
                graph, edge, along + rng.uniform(-4, 4), side_m=rng.uniform(-2, 2)
            )
            docs.append(
                {
                    "v": 1,
                    "report_id": str(uuid.uuid4()),
                    "category": category,
                    "lat": lat,
                    "lon": lon,
                    "reported_at": datetime.now(UTC).isoformat(),
                    "description": f"fault {f}",
                }
            )
        reports.append(docs)
    fault_of = {d["report_id"]: f for f, docs in enumerate(reports) for d in docs}
    app_id = APP_PREFIX + uid

    asyncio.run(skip_to_end(settings.kafka.bootstrap, app_id))
    tap = IncidentTap(settings, set(fault_of), app_id)
    tap.dump_to = tmp_path / "incidents.json"
    env = {
        **os.environ,
        "CITYFIX_GEO__CITY": "aguascalientes",
        "CITYFIX_STREAMS__APP_ID": app_id,
        "CITYFIX_STREAMS__DATA_DIR": str(tmp_path / "streams-data"),
        "CITYFIX_STREAMS__WEB_PORT": str(free_port()),
        "CITYFIX_STREAMS__BROKER_SESSION_TIMEOUT_S": "10",
        "CITYFIX_STREAMS__BROKER_HEARTBEAT_INTERVAL_S": "1",
    }
    bridges = Bridges(settings, uid, tmp_path)
    worker = Worker(env, tmp_path / "worker.log").start()
    publishers = [_connect(settings, user, pw) for user, pw in apps]
    try:
        bridges.start()

        def publish(k_range: range) -> None:
            for k in k_range:
                user, _ = apps[k]
                for docs in reports:
                    publishers[k].publish(topics.report_topic(user), json.dumps(docs[k]).encode())
            for p in publishers:
                p.drain()

        # First half: reports 0-4 of every fault; wait until the worker is well into them.
        publish(range(PER_FAULT // 2))
        tap.wait(lambda t: len(t.standing()) >= 60, timeout_s=90)
        assert worker.alive(), worker.log()
        assert len(tap.standing()) >= 60, f"worker too slow: {len(tap.standing())}\n{worker.log()}"
        worker.kill()

        # Second half while the worker is down; then a new worker on the same disk.
        publish(range(PER_FAULT // 2, PER_FAULT))
        worker = Worker(env, tmp_path / "worker.log").start()

        def complete(t: IncidentTap) -> bool:
            s = t.standing()
            return len(s) >= FAULTS and all(len(v["evidence"]) == PER_FAULT for v in s.values())

        tap.wait(complete, timeout_s=120)
        # The worker serves its metrics on its web port.
        served = httpx.get(f"http://127.0.0.1:{env['CITYFIX_STREAMS__WEB_PORT']}/metrics")
        assert served.status_code == 200, served.text
        published = [
            float(line.split()[-1])
            for line in served.text.splitlines()
            if line.startswith("cityfix_streams_incidents_published_total ")
        ]
        assert published and published[0] > 0, served.text[:2000]

        # A worker on a fresh disk recovers every table from its changelog alone: one more
        # report of fault 0 joins fault 0's incident instead of opening a new one.
        worker.stop()
        fresh = {**env, "CITYFIX_STREAMS__DATA_DIR": str(tmp_path / "fresh-disk")}
        worker = Worker(fresh, tmp_path / "worker-fresh.log").start()
        extra = {**reports[0][0], "report_id": str(uuid.uuid4()), "description": "again"}
        reports[0].append(extra)
        fault_of[extra["report_id"]] = 0
        publishers[0].publish(topics.report_topic(apps[0][0]), json.dumps(extra).encode())
        publishers[0].drain()
        tap.wanted.add(extra["report_id"])
        tap.wait(
            lambda t: any(
                extra["report_id"] in {e["id"] for e in v["evidence"]}
                for v in t.standing().values()
            ),
            timeout_s=120,
        )
        # ... and finds every open incident it recovered for its aging timer (without the
        # scan after recovery it knows only the one it wrote since it started; reports a
        # process of another test left on this Kafka may add a few of their own).
        port = fresh["CITYFIX_STREAMS__WEB_PORT"]
        deadline = time.monotonic() + 60
        while (held := _gauge(port, "cityfix_streams_open_incidents") or 0) < FAULTS:
            assert time.monotonic() < deadline, f"open incidents held: {held}\n{worker.log()}"
            time.sleep(0.5)
    finally:
        for p in publishers:
            p.close()
        bridges.close()
        worker.stop()
        asyncio.run(_delete_app_topics(settings, app_id))

    (tmp_path / "incidents.json").write_text(json.dumps(tap.latest))
    standing = tap.standing()
    assert len(standing) == FAULTS, f"{len(standing)} incidents\n{worker.log()}"
    holders: dict[str, list[str]] = defaultdict(list)
    for inc in standing.values():
        ids = {e["id"] for e in inc["evidence"]}
        assert len(ids) == len(inc["evidence"]), "evidence doubled"
        assert {fault_of[i] for i in ids} == {fault_of[next(iter(ids))]}, "two faults fused"
        assert len(ids) == len(reports[fault_of[next(iter(ids))]])
        assert inc["reporters"] == PER_FAULT
        # open, or already planned by a dispatcher that shares this Kafka
        assert inc["family"] and inc["status"] in ("open", "assigned", "en_route", "on_site")
        for i in ids:
            holders[i].append(inc["incident_id"])
    assert set(holders) == set(fault_of), "reports lost"
    assert all(len(v) == 1 for v in holders.values()), "a report in two incidents"

    # The app that sent a report sees which incident it joined (retained, so it is there later).
    some = reports[3][7]["report_id"]
    status = _retained_status(settings, some)
    assert status is not None and status["incident_id"] == holders[some][0]
