"""Request statuses to the citizens' apps, over MQTT.

Each report's status is published retained, QoS 1, on
``cityfix/v1/requests/{report_id}/status`` with the service identity from settings, so
an app that connects later still finds the latest state. paho-mqtt runs its network loop
in its own thread; ``publish`` only queues, so the stream processors never wait on the
broker (QoS 1 messages queued while disconnected go out on reconnect).
"""

from __future__ import annotations

import logging
import threading
import uuid

import paho.mqtt.client as mqtt

from core import schemas, topics
from core.mqtt import service_client
from core.schemas import RequestStatus
from core.settings import MqttSettings

_log = logging.getLogger(__name__)


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
        assert self._client is not None
        info = self._client.publish(
            topics.request_status_topic(status.request_id),
            schemas.dumps(status),
            qos=1,
            retain=True,
        )
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            _log.warning(
                "mqtt publish failed rc=%s", info.rc, extra={"request_id": status.request_id}
            )
        self.published += 1

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
