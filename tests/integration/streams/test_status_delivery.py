"""A request status the MQTT broker never acknowledged is not lost with its worker: the
worker keeps the offsets behind it uncommitted, and the worker after it, reading those
records again, publishes the status (real Kafka and Mosquitto)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient

import geo
from core import topics
from core.kafka import skip_to_end
from core.settings import GeoSettings, Settings
from tests import factories
from tests.integration.ingest.helpers import free_port
from tests.integration.streams.test_worker import (
    APP_PREFIX,
    IncidentTap,
    Worker,
    _delete_app_topics,
    _gauge,
    _retained_status,
    produce_reports,
)
from tests.unit.streams.conftest import DATA, fault_sites, point_along

FAULTS = 5

pytestmark = pytest.mark.timeout(300)


async def _committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (absent: none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in got.items() if tp.topic == topic}


def test_statuses_the_broker_never_acknowledged_are_published_by_the_next_worker(
    settings, uid, tmp_path
):
    graph = geo.load_city(
        GeoSettings(city="aguascalientes", osm_dir=DATA, cache_dir=settings.geo.cache_dir)
    )
    docs = [
        factories.report(lat=lat, lon=lon, client_id=f"itest-status-{uid}")
        for lat, lon in (
            point_along(graph, edge, along)
            for edge, along in fault_sites(graph, FAULTS, min_gap_m=120.0)
        )
    ]
    ids = {d["report_id"] for d in docs}
    app_id = APP_PREFIX + uid
    asyncio.run(skip_to_end(settings.kafka.bootstrap, app_id))
    before = asyncio.run(_committed(settings, app_id, topics.RAW_REPORTS))
    tap = IncidentTap(settings, ids, app_id)
    port = str(free_port())
    env = {
        **os.environ,
        "CITYFIX_GEO__CITY": "aguascalientes",
        "CITYFIX_STREAMS__APP_ID": app_id,
        "CITYFIX_STREAMS__DATA_DIR": str(tmp_path / "streams-data"),
        "CITYFIX_STREAMS__WEB_PORT": port,
        "CITYFIX_STREAMS__STATUS_ACK_WAIT_S": "0.5",
        "CITYFIX_STREAMS__BROKER_SESSION_TIMEOUT_S": "10",
        "CITYFIX_STREAMS__BROKER_HEARTBEAT_INTERVAL_S": "1",
    }
    # Nothing listens there: the worker queues its statuses and never gets them acknowledged.
    unreachable = {**env, "CITYFIX_MQTT__PORT": str(free_port())}
    # Role dedup: no store sinks, whose database writes hold offsets back on their own.
    role = ("--role", "dedup")
    worker = Worker(unreachable, tmp_path / "worker.log", args=role).start()
    try:
        asyncio.run(produce_reports(settings, docs))
        tap.wait(lambda t: len(t.standing()) >= FAULTS, timeout_s=90)
        deadline = time.monotonic() + 60
        while (_gauge(port, "cityfix_streams_commits_held_total") or 0) < 2:
            assert worker.alive(), worker.log()
            assert time.monotonic() < deadline, f"no commit held back\n{worker.log()}"
            time.sleep(0.5)
        after = asyncio.run(_committed(settings, app_id, topics.RAW_REPORTS))
        assert after == before, "offsets were committed past statuses nobody received"
        assert _retained_status(settings, docs[0]["report_id"], timeout_s=1.0) is None
        worker.kill()

        worker = Worker(env, tmp_path / "worker-2.log", args=role).start()
        incident_of = {
            e["id"]: inc["incident_id"] for inc in tap.standing().values() for e in inc["evidence"]
        }
        for d in docs:
            status = _retained_status(settings, d["report_id"], timeout_s=90)
            assert status is not None, f"no status for {d['report_id']}\n{worker.log()}"
            assert status["incident_id"] == incident_of[d["report_id"]]
            assert status["status"] == "open"
        # ... and once the broker has them, that worker commits past the records.
        deadline = time.monotonic() + 60
        while True:
            done = asyncio.run(_committed(settings, app_id, topics.RAW_REPORTS))
            if sum(done.values()) >= sum(before.values()) + len(docs):
                break
            assert time.monotonic() < deadline, f"offsets {done} not past {before}"
            time.sleep(0.5)
    finally:
        worker.stop()
        asyncio.run(_delete_app_topics(settings, app_id))
