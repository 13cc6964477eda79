"""Request statuses as a commit barrier: which statuses ``delivered`` waits for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest

from core.schemas import IncidentStatus, RequestStatus
from core.settings import MqttSettings
from streams import publisher
from streams.publisher import StatusPublisher


class Paho:
    """paho's ``publish`` as seen by the publisher: each call answers a message info.

    ``refuse`` makes the next calls answer the code paho gives when it cannot queue (all
    message ids in use); ``connected`` False answers MQTT_ERR_NO_CONN, with the message
    queued for the reconnect, as paho does.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, mqtt.MQTTMessageInfo]] = []
        self.refuse = False
        self.connected = True

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo:
        assert qos == 1 and retain
        info = mqtt.MQTTMessageInfo(len(self.sent) + 1)
        if self.refuse:
            info.rc = mqtt.MQTT_ERR_QUEUE_SIZE
        elif not self.connected:
            info.rc = mqtt.MQTT_ERR_NO_CONN
        self.sent.append((topic, payload, info))
        return info

    def ack(self, *which: int) -> None:
        """The broker's PUBACK for the ``which``-th messages sent (0-based)."""
        for i in which:
            self.sent[i][2]._set_as_published()


@pytest.fixture
def paho(monkeypatch) -> Paho:
    monkeypatch.setattr(publisher, "_POLL_S", 0.001)
    return Paho()


@pytest.fixture
def pub(paho: Paho) -> StatusPublisher:
    p = StatusPublisher(MqttSettings())
    p._client = paho  # type: ignore[assignment]
    return p


def status(request_id: str, state: IncidentStatus = IncidentStatus.OPEN) -> RequestStatus:
    return RequestStatus(
        request_id=request_id, status=state, incident_id="inc-1", at=datetime.now(UTC)
    )


def test_nothing_published_is_delivered_at_once(pub):
    assert asyncio.run(pub.delivered(0.0))


def test_delivered_waits_for_the_statuses_published_before_it_and_not_after(pub, paho):
    pub.publish(status("r1"))
    pub.publish(status("r2"))

    async def scenario() -> bool:
        waiting = asyncio.ensure_future(pub.delivered(5.0))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        pub.publish(status("r3"))  # after the call: not waited for
        paho.ack(1)  # out of order: the first is still missing
        await asyncio.sleep(0.01)
        assert not waiting.done()
        paho.ack(0)
        return await waiting

    assert asyncio.run(scenario())
    assert pub.unacknowledged == 1


def test_unacknowledged_statuses_hold_the_commit_until_the_broker_acks_them(pub, paho):
    pub.publish(status("r1"))
    assert not asyncio.run(pub.delivered(0.02))
    assert pub.unacknowledged == 1
    paho.ack(0)
    assert asyncio.run(pub.delivered(0.0))
    assert pub.unacknowledged == 0


def test_a_status_queued_while_disconnected_counts_once_the_reconnect_delivers_it(pub, paho):
    paho.connected = False
    pub.publish(status("r1"))
    assert not asyncio.run(pub.delivered(0.02))
    paho.ack(0)  # paho re-sent it after reconnecting and got the PUBACK
    assert asyncio.run(pub.delivered(0.0))


def test_a_status_paho_refused_is_queued_again_and_holds_the_commit_meanwhile(pub, paho):
    paho.refuse = True
    pub.publish(status("r1"))
    assert pub.unacknowledged == 1
    assert not asyncio.run(pub.delivered(0.02))  # still refused
    refusals = len(paho.sent)
    assert refusals > 2  # tried again while waiting
    paho.refuse = False
    assert not asyncio.run(pub.delivered(0.02))  # queued now, not acknowledged yet
    assert len(paho.sent) == refusals + 1
    assert {t for t, _, _ in paho.sent} == {"cityfix/v1/requests/r1/status"}
    paho.ack(refusals)
    assert asyncio.run(pub.delivered(0.0))
    assert pub.unacknowledged == 0


def test_a_refused_status_replaced_by_a_later_one_is_never_sent_again(pub, paho):
    paho.refuse = True
    pub.publish(status("r1", IncidentStatus.OPEN))
    paho.refuse = False
    pub.publish(status("r1", IncidentStatus.ASSIGNED))
    paho.ack(1)
    assert asyncio.run(pub.delivered(0.0))
    assert len(paho.sent) == 2  # the refused "open" would overwrite the retained "assigned"


def test_refused_statuses_are_forgotten_when_their_partitions_go(pub, paho):
    paho.refuse = True
    pub.publish(status("r1"))
    pub.forget_refused()  # revoked: the next owner reads the records again
    paho.refuse = False
    assert asyncio.run(pub.delivered(0.0))
    assert len(paho.sent) == 1
