"""One MQTT connection per simulated app, device or crew, with back-pressure.

Every simulated party logs in with its own credential (created by the CLI), so the
broker's ACL applies to simulators exactly as to real devices. ``publish`` blocks while
more than ``max_unacked`` QoS 1 messages wait for their PUBACK: a paho client with more
than 65,535 unacknowledged messages runs out of message ids and silently drops some.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.errors import ServiceUnavailable

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class Credentials:
    """An MQTT username (the identity's id) and its password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials({self.username!r}, ***)"


@dataclass(frozen=True)
class Broker:
    """Where the broker listens and how hard to push it."""

    host: str = "127.0.0.1"
    port: int = 1883
    keepalive_s: int = 30
    max_unacked: int = 1000


@dataclass(frozen=True)
class Will:
    """A last will: published by the broker when the connection dies."""

    topic: str
    payload: bytes
    retain: bool = True


class MqttAgent:
    """A paho client for one identity: connect, publish with back-pressure, subscribe."""

    def __init__(
        self,
        broker: Broker,
        creds: Credentials,
        *,
        client_id: str | None = None,
        will: Will | None = None,
        on_message: MessageHandler | None = None,
    ) -> None:
        self.broker = broker
        self.creds = creds
        self._on_message = on_message
        self._cond = threading.Condition()
        self._unacked = 0
        self._connected = threading.Event()
        self._subscriptions: list[str] = []
        self.published = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sim-{creds.username}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(creds.username, creds.password)
        self.client.max_inflight_messages_set(min(broker.max_unacked, 65_535))
        self.client.max_queued_messages_set(0)
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        self.client.on_connect = self._connected_cb
        self.client.on_disconnect = self._disconnected_cb
        self.client.on_publish = self._published_cb
        self.client.on_message = self._message_cb

    def __repr__(self) -> str:
        return f"MqttAgent({self.creds.username!r}, unacked={self._unacked})"

    # -- callbacks (paho's network thread) ------------------------------------------
    def _connected_cb(
        self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("mqtt login refused user=%s reason=%s", self.creds.username, rc)
            return
        for topic in self._subscriptions:  # clean sessions: subscribe again
            self.client.subscribe(topic, qos=1)
        self._connected.set()

    def _disconnected_cb(
        self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        self._connected.clear()
        if getattr(rc, "is_failure", False):
            log.info("mqtt disconnected user=%s reason=%s", self.creds.username, rc)

    def _published_cb(
        self, _c: mqtt.Client, _u: object, _mid: int, _rc: object, _p: object
    ) -> None:
        with self._cond:
            self._unacked = max(self._unacked - 1, 0)
            self._cond.notify_all()

    def _message_cb(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(msg.topic, bytes(msg.payload))
        except Exception:
            log.exception("message handler failed user=%s topic=%s", self.creds.username, msg.topic)

    # -- API ------------------------------------------------------------------------
    def start(self, timeout_s: float = 15.0) -> None:
        """Connect and start the network thread; wait until the broker accepted us."""
        try:
            self.client.connect(
                self.broker.host,
                self.broker.port,
                keepalive=self.broker.keepalive_s,
                clean_start=True,
            )
        except OSError as exc:
            raise ServiceUnavailable(
                f"MQTT broker {self.broker.host}:{self.broker.port}: {exc}"
            ) from exc
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            self.stop()
            raise ServiceUnavailable(f"MQTT login as {self.creds.username} not accepted")

    def subscribe(self, topic: str) -> None:
        """Subscribe (QoS 1), now and after every reconnect."""
        self._subscriptions.append(topic)
        self.client.subscribe(topic, qos=1)

    def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``."""
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(topic)
        self.client.unsubscribe(topic)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        stop: threading.Event | None = None,
    ) -> bool:
        """Publish at QoS 1, waiting while too many messages are unacknowledged.

        Returns ``False`` only when ``stop`` was set while waiting.
        """
        with self._cond:
            while self._unacked >= self.broker.max_unacked:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.2)
            self._unacked += 1
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            with self._cond:
                self._unacked -= 1
            log.warning("mqtt queue full user=%s topic=%s", self.creds.username, topic)
            return False
        self.published += 1
        return True

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait until every published message has been acknowledged."""
        with self._cond:
            return self._cond.wait_for(lambda: self._unacked == 0, timeout_s)

    @property
    def unacked(self) -> int:
        """Messages published and not yet acknowledged."""
        return self._unacked

    def stop(self, *, graceful: bool = True) -> None:
        """Disconnect (a graceful disconnect suppresses the last will) and stop the thread."""
        with contextlib.suppress(Exception):
            if graceful:
                self.client.disconnect()
        self.client.loop_stop()


def close_all(agents: list[MqttAgent], timeout_s: float = 2.0) -> None:
    """Give all agents ``timeout_s`` in total to flush, then disconnect them."""
    deadline = time.monotonic() + timeout_s
    for agent in agents:
        agent.drain(max(deadline - time.monotonic(), 0.0))
    for agent in agents:
        agent.stop()
