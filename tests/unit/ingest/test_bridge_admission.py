"""What the bridge takes in while Kafka is not keeping up (no servers: messages are fed
to its MQTT callback as paho would)."""

from __future__ import annotations

import asyncio
import json

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry

from core.settings import Settings
from ingest.bridge import Bridge, BridgeOptions
from ingest.metrics import IngestMetrics
from tests import factories


def message(mid: int, qos: int) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid, b"cityfix/v1/sensors/bus-17/telemetry")
    msg.payload = json.dumps(factories.telemetry("bus-17")).encode()
    msg.qos = qos
    return msg


async def test_qos0_beyond_the_limit_is_dropped_and_counted_and_qos1_is_always_taken() -> None:
    metrics = IngestMetrics(CollectorRegistry())
    bridge = Bridge(Settings(), BridgeOptions(max_waiting_qos0=5), metrics)
    bridge._loop = asyncio.get_running_loop()
    bridge._wake = asyncio.Event()  # nothing drains the inbox: Kafka is "down"

    for mid in range(1, 9):
        bridge._on_message(bridge._client, None, message(mid, qos=0))
    bridge._on_message(bridge._client, None, message(9, qos=1))

    assert len(bridge._inbox) == 6  # five QoS 0, then the QoS 1 one
    assert metrics.dropped._value.get() == 3
    assert [item.qos for item in bridge._inbox][-1] == 1
