"""A device that dies without a word: Mosquitto publishes its last will, and the bridge
forwards it as an offline status stamped when it arrived, not when the device connected."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cli.mosquitto import IdentityKind
from core import topics
from core.topics import sensor_topic
from tests import factories
from tests.integration.ingest.helpers import KafkaTap


def test_a_dead_devices_last_will_is_an_offline_status_of_when_it_arrived(
    settings, bridges, identity
):
    dev, password = identity(IdentityKind.SENSOR, "sensor")
    bridges.start()
    tap = KafkaTap(settings, (topics.RAW_TELEMETRY,))
    connected_at = datetime.now(UTC)
    will = orjson.dumps(factories.device_status(dev, online=False, at=connected_at.isoformat()))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{dev}-device")
    client.username_pw_set(dev, password)
    client.will_set(sensor_topic(dev, "status"), will, qos=1, retain=True)
    deadline = time.monotonic() + 10
    while True:  # the broker reloads its password file asynchronously
        try:
            client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=30)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    client.loop(timeout=1.0)  # the CONNACK
    time.sleep(1.5)  # the device lives a while
    sock = client.socket()
    assert sock is not None
    sock.close()  # dies: no DISCONNECT, so the broker publishes the will

    def mine(rec) -> bool:
        return rec.key.decode() == dev and dict(rec.headers)["kind"] == b"device_status"

    got = tap.collect(mine, lambda recs: bool(recs), timeout_s=30)
    assert got, "no offline status reached raw.telemetry"
    status = orjson.loads(got[0].value)
    assert status["online"] is False
    at = datetime.fromisoformat(status["at"])
    assert (at - connected_at).total_seconds() >= 1.5, (connected_at, at)
