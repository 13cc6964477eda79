"""Live push over WebSocket: snapshot, live changes, and a resume that loses nothing.

The feed follows topics of this test's own (same shape as ``incidents``/``assignments``),
so the shared topics other services consume are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import warnings
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from api.app import create_app
from api.service import ApiService
from core.schemas import dumps

from .helpers import incident, now

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect


@pytest.fixture(scope="module")
def live_topics(api_settings):
    uid = uuid.uuid4().hex[:8]
    names = {"incidents": f"test.api.incidents.{uid}", "assignments": f"test.api.assignments.{uid}"}

    async def create():
        admin = AIOKafkaAdminClient(bootstrap_servers=api_settings.kafka.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(names["incidents"], 3, 1), NewTopic(names["assignments"], 2, 1)]
            )
        finally:
            await admin.close()

    async def delete():
        admin = AIOKafkaAdminClient(bootstrap_servers=api_settings.kafka.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(list(names.values()))
        finally:
            await admin.close()

    asyncio.run(create())
    yield names
    asyncio.run(delete())


@pytest.fixture(scope="module")
def live_client(api_settings, live_topics):
    service = ApiService(api_settings, live_topics=live_topics)
    with TestClient(create_app(api_settings, service)) as c:
        yield c


async def _send(settings, topic: str, incidents, partition: int | None = None) -> None:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, enable_idempotence=True)
    await p.start()
    try:
        for inc in incidents:
            key = inc.incident_id.encode()
            await p.send_and_wait(topic, dumps(inc), key=key, partition=partition)
    finally:
        await p.stop()


def produce(settings, topic: str, *incidents) -> None:
    asyncio.run(_send(settings, topic, incidents))


def receive_until(ws, pred, limit=200):
    for _ in range(limit):
        msg = json.loads(ws.receive_text())
        if pred(msg):
            return msg
    raise AssertionError("message not received")


@pytest.mark.timeout(90)
def test_snapshot_then_live_then_resume_without_loss(live_client, live_topics, api_settings, users):
    t0 = now()
    ids = [f"inc-{uuid.uuid4().hex[:8]}" for _ in range(5)]

    def mk(i, s="open"):
        return incident(
            ids[i],
            [],
            [("open", t0, None)]
            if s == "open"
            else [("open", t0, None), (s, t0 + timedelta(minutes=1), None)],
        )

    produce(api_settings, live_topics["incidents"], mk(0), mk(1))
    token = users.tokens["viewer"]
    with live_client.websocket_connect(f"/api/live?token={token}") as ws:
        snap = json.loads(ws.receive_text())
        assert snap["type"] == "snapshot"
        assert {i["incident_id"] for i in snap["incidents"]} == {ids[0], ids[1]}
        assert sum(snap["cursor"]["incidents"].values()) == 2
        produce(api_settings, live_topics["incidents"], mk(0, "assigned"))
        change = receive_until(ws, lambda m: m["type"] == "incident")
        assert change["key"] == ids[0] and change["data"]["status"] == "assigned"
        cursor = change["cursor"]
    # while the client is away, three changes happen
    produce(api_settings, live_topics["incidents"], mk(2), mk(3), mk(1, "resolved"))
    with live_client.websocket_connect(
        f"/api/live?token={token}&cursor={json.dumps(cursor)}"
    ) as ws:
        resumed = json.loads(ws.receive_text())
        assert resumed == {"type": "resumed", "cursor": cursor}  # no snapshot when resuming
        got = [json.loads(ws.receive_text()) for _ in range(3)]
        assert all(m["type"] == "incident" for m in got)
        assert {(m["key"], m["data"]["status"]) for m in got} == {
            (ids[2], "open"),
            (ids[3], "open"),
            (ids[1], "resolved"),
        }
        assert sum(got[-1]["cursor"]["incidents"].values()) >= 6 - 1


@pytest.mark.timeout(60)
def test_token_as_first_message_and_refusals(live_client, users):
    with live_client.websocket_connect("/api/live") as ws:
        ws.send_text(json.dumps({"token": users.tokens["dispatcher"]}))
        assert json.loads(ws.receive_text())["type"] == "snapshot"
    with (
        live_client.websocket_connect("/api/live?token=forged") as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_text()
    assert closed.value.code == 4401
    with (
        live_client.websocket_connect("/api/live?cursor=notjson") as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_text()
    assert closed.value.code == 4400


@pytest.mark.timeout(60)
def test_an_open_feed_ends_when_its_token_expires(live_client, users, api_settings):
    from api.auth import Role, issue_token

    short = issue_token(
        "viewer1",
        Role.VIEWER,
        secret=api_settings.api.secret_key.get_secret_value(),
        ttl_s=2,
    )
    with live_client.websocket_connect(f"/api/live?token={short}") as ws:
        assert json.loads(ws.receive_text())["type"] == "snapshot"
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_text()
    assert closed.value.code == 4401


@pytest.mark.timeout(60)
def test_incidents_of_another_deployment_stay_off_the_feed(live_client, live_topics, users):
    ours, theirs = f"inc-{uuid.uuid4().hex[:8]}", f"inc-{uuid.uuid4().hex[:8]}"
    t0 = now()

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=live_client.app.state.settings.kafka.bootstrap)
        await p.start()
        try:
            for inc_id, app in ((theirs, b"cityfix-streams-bench-x"), (ours, b"cityfix-streams")):
                inc = incident(inc_id, [], [("open", t0, None)])
                await p.send_and_wait(
                    live_topics["incidents"],
                    dumps(inc),
                    key=inc_id.encode(),
                    headers=[("cityfix-app", app)],
                )
        finally:
            await p.stop()

    asyncio.run(run())
    with live_client.websocket_connect(f"/api/live?token={users.tokens['viewer']}") as ws:
        snap = json.loads(ws.receive_text())
    shown = {i["incident_id"] for i in snap["incidents"]}
    assert ours in shown and theirs not in shown


@pytest.mark.timeout(90)
def test_later_clients_get_the_hubs_snapshot_without_finished_incidents(
    live_client, live_topics, api_settings, users
):
    t0 = now()
    done, going = f"inc-{uuid.uuid4().hex[:8]}", f"inc-{uuid.uuid4().hex[:8]}"
    token = users.tokens["viewer"]
    produce(api_settings, live_topics["incidents"], incident(done, [], [("open", t0, None)]))
    with live_client.websocket_connect(f"/api/live?token={token}") as first:
        assert done in {i["incident_id"] for i in json.loads(first.receive_text())["incidents"]}
        closed = incident(
            done, [], [("open", t0, None), ("closed", t0 + timedelta(minutes=5), None)]
        )
        produce(
            api_settings,
            live_topics["incidents"],
            closed,
            incident(going, [], [("open", t0, None)]),
        )
        # The change to a finished incident is still pushed: a map removes it.
        change = receive_until(first, lambda m: m["type"] == "incident" and m["key"] == done)
        assert change["data"]["status"] == "closed"
    with live_client.websocket_connect(f"/api/live?token={token}") as later:
        snap = json.loads(later.receive_text())
    shown = {i["incident_id"] for i in snap["incidents"]}
    assert going in shown and done not in shown
    # The hub's cursor covers every record read, the finished one too.
    assert sum(snap["cursor"]["incidents"].values()) >= sum(change["cursor"]["incidents"].values())


def _hub_topics(settings, partitions: int) -> dict[str, str]:
    uid = uuid.uuid4().hex[:8]
    names = {
        "incidents": f"test.api.hub.incidents.{uid}",
        "assignments": f"test.api.hub.assignments.{uid}",
    }

    async def create():
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, partitions, 1) for n in names.values()])
            await _led(admin, list(names.values()), partitions)
        finally:
            await admin.close()

    asyncio.run(create())
    return names


async def _led(admin, names: list[str], partitions: int) -> None:
    """Wait until the broker names a leader for every partition of fresh topics.

    A consumer asking where a partition without a leader begins or ends waits for it;
    the hub's topics in a city are long made, a test's are a moment old.
    """
    for _ in range(200):
        described = await admin.describe_topics(names)
        parts = [p for t in described if t["error_code"] == 0 for p in t["partitions"]]
        if len(parts) == partitions * len(names) and all(p["leader"] >= 0 for p in parts):
            return
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _hub(settings, names: dict[str, str], **options):
    """A hub over ``names``; stopped, and the topics deleted, afterwards."""
    from api.live import LiveHub

    hub = LiveHub(settings, names, **options)
    try:
        yield hub
    finally:
        await hub.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(list(names.values()))
        finally:
            await admin.close()


@pytest.mark.timeout(90)
def test_a_client_too_far_behind_is_told_to_come_back_with_its_cursor(api_settings):
    from api.live import FeedLagging

    names = _hub_topics(api_settings, 1)
    t0 = now()

    async def run():
        async with _hub(api_settings, names, queue_max=3) as hub:
            _, queue = await hub.subscribe()
            lagging = [incident(f"inc-lag-{i}", [], [("open", t0, None)]) for i in range(10)]
            await _send(api_settings, names["incidents"], lagging)
            got = []
            while not got or not isinstance(got[-1], Exception):
                got.append(await asyncio.wait_for(queue.get(), 30))
            return got

    got = asyncio.run(run())
    assert len(got) == 4 and isinstance(got[-1], FeedLagging)
    assert [json.loads(m)["key"] for m in got[:3]] == ["inc-lag-0", "inc-lag-1", "inc-lag-2"]


@pytest.mark.timeout(90)
def test_the_hub_follows_partitions_added_after_it_started(api_settings):
    from aiokafka.admin import NewPartitions

    names = _hub_topics(api_settings, 1)
    t0 = now()

    async def run():
        async with asyncio.timeout(60), _hub(api_settings, names, refresh_s=0.5) as hub:
            _, queue = await hub.subscribe()
            admin = AIOKafkaAdminClient(bootstrap_servers=api_settings.kafka.bootstrap)
            await admin.start()
            try:
                await admin.create_partitions({names["incidents"]: NewPartitions(2)})
                await _led(admin, [names["incidents"]], 2)
            finally:
                await admin.close()
            new = incident("inc-new-partition", [], [("open", t0, None)])
            await _send(api_settings, names["incidents"], [new], partition=1)
            return json.loads(await asyncio.wait_for(queue.get(), 30))

    msg = asyncio.run(run())
    assert msg["key"] == "inc-new-partition" and msg["cursor"]["incidents"]["1"] == 1
