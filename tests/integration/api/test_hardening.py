"""Rate limits, CORS, readiness that names what failed, and the report on MQTT."""

from __future__ import annotations

import json
import queue
import uuid
import warnings

import paho.mqtt.client as mqtt
import pytest

from api.app import create_app
from core.schemas import CitizenReport, parse

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _post(client, key, **extra):
    return client.post(
        "/open311/v2/requests.json",
        data={"api_key": key, "service_code": "pothole", "lat": "41.15", "long": "-8.61", **extra},
    )


def test_posts_are_rate_limited_per_key_and_per_address(api_settings, api_key, db):
    from api.auth import key_digest, new_api_key
    from store import queries

    other = new_api_key()
    queries.create_api_key(db, "other-app", key_digest(other))
    api = api_settings.api.model_copy(
        update={"post_rate_per_min": 2, "post_rate_per_address_per_min": 4}
    )
    s = api_settings.model_copy(update={"api": api})
    with TestClient(create_app(s), client=("198.51.100.1", 1)) as c:
        assert _post(c, api_key).status_code == 200
        assert _post(c, api_key).status_code == 200
        limited = _post(c, api_key)
        assert limited.status_code == 429 and "Retry-After" in limited.headers
        assert limited.json()[0]["code"] == 429 and "api_key" in limited.json()[0]["description"]
        # The header says what the body says.
        wait = limited.headers["Retry-After"]
        assert 1 <= int(wait) <= 60 and f"retry in {wait} s" in limited.json()[0]["description"]
        assert _post(c, other).status_code == 200  # another key, same address
        by_address = _post(c, other)
        assert by_address.status_code == 429 and "address" in by_address.json()[0]["description"]
        xml = c.post("/open311/v2/requests.xml", data={"api_key": other})
        assert xml.status_code == 429 and b"<errors><error><code>429</code>" in xml.content


def test_the_citizen_pages_shared_key_is_limited_per_address_only(api_settings):
    # Every citizen using the page posts with its one key: the per-key limit would let
    # one person lock everybody out; the per-address limit still holds each of them.
    api = api_settings.api.model_copy(
        update={"post_rate_per_min": 2, "post_rate_per_address_per_min": 3}
    )
    app = create_app(api_settings.model_copy(update={"api": api}))
    form = {"service_code": "pothole", "lat": "41.15", "long": "-8.61"}
    with TestClient(app, client=("198.51.100.7", 1)) as one:
        assert [one.post("/report/submit", data=form).status_code for _ in range(4)] == [
            200,
            200,
            200,
            429,
        ]
    with TestClient(app, client=("198.51.100.8", 1)) as other:
        assert other.post("/report/submit", data=form).status_code == 200


def test_cors_allows_only_configured_origins(api_settings):
    api = api_settings.api.model_copy(update={"cors_origins": ["https://map.example.org"]})
    with TestClient(create_app(api_settings.model_copy(update={"api": api}))) as c:
        ok = c.options(
            "/api/incidents",
            headers={"Origin": "https://map.example.org", "Access-Control-Request-Method": "GET"},
        )
        assert ok.headers.get("access-control-allow-origin") == "https://map.example.org"
        bad = c.options(
            "/api/incidents",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in bad.headers


def test_readyz_says_which_server_failed(api_settings):
    kafka = api_settings.kafka.model_copy(update={"port": 1})
    api = api_settings.api.model_copy(update={"readiness_timeout_s": 1.0, "publish_timeout_s": 1.0})
    s = api_settings.model_copy(update={"kafka": kafka, "api": api})
    with TestClient(create_app(s)) as c:
        resp = c.get("/readyz")
        assert resp.status_code == 503
        checks = resp.json()["checks"]
        assert checks["database"] == "ok" and checks["mqtt"] == "ok"
        assert checks["kafka"] != "ok"
        assert c.get("/healthz").status_code == 200


def test_a_request_that_cannot_reach_the_broker_is_503_and_not_kept(api_settings, api_key, db):
    mqtt_down = api_settings.mqtt.model_copy(update={"port": 1})
    api = api_settings.api.model_copy(update={"publish_timeout_s": 1.0})
    s = api_settings.model_copy(update={"mqtt": mqtt_down, "api": api})
    marker = f"never sent {uuid.uuid4()}"
    with TestClient(create_app(s)) as c:
        resp = _post(c, api_key, description=marker, email="someone@example.org")
    assert resp.status_code == 503 and "mqtt" in resp.json()[0]["description"]
    # The request was recorded before the publish and taken back after it failed.
    assert db.execute("SELECT count(*) FROM reports WHERE description = %s", (marker,)).fetchone()[
        0
    ] == 0


@pytest.mark.timeout(60)
def test_a_posted_request_is_on_mqtt_where_apps_publish(client, api_key, api_settings):
    got: queue.Queue = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    sub.username_pw_set(
        api_settings.mqtt.service_username, api_settings.mqtt.service_password.get_secret_value()
    )
    subscribed: queue.Queue = queue.Queue()
    sub.on_message = lambda c, u, m: got.put((m.topic, m.payload, m.qos))
    sub.on_subscribe = lambda *a: subscribed.put(True)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(
        "cityfix/v1/reports/open311-test-app", qos=1
    )
    sub.connect(api_settings.mqtt.host, api_settings.mqtt.port)
    sub.loop_start()
    try:
        subscribed.get(timeout=10)
        resp = _post(client, api_key, description="on the bus lane")
        rid = resp.json()[0]["service_request_id"]
        while True:
            topic, payload, qos = got.get(timeout=10)
            report = parse(CitizenReport, payload)
            if str(report.report_id) == rid:
                break
        assert topic == "cityfix/v1/reports/open311-test-app" and qos == 1
        assert report.category == "pothole" and report.description == "on the bus lane"
        assert "email" not in json.loads(payload)
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_a_value_the_database_refuses_is_a_client_error(client, users):
    # A NUL byte cannot go into a PostgreSQL text parameter.
    resp = client.get("/api/assignments", params={"crew_id": "a\x00b", "history": "true"},
                      headers=users.auth("dispatcher"))
    assert resp.status_code == 422 and "invalid value" in resp.json()["detail"]
    for params in ({"service_code": "pot\x00hole"}, {"service_request_id": "a\x00"}):
        resp = client.get("/open311/v2/requests.json", params=params)
        assert resp.status_code < 500, resp.text
