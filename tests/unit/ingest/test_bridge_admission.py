"""What the bridge takes in while Kafka is not keeping up (no servers: messages are fed
to its MQTT callback as paho would)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import paho.mqtt.client as mqtt
import pytest
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from core.settings import Settings
from ingest import bridge as bridge_module
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


class Producer:
    """aiokafka's ``send`` as the bridge sees it, recording what Kafka took, in order.

    ``refuse_now``: that many next sends raise at once (nothing queued). ``hold``: the
    next sends stay in flight in ``held`` (seq -> future) for the test to settle.
    """

    def __init__(self) -> None:
        self.landed: list[int] = []  # telemetry seq
        self.refuse_now = 0
        self.hold = False
        self.held: dict[int, asyncio.Future[None]] = {}

    async def send(self, topic: str, value: bytes, key: bytes, headers: list) -> asyncio.Future:
        if self.refuse_now:
            self.refuse_now -= 1
            raise KafkaTimeoutError()
        seq = json.loads(value)["metrics"]["seq"]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.exception() or self.landed.append(seq))
        if self.hold:
            self.held[seq] = fut
        else:
            fut.set_result(None)
        return fut


def telemetry(seq: int, device: str = "bus-17") -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(seq, f"cityfix/v1/sensors/{device}/telemetry".encode())
    msg.payload = json.dumps(factories.telemetry(device, metrics={"seq": seq})).encode()
    msg.qos = 1
    return msg


@pytest.fixture
async def pumped(monkeypatch) -> AsyncIterator[tuple[Bridge, Producer]]:
    """A bridge whose pump runs against ``Producer``, retrying after 10 ms."""
    monkeypatch.setattr(bridge_module, "_RETRY_DELAY_S", 0.01)
    producer = Producer()
    bridge = Bridge(Settings(), BridgeOptions(), IngestMetrics(CollectorRegistry()))
    bridge._loop = asyncio.get_running_loop()
    bridge._wake = asyncio.Event()
    bridge._producer = producer  # type: ignore[assignment]
    bridge._client.ack = lambda mid, qos: None  # type: ignore[method-assign]
    pump = asyncio.create_task(bridge._pump())
    yield bridge, producer
    pump.cancel()


async def _until(done, timeout_s: float = 2.0) -> None:
    for _ in range(int(timeout_s / 0.005)):
        if done():
            return
        await asyncio.sleep(0.005)


async def test_a_record_kafka_refused_is_sent_again_before_the_ones_after_it(pumped) -> None:
    bridge, producer = pumped
    producer.refuse_now = 1
    for seq in (1, 2, 3):
        bridge._on_message(bridge._client, None, telemetry(seq))
    await _until(lambda: len(producer.landed) == 3)
    assert producer.landed == [1, 2, 3]


async def test_records_whose_delivery_failed_come_back_in_the_order_received(pumped) -> None:
    bridge, producer = pumped
    producer.hold = True
    for seq in (1, 2, 3):
        bridge._on_message(bridge._client, None, telemetry(seq))
    await _until(lambda: len(producer.held) == 3)
    producer.hold = False
    # The later ones fail first, then the first one; none is sent again before all are due.
    for seq in (3, 2, 1):
        producer.held[seq].set_exception(KafkaTimeoutError())
    bridge._on_message(bridge._client, None, telemetry(4))
    await _until(lambda: len(producer.landed) == 4)
    assert producer.landed == [1, 2, 3, 4]


async def test_other_sources_go_on_while_one_waits_for_its_retry(pumped) -> None:
    bridge, producer = pumped
    producer.refuse_now = 1
    bridge._on_message(bridge._client, None, telemetry(1))
    bridge._on_message(bridge._client, None, telemetry(10, "bus-18"))
    bridge._on_message(bridge._client, None, telemetry(2))
    bridge._on_message(bridge._client, None, telemetry(11, "bus-18"))
    await _until(lambda: len(producer.landed) == 4)
    assert producer.landed == [10, 11, 1, 2]
