"""End to end: POST a request -> MQTT -> ``cityfix ingest`` -> Kafka -> ``cityfix streams
worker`` -> incident in the database -> GET shows the request's status from its incident.

The bridge and the worker are real subprocesses, isolated from any other running ones (own
MQTT share group and client ids, own Faust app id and consumer group), writing to this
module's database.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

from core.kafka import skip_to_end
from tests.integration.ingest.helpers import Bridges, free_port
from tests.integration.streams.test_worker import (
    APP_PREFIX,
    Worker,
    _delete_app_topics,
)

pytestmark = pytest.mark.timeout(400)


def test_posted_request_joins_an_incident_and_get_shows_it(client, api_key, api_settings, tmp_path):
    uid = uuid.uuid4().hex[:8]
    app_id = APP_PREFIX + "api-" + uid
    asyncio.run(skip_to_end(api_settings.kafka.bootstrap, app_id))
    env = {
        **os.environ,
        "CITYFIX_PG__DATABASE": api_settings.pg.database,
        "CITYFIX_GEO__CITY": api_settings.geo.city,
        "CITYFIX_STREAMS__APP_ID": app_id,
        "CITYFIX_STREAMS__DATA_DIR": str(tmp_path / "streams-data"),
        "CITYFIX_STREAMS__WEB_PORT": str(free_port()),
        "CITYFIX_STREAMS__BROKER_SESSION_TIMEOUT_S": "10",
        "CITYFIX_STREAMS__BROKER_HEARTBEAT_INTERVAL_S": "1",
    }
    bridges = Bridges(api_settings, uid, tmp_path)
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        bridges.start()
        rids = []
        for _ in range(2):  # two reports of one pothole: one incident, two reporters
            resp = client.post(
                "/open311/v2/requests.json",
                data={
                    "api_key": api_key,
                    "service_code": "pothole",
                    "lat": "41.1496",
                    "long": "-8.6109",
                    "description": "deep hole at the crossing",
                },
            )
            assert resp.status_code == 200, resp.text
            rids.append(resp.json()[0]["service_request_id"])
        deadline = time.monotonic() + 240
        reqs: list[dict] = []
        while time.monotonic() < deadline:
            reqs = [client.get(f"/open311/v2/requests/{r}.json").json()[0] for r in rids]
            if all(r.get("incident_id") for r in reqs):
                break
            assert worker.alive(), worker.log()
            time.sleep(1)
        assert all(r.get("incident_id") for r in reqs), f"no incident yet\n{worker.log()}"
        assert reqs[0]["incident_id"] == reqs[1]["incident_id"]
        assert reqs[0]["status"] == "open"
        assert reqs[0]["extended_status"] in ("OPEN", "ACTION_SCHEDULED", "IN_PROGRESS")
    finally:
        bridges.close()
        worker.stop()
        asyncio.run(_delete_app_topics(api_settings, app_id))
