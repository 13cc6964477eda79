"""Request statuses to the citizens' apps, over MQTT.

Each report's status is published retained, QoS 1, on
``cityfix/v1/requests/{report_id}/status`` with the service identity from settings, so
an app that connects later still finds the latest state. paho-mqtt runs its network loop
in its own thread; ``publish`` only queues, so the stream processors never wait on the
broker (QoS 1 messages queued while disconnected go out on reconnect).

A status is derived from records the worker has read; once their offsets are committed
they are never read again, so a status still queued in this process when it dies would
be lost for good. ``delivered`` is the worker's commit barrier (``streams.offsets``): it
says whether the broker has acknowledged every status queued before it was called, so
offsets are committed only behind delivered statuses, and after a crash the records are
read again and their statuses published again (retained: the repeat is the state the
worker holds then).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from core import schemas, topics
from core.mqtt import service_client
from core.schemas import RequestStatus
from core.settings import MqttSettings

_log = logging.getLogger(__name__)

# How often ``delivered`` looks at the oldest unacknowledged status while it waits.
_POLL_S = 0.01


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker acknowledged this message.

    ``is_published`` raises for a message queued while disconnected (its rc stays
    ``MQTT_ERR_NO_CONN``) although paho sends it on reconnect and marks it published when
    the PUBACK comes, so the mark itself is read.
    """
    with info._condition:
        return bool(info._published)


class StatusPublisher:
    """A non-blocking MQTT publisher of ``RequestStatus`` messages."""

    def __init__(self, settings: MqttSettings, client_id: str | None = None) -> None:
        self.settings = settings
        # Unique per worker: in containers every worker is pid 1, and two clients with
        # one id keep taking the connection from each other.
        self.client_id = client_id or f"cityfix-streams-{uuid.uuid4().hex[:12]}"
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()
        self.published = 0
        # Queued and not yet known to be acknowledged, oldest first; with the counts of
        # statuses ever queued and of those since known to be acknowledged.
        self._unacked: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
        self._queued = 0
        self._acked = 0
        # The latest status of each request paho would not queue (the next message id still
        # taken by an unacknowledged message, with tens of thousands queued): queued again
        # by ``delivered`` unless a later status replaced it.
        self._refused: dict[str, RequestStatus] = {}

    def start(self) -> None:
        """Connect in the background (idempotent)."""
        with self._lock:
            if self._client is not None:
                return
            client = service_client(
                self.settings, self.client_id, protocol=mqtt.MQTTv311, clean_session=True
            )
            client.max_inflight_messages_set(self.settings.max_inflight)
            client.reconnect_delay_set(1, 30)
            client.on_connect = self._on_connect
            client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
            client.loop_start()
            self._client = client

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        if getattr(rc, "is_failure", False):
            _log.warning("mqtt connect refused: %s", rc)
        else:
            _log.info("mqtt connected", extra={"client_id": self.client_id})

    def publish(self, status: RequestStatus) -> None:
        """Queue one status (retained, QoS 1)."""
        if self._client is None:
            self.start()
        self.published += 1
        self._refused.pop(status.request_id, None)  # replaced: never re-send the older one
        if self._queue(status) is None:
            _log.warning("mqtt would not queue a status", extra={"request_id": status.request_id})
            self._refused[status.request_id] = status

    def _queue(self, status: RequestStatus) -> mqtt.MQTTMessageInfo | None:
        """Hand one status to paho; None when paho refused to queue it."""
        assert self._client is not None
        info = self._client.publish(
            topics.request_status_topic(status.request_id),
            schemas.dumps(status),
            qos=1,
            retain=True,
        )
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._unacked.append(info)
            self._queued += 1
            self._prune()
            return info
        return None

    def _prune(self) -> None:
        """Forget the acknowledged statuses at the head of the queue."""
        while self._unacked and _acknowledged(self._unacked[0]):
            self._unacked.popleft()
            self._acked += 1

    @property
    def unacknowledged(self) -> int:
        """Statuses queued or refused whose delivery the broker has not acknowledged yet."""
        return len(self._unacked) + len(self._refused)

    async def delivered(self, timeout_s: float) -> bool:
        """Whether every status published before this call reached the broker.

        Waits up to ``timeout_s`` for the broker's acknowledgements, on the event loop (the
        processors go on meanwhile). Statuses paho refused to queue are queued again, and
        waited for too.
        """
        target = self._queued
        requeued: list[mqtt.MQTTMessageInfo] = []
        deadline = time.monotonic() + timeout_s
        while True:
            for request_id, status in list(self._refused.items()):
                info = self._queue(status)
                if info is None:
                    break
                del self._refused[request_id]
                requeued.append(info)
            self._prune()
            if (
                not self._refused
                and self._acked >= target
                and all(_acknowledged(i) for i in requeued)
            ):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_S)

    def forget_refused(self) -> None:
        """Never queue again the statuses paho refused (their records are read again)."""
        self._refused.clear()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
