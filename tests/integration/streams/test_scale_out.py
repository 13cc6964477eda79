"""Two dedup workers of one app on real Kafka: the second one joining mid-stream takes over
partitions and the state that goes with them (from the changelogs), and every fault still
ends up as exactly one incident with all its reports."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

import geo
from core.kafka import skip_to_end
from core.settings import GeoSettings, Settings
from tests.integration.ingest.helpers import free_port
from tests.integration.streams.test_worker import (
    APP_PREFIX,
    IncidentTap,
    Worker,
    _delete_app_topics,
    produce_reports,
)
from tests.unit.streams.conftest import DATA, fault_sites, point_along

FAULTS, PER_FAULT = 60, 8

pytestmark = pytest.mark.timeout(300)


async def _partitions_by_member(settings: Settings, group: str, topic: str) -> list[set[int]]:
    """The partitions of ``topic`` each member of ``group`` holds now (one set per member)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    out = []
    for g in response.groups:
        if g[2] != "Stable":  # (error, group, state, protocol type, protocol, members)
            return []
        for member in g[5]:
            assignment = ConsumerProtocolMemberAssignment.decode(member[4])
            out.append({p for t, parts in assignment.assignment if t == topic for p in parts})
    return out


def complete_with(evidence: int):
    """Done when exactly ``FAULTS`` incidents stand, each with ``evidence`` reports."""

    def done(t: IncidentTap) -> bool:
        s = t.standing()
        return len(s) == FAULTS and all(len(v["evidence"]) == evidence for v in s.values())

    return done


def test_a_second_worker_takes_over_partitions_and_their_state(settings, uid, tmp_path):
    graph = geo.load_city(
        GeoSettings(city="aguascalientes", osm_dir=DATA, cache_dir=settings.geo.cache_dir)
    )
    rng = random.Random(11)
    sites = fault_sites(graph, FAULTS, min_gap_m=120.0)
    reports: list[list[dict]] = []
    for f, (edge, along) in enumerate(sites):
        docs = []
        for k in range(PER_FAULT):
            lat, lon = point_along(graph, edge, along + rng.uniform(-4, 4))
            docs.append(
                {
                    "v": 1,
                    "report_id": str(uuid.uuid4()),
                    "category": ("pothole", "graffiti", "water_leak")[f % 3],
                    "lat": lat,
                    "lon": lon,
                    "reported_at": datetime.now(UTC).isoformat(),
                    "client_id": f"itest-scale-{uid}-{k}",
                }
            )
        reports.append(docs)
    fault_of = {d["report_id"]: f for f, docs in enumerate(reports) for d in docs}
    app_id = APP_PREFIX + uid
    asyncio.run(skip_to_end(settings.kafka.bootstrap, app_id))
    tap = IncidentTap(settings, set(fault_of), app_id)
    tap.dump_to = tmp_path / "incidents.json"

    def worker(name: str) -> Worker:
        env = {
            **os.environ,
            "CITYFIX_GEO__CITY": "aguascalientes",
            "CITYFIX_STREAMS__APP_ID": app_id,
            "CITYFIX_STREAMS__DATA_DIR": str(tmp_path / name),
            "CITYFIX_STREAMS__WEB_PORT": str(free_port()),
            "CITYFIX_STREAMS__PUBLISH_REQUEST_STATUS": "false",
            "CITYFIX_STREAMS__BROKER_SESSION_TIMEOUT_S": "10",
            "CITYFIX_STREAMS__BROKER_HEARTBEAT_INTERVAL_S": "1",
        }
        return Worker(env, tmp_path / f"{name}.log", args=("--role", "dedup")).start()

    first = worker("first")
    second = None
    try:
        half = PER_FAULT // 2
        asyncio.run(produce_reports(settings, [d for docs in reports for d in docs[:half]]))
        half_done = complete_with(half)
        # Two reports of one fault can open two incidents across a cell border before the
        # merge that makes them one: wait for the settled state, not the first 60.
        tap.wait(half_done, timeout_s=120)
        assert half_done(tap), first.log()

        # A second worker joins: the group rebalances and it recovers the state of the
        # partitions it gets before the rest of the reports arrive.
        second = worker("second")
        cells = f"{app_id}-dedup-cells"
        deadline = time.monotonic() + 90
        split: list[set[int]] = []
        while time.monotonic() < deadline:
            assert second.alive(), second.log()
            split = asyncio.run(_partitions_by_member(settings, app_id, cells))
            if len(split) == 2 and all(split):
                break
            time.sleep(1)
        assert len(split) == 2 and all(split), f"cell partitions not split: {split}"
        asyncio.run(produce_reports(settings, [d for docs in reports for d in docs[half:]]))

        tap.wait(complete_with(PER_FAULT), timeout_s=150)
        assert first.alive() and second.alive(), (first.log(), second.log())
    finally:
        first.stop()
        if second is not None:
            second.stop()
        asyncio.run(_delete_app_topics(settings, app_id))

    standing = tap.standing()
    assert len(standing) == FAULTS, (len(standing), second.log() if second else "")
    holders: dict[str, list[str]] = defaultdict(list)
    for inc in standing.values():
        ids = {e["id"] for e in inc["evidence"]}
        assert len(ids) == len(inc["evidence"]) == PER_FAULT
        assert len({fault_of[i] for i in ids}) == 1, "two faults fused"
        for i in ids:
            holders[i].append(inc["incident_id"])
    assert set(holders) == set(fault_of) and all(len(v) == 1 for v in holders.values())
