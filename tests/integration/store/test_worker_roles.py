"""A ``--role dedup`` worker and a ``--role store`` worker side by side on real Kafka and
PostgreSQL: the first turns reports into an incident, the second (its own consumer group)
writes the reports and the incident to the database, and leaves out incidents another
deployment's worker wrote to the shared topic."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

import geo
from core import topics
from core.kafka import skip_to_end
from core.schemas import dumps
from core.settings import GeoSettings, PostgresSettings
from store import schema
from tests.integration.api.helpers import incident
from tests.integration.ingest.helpers import free_port
from tests.integration.streams.test_worker import (
    APP_PREFIX,
    Worker,
    _delete_app_topics,
    produce_reports,
)
from tests.unit.streams.conftest import DATA, fault_sites, point_along

pytestmark = pytest.mark.timeout(240)


def _stored(pg: PostgresSettings, report_ids: list[str]) -> tuple[int, list[tuple]]:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        reports = conn.execute(
            "SELECT count(*) FROM reports WHERE report_id = ANY(%s::uuid[])", (report_ids,)
        ).fetchone()
        links = conn.execute(
            "SELECT DISTINCT ri.incident_id, i.reporters FROM report_incident ri"
            " JOIN incidents i USING (incident_id) WHERE ri.report_id = ANY(%s::uuid[])",
            (report_ids,),
        ).fetchall()
    return (reports[0] if reports else 0), links


async def _produce_incidents(settings, writers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for incident_id, app in writers:
            inc = incident(incident_id, [], [("open", datetime.now(UTC), None)])
            await producer.send_and_wait(
                topics.INCIDENTS,
                dumps(inc),
                key=incident_id.encode(),
                partition=0,
                headers=[(topics.APP_HEADER, app)],
            )
    finally:
        await producer.stop()


def _incident_ids(pg: PostgresSettings, ids: list[str]) -> set[str]:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT incident_id FROM incidents WHERE incident_id = ANY(%s)", (ids,)
        ).fetchall()
    return {r[0] for r in rows}


def test_a_dedup_worker_and_a_store_worker_split_the_work(settings, pg, uid, tmp_path):
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        schema.migrate(conn)
    graph = geo.load_city(
        GeoSettings(city="aguascalientes", osm_dir=DATA, cache_dir=settings.geo.cache_dir)
    )
    [(edge, along)] = fault_sites(graph, 1, min_gap_m=120.0)
    docs = []
    for i in range(3):
        lat, lon = point_along(graph, edge, along + 3 * i)
        docs.append(
            {
                "v": 1,
                "report_id": str(uuid.uuid4()),
                "category": "pothole",
                "lat": lat,
                "lon": lon,
                "reported_at": datetime.now(UTC).isoformat(),
                "client_id": f"itest-roles-{uid}-{i}",
            }
        )
    ids = [d["report_id"] for d in docs]
    app_id = APP_PREFIX + uid
    for group in (app_id, f"{app_id}-store"):
        asyncio.run(skip_to_end(settings.kafka.bootstrap, group))
    env = {
        **os.environ,
        "CITYFIX_GEO__CITY": "aguascalientes",
        "CITYFIX_STREAMS__APP_ID": app_id,
        "CITYFIX_STREAMS__PUBLISH_REQUEST_STATUS": "false",
        "CITYFIX_PG__DATABASE": pg.database,
        "CITYFIX_STREAMS__STORE_UPKEEP_INTERVAL_S": "1",
    }
    workers = [
        Worker(
            {
                **env,
                "CITYFIX_STREAMS__DATA_DIR": str(tmp_path / role),
                "CITYFIX_STREAMS__WEB_PORT": str(free_port()),
            },
            tmp_path / f"{role}.log",
            args=("--role", role),
        ).start()
        for role in ("dedup", "store")
    ]
    try:
        asyncio.run(produce_reports(settings, docs))
        # Two incidents on one partition: another deployment's, then one of this app's.
        theirs, ours = f"inc-theirs-{uid}", f"inc-ours-{uid}"
        writers = [(theirs, b"cityfix-streams-bench-x"), (ours, app_id.encode())]
        asyncio.run(_produce_incidents(settings, writers))
        deadline = time.monotonic() + 120
        reports, links = 0, []
        while time.monotonic() < deadline:
            reports, links = _stored(pg, ids)
            if reports == 3 and links and links[0][1] == 3:
                break
            assert all(w.alive() for w in workers), [w.log() for w in workers]
            time.sleep(1)
        assert reports == 3, [w.log() for w in workers]
        # one incident, holding all three reports
        assert len(links) == 1 and links[0][1] == 3, (links, [w.log() for w in workers])
        # Plain PostgreSQL here: the store worker refreshes the dashboard views itself.
        hourly = 0
        while time.monotonic() < deadline and hourly < 3:
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                hourly = conn.execute(
                    "SELECT coalesce(sum(reports), 0) FROM reports_hourly"
                ).fetchone()[0]
            time.sleep(1)
        assert hourly == 3, workers[1].log()
        # In partition order: once this app's incident is written, the other was seen.
        while time.monotonic() < deadline and not _incident_ids(pg, [theirs, ours]):
            time.sleep(1)
        assert _incident_ids(pg, [theirs, ours]) == {ours}, workers[1].log()
        dedup_log, store_log = (w.log() for w in workers)
        assert f"role dedup, app id {app_id}" in dedup_log
        assert f"role store, app id {app_id}-store" in store_log
    finally:
        for w in workers:
            w.stop()
        asyncio.run(_delete_app_topics(settings, app_id))
