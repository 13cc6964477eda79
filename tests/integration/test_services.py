"""The three local servers answer real clients, and Mosquitto enforces identities."""

from __future__ import annotations

import asyncio
import threading
import time

import paho.mqtt.client as mqtt
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from paho.mqtt.enums import CallbackAPIVersion

from cli import mosquitto
from cli.mosquitto import IdentityKind
from core.settings import Settings
from core.topics import KAFKA_TOPICS


def _client(settings: Settings, user: str, password: str, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    connected = threading.Event()
    result: list[object] = []

    def on_connect(_c, _u, _f, rc, _p):
        result.append(rc)
        connected.set()

    c.on_connect = on_connect
    c.connect(settings.mqtt.host, settings.mqtt.port)
    c.loop_start()
    assert connected.wait(5), "no CONNACK"
    if result[0].is_failure:
        c.loop_stop()
        raise PermissionError(str(result[0]))
    return c


def _connect_when_reloaded(settings, user, password, name, timeout_s=5.0) -> mqtt.Client:
    # `devices add` reloads the broker with SIGHUP; give it a moment to re-read.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _client(settings, user, password, name)
        except PermissionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_device_publishes_and_service_receives_but_not_on_another_devices_topic(settings, uid):
    dev, other = f"sensor-{uid}", f"sensor-{uid}-b"
    pw = mosquitto.add_identity(settings, IdentityKind.SENSOR, dev)
    mosquitto.add_identity(settings, IdentityKind.SENSOR, other)
    got: list[tuple[str, bytes]] = []
    arrived = threading.Event()

    svc = _client(
        settings,
        settings.mqtt.service_username,
        settings.mqtt.service_password.get_secret_value(),
        f"svc-{uid}",
    )
    svc.on_message = lambda _c, _u, m: (got.append((m.topic, m.payload)), arrived.set())
    svc.subscribe("cityfix/v1/sensors/+/telemetry", qos=1)
    time.sleep(0.3)

    device = _connect_when_reloaded(settings, dev, pw, f"dev-{uid}")
    ok = device.publish(f"cityfix/v1/sensors/{dev}/telemetry", b"own", qos=1)
    ok.wait_for_publish(5)
    assert arrived.wait(5)
    assert got == [(f"cityfix/v1/sensors/{dev}/telemetry", b"own")]

    acks: list[int] = []
    device.on_publish = lambda _c, _u, _mid, rc, _p: acks.append(rc.value)
    spoof = device.publish(f"cityfix/v1/sensors/{other}/telemetry", b"spoof", qos=1)
    spoof.wait_for_publish(5)
    time.sleep(0.5)
    assert got == [(f"cityfix/v1/sensors/{dev}/telemetry", b"own")]
    assert acks and acks[-1] == 0x87  # MQTT 5 "Not authorized"

    for c in (device, svc):
        c.disconnect()
        c.loop_stop()
    mosquitto.revoke_identity(settings, dev)
    mosquitto.revoke_identity(settings, other)


def test_wrong_password_and_anonymous_are_refused(settings, uid):
    dev = f"sensor-{uid}"
    mosquitto.add_identity(settings, IdentityKind.SENSOR, dev, password="right-one")
    try:
        _connect_when_reloaded(settings, dev, "right-one", f"ok-{uid}").disconnect()
        for user, pw in ((dev, "wrong"), ("", "")):
            try:
                _client(settings, user, pw, f"bad-{uid}")
            except PermissionError:
                continue
            raise AssertionError(f"{user!r} was let in")
    finally:
        mosquitto.revoke_identity(settings, dev)


def test_kafka_round_trip_on_a_created_topic(settings, uid):
    async def run() -> list[bytes]:
        topic = f"test.roundtrip.{uid}"
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 2, 1)])
        listed = await admin.list_topics()
        await admin.close()
        assert {t.name for t in KAFKA_TOPICS} <= set(listed)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k")
        await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=settings.kafka.bootstrap, auto_offset_reset="earliest",
            group_id=f"test-{uid}",
        )
        await consumer.start()
        out: list[bytes] = []
        try:
            async with asyncio.timeout(30):
                while len(out) < 10:
                    batch = await consumer.getmany(timeout_ms=1000)
                    out += [r.value for recs in batch.values() for r in recs]
        finally:
            await consumer.stop()
        return out

    assert asyncio.run(run()) == [f"m{i}".encode() for i in range(10)]


def test_postgres_answers_a_query(settings):
    with psycopg.connect(settings.pg.dsn) as conn:
        assert conn.execute("SELECT current_user, 40 + 2").fetchone() == (settings.pg.user, 42)
