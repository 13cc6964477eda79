"""Dispatcher API: roles, tokens, reads, actions through Kafka, privacy of citizen GETs."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from core import topics
from core.schemas import Command, CrewStatus, parse

from .helpers import incident, now, write

ROLES = ("viewer", "dispatcher", "admin")


@pytest.fixture(scope="module")
def world(api_settings):
    """Two open incidents, a closed one and one crew, written as the sink would."""
    t0 = now()
    a, b = f"inc-{uuid.uuid4().hex[:8]}", f"inc-{uuid.uuid4().hex[:8]}"
    closed = f"inc-{uuid.uuid4().hex[:8]}"
    crew = f"crew-{uuid.uuid4().hex[:6]}"
    write(
        api_settings,
        incident(a, [str(uuid.uuid4())], [("open", t0 - timedelta(minutes=5), None)]),
        incident(b, [str(uuid.uuid4())], [("open", t0, None)], category="water_leak", lat=41.16),
        incident(
            closed,
            [str(uuid.uuid4())],
            [("open", t0 - timedelta(hours=2), None), ("closed", t0 - timedelta(hours=1), "x")],
            lat=41.17,
        ),
        CrewStatus(crew_id=crew, status="available", at=t0, skills=["roads"]),
    )
    return {"a": a, "b": b, "closed": closed, "crew": crew}


def test_password_flow_issues_a_bearer_token(client, users):
    resp = client.post(
        "/api/token", data={"username": "dispatcher1", "password": "dispatcher-password"}
    )
    assert resp.status_code == 200, resp.text
    tok = resp.json()
    assert tok["token_type"] == "bearer" and tok["role"] == "dispatcher"
    me = client.get("/api/me", headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert me.json() == {"username": "dispatcher1", "role": "dispatcher"}
    bad = client.post("/api/token", data={"username": "dispatcher1", "password": "nope"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert client.post("/api/token", data={"username": "ghost", "password": "x"}).status_code == 401


def test_tokens_work_under_an_accelerated_city_clock(api_settings, users):
    # `cityfix demo` runs the city a day ahead and 60 times faster; a token stamped with
    # that clock was "not yet valid" to every request after the sign-in.
    from api.app import create_app
    from api.service import ApiService
    from core.clock import Clock
    from tests.integration.api.conftest import TestClient

    ahead = Clock(60.0, wall_epoch_s=time.time(), sim_epoch_s=time.time() + 86400)
    with TestClient(create_app(api_settings, ApiService(api_settings, clock=ahead))) as c:
        resp = c.post(
            "/api/token", data={"username": "dispatcher1", "password": "dispatcher-password"}
        )
        token = resp.json()["access_token"]
        me = c.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text


def test_the_clock_tells_the_map_the_city_time(api_settings, users):
    # The map counts SLAs and ETAs down with the city's clock: under `cityfix demo` a day
    # ahead and 60 times faster than the browser's.
    from api.app import create_app
    from api.service import ApiService
    from core.clock import Clock
    from tests.integration.api.conftest import TestClient

    wall = time.time()
    ahead = Clock(60.0, wall_epoch_s=wall, sim_epoch_s=wall + 86400)
    with TestClient(create_app(api_settings, ApiService(api_settings, clock=ahead))) as c:
        assert c.get("/api/clock").status_code == 401
        doc = c.get("/api/clock", headers=users.auth("viewer")).json()
        asked = time.time()
    assert (doc["factor"], doc["wall_epoch_s"], doc["sim_epoch_s"]) == (60.0, wall, wall + 86400)
    now = datetime.fromisoformat(doc["now"]).timestamp()
    assert wall + 86400 <= now <= wall + 86400 + (asked - wall) * 60 + 1
    # Without a shared anchor it is the wall clock.
    with TestClient(create_app(api_settings, ApiService(api_settings, clock=Clock()))) as c:
        doc = c.get("/api/clock", headers=users.auth("viewer")).json()
    assert doc["factor"] == 1.0
    assert abs(datetime.fromisoformat(doc["now"]).timestamp() - time.time()) < 5


def test_sign_ins_are_limited_per_address(api_settings, users):
    # Each attempt costs a slow password check: unlimited, anyone could stall the service.
    from api.app import create_app
    from api.service import ApiService
    from tests.integration.api.conftest import TestClient

    api = api_settings.api.model_copy(update={"login_rate_per_address_per_min": 2})
    settings = api_settings.model_copy(update={"api": api})
    with TestClient(create_app(settings, ApiService(settings))) as c:
        wrong = {"username": "dispatcher1", "password": "guess"}
        assert [c.post("/api/token", data=wrong).status_code for _ in range(2)] == [401, 401]
        right = {"username": "dispatcher1", "password": "dispatcher-password"}
        limited = c.post("/api/token", data=right)
    assert limited.status_code == 429, limited.text
    assert 0 < int(limited.headers["retry-after"]) <= 60


def test_reads_need_a_valid_token(client, users, world):
    assert client.get("/api/incidents").status_code == 401
    forged = {"Authorization": "Bearer " + users.tokens["admin"][:-2] + "xx"}
    assert client.get("/api/incidents", headers=forged).status_code == 401
    for role in ROLES:
        for path in (
            "/api/incidents",
            f"/api/incidents/{world['a']}",
            "/api/crews",
            "/api/assignments",
            "/api/kpis",
            "/api/clock",
            "/api/me",
        ):
            assert client.get(path, headers=users.auth(role)).status_code == 200, (role, path)


def test_incidents_geojson_filters_and_detail(client, users, world):
    fc = client.get("/api/incidents", headers=users.auth("viewer")).json()
    assert fc["type"] == "FeatureCollection"
    ids = {f["id"] for f in fc["features"]}
    assert {world["a"], world["b"]} <= ids
    feature = next(f for f in fc["features"] if f["id"] == world["a"])
    assert feature["geometry"] == {"type": "Point", "coordinates": [-8.61, 41.15]}
    only = client.get(
        "/api/incidents", params={"category": "water_leak"}, headers=users.auth("viewer")
    ).json()
    assert world["b"] in {f["id"] for f in only["features"]}
    assert world["a"] not in {f["id"] for f in only["features"]}
    none = client.get(
        "/api/incidents", params={"status": "closed"}, headers=users.auth("viewer")
    ).json()
    assert world["a"] not in {f["id"] for f in none["features"]}
    assert (
        client.get(
            "/api/incidents", params={"priority": "P9"}, headers=users.auth("viewer")
        ).status_code
        == 422
    )
    one = client.get(f"/api/incidents/{world['a']}", headers=users.auth("viewer")).json()
    assert one["score_breakdown"] == {"severity": 30.0, "reporters": 20.0}
    assert one["evidence"][0]["kind"] == "report" and one["history"][0]["status"] == "open"
    assert client.get("/api/incidents/nope", headers=users.auth("viewer")).status_code == 404
    crews = client.get("/api/crews", headers=users.auth("viewer")).json()
    assert world["crew"] in {c["crew_id"] for c in crews}


def _commands_end(bootstrap: str) -> dict[TopicPartition, int]:
    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await c.start()
        try:
            tps = [
                TopicPartition(topics.COMMANDS, p)
                for p in c.partitions_for_topic(topics.COMMANDS) or [0]
            ]
            return await c.end_offsets(tps)
        finally:
            await c.stop()

    return asyncio.run(run())


def _commands_after(bootstrap: str, start: dict[TopicPartition, int], n: int) -> list[Command]:
    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await c.start()
        try:
            c.assign(list(start))
            for tp, off in start.items():
                c.seek(tp, off)
            got: list[Command] = []
            deadline = asyncio.get_running_loop().time() + 15
            while len(got) < n and asyncio.get_running_loop().time() < deadline:
                for recs in (await c.getmany(timeout_ms=500)).values():
                    got += [parse(Command, r.value) for r in recs]
            return got
        finally:
            await c.stop()

    return asyncio.run(run())


def test_actions_go_to_kafka_as_commands_and_only_for_dispatchers(
    client, users, world, api_settings
):
    actions = [
        (f"/api/incidents/{world['a']}/priority", {"priority": "P1", "note": "school nearby"}),
        (f"/api/incidents/{world['a']}/pin", {"crew_id": world["crew"]}),
        (f"/api/incidents/{world['b']}/duplicate", {"duplicate_of": world["a"]}),
        (f"/api/incidents/{world['b']}/close", {"note": "done"}),
        (f"/api/crews/{world['crew']}/unavailable", {}),
        (f"/api/crews/{world['crew']}/available", {"note": "truck fixed"}),
    ]
    for path, body in actions:
        assert client.post(path, json=body).status_code == 401
        assert client.post(path, json=body, headers=users.auth("viewer")).status_code == 403
    start = _commands_end(api_settings.kafka.bootstrap)
    sent = []
    for role in ("dispatcher", "admin"):
        for path, body in actions:
            resp = client.post(path, json=body, headers=users.auth(role))
            assert resp.status_code == 202, resp.text
            sent.append(resp.json()["command_id"])
    got = _commands_after(api_settings.kafka.bootstrap, start, len(sent))
    mine = [c for c in got if str(c.command_id) in sent]
    assert [str(c.command_id) for c in mine] == sent
    first = mine[0]
    assert (first.kind, first.incident_id, first.priority, first.issued_by) == (
        "reprioritise",
        world["a"],
        "P1",
        "dispatcher1",
    )
    assert mine[2].duplicate_of == world["a"] and mine[4].crew_id == world["crew"]
    assert (mine[5].kind, mine[5].crew_id, mine[5].note) == (
        "crew_available",
        world["crew"],
        "truck fixed",
    )


def test_action_errors(client, users, world):
    auth = users.auth("dispatcher")
    assert client.post("/api/incidents/ghost/close", json={}, headers=auth).status_code == 404
    assert (
        client.post(
            f"/api/incidents/{world['a']}/pin", json={"crew_id": "ghost"}, headers=auth
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/api/incidents/{world['a']}/duplicate",
            json={"duplicate_of": world["a"]},
            headers=auth,
        ).status_code
        == 409
    )
    assert (
        client.post(
            f"/api/incidents/{world['a']}/priority", json={"priority": "P7"}, headers=auth
        ).status_code
        == 422
    )
    # A duplicate must point at an incident still worked on.
    done = client.post(
        f"/api/incidents/{world['a']}/duplicate",
        json={"duplicate_of": world["closed"]},
        headers=auth,
    )
    assert done.status_code == 409 and "not an active incident" in done.text


def test_user_management_is_for_admins_only(client, users):
    body = {"username": f"u{uuid.uuid4().hex[:6]}", "password": "long-enough-pw", "role": "viewer"}
    for role in ("viewer", "dispatcher"):
        assert client.get("/api/users", headers=users.auth(role)).status_code == 403
        assert client.post("/api/users", json=body, headers=users.auth(role)).status_code == 403
    admin = users.auth("admin")
    assert client.post("/api/users", json=body, headers=admin).status_code == 201
    assert client.post("/api/users", json=body, headers=admin).status_code == 409
    assert body["username"] in {
        u["username"] for u in client.get("/api/users", headers=admin).json()
    }
    tok = client.post(
        "/api/token", data={"username": body["username"], "password": body["password"]}
    ).json()["access_token"]
    mine = {"Authorization": f"Bearer {tok}"}
    assert client.get("/api/me", headers=mine).status_code == 200
    assert client.delete(f"/api/users/{body['username']}", headers=admin).status_code == 204
    # a removed user's token stops working at once
    assert client.get("/api/me", headers=mine).status_code == 401
    assert client.delete(f"/api/users/{body['username']}", headers=admin).status_code == 404
    # The name re-used later: the old token is not the new user's (token times are
    # whole seconds, hence the wait).
    time.sleep(2.1)
    assert client.post("/api/users", json=body, headers=admin).status_code == 201
    assert client.get("/api/me", headers=mine).status_code == 401


def test_citizen_gets_never_show_personal_data(client, api_key):
    secret = {
        "email": f"ana.{uuid.uuid4().hex[:6]}@example.org",
        "phone": "+351912345678",
        "first_name": "Anabela",
        "last_name": "Quintanilha",
    }
    resp = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": api_key,
            "service_code": "graffiti",
            "lat": "41.15",
            "long": "-8.61",
            "description": "tag on the wall",
            **secret,
        },
    )
    rid = resp.json()[0]["service_request_id"]
    bodies = []
    for fmt in ("json", "xml"):
        bodies.append(client.get(f"/open311/v2/requests/{rid}.{fmt}").content)
        bodies.append(client.get(f"/open311/v2/requests.{fmt}").content)
        bodies.append(
            client.get(f"/open311/v2/requests.{fmt}", params={"service_request_id": rid}).content
        )
        bodies.append(client.get(f"/open311/v2/tokens/{rid}.{fmt}").content)
        bodies.append(client.get(f"/open311/v2/servicerequestupdates.{fmt}").content)
    assert any(rid.encode() in b for b in bodies)
    for body in bodies:
        for value in secret.values():
            assert value.encode() not in body
    # ... yet it was kept (apart), for the city to answer the citizen
    assert resp.status_code == 200


def test_health_readiness_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok", "mqtt": "ok"}
    text = client.get("/metrics").text
    assert "cityfix_api_requests_total" in text and 'route="/readyz"' in text


def test_openapi_documents_every_route_and_its_errors(client):
    doc = client.get("/openapi.json").json()
    post = doc["paths"]["/open311/v2/requests.{fmt}"]["post"]["responses"]
    assert {"200", "400", "403", "404", "413", "429", "503"} <= set(post)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("responses"), (path, method)
            if path.startswith("/api/") and path != "/api/token":
                assert "401" in op["responses"], (path, method)
    assert orjson.loads(orjson.dumps(doc))  # serialisable
