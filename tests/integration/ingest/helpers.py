"""Real clients for the bridge's integration tests: bridge processes, publishers, Kafka taps."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from core.topics import KAFKA_TOPICS
from tests.integration.procs import CityfixProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- bridge processes ----------------------------------------------------------------------


class BridgeProcess(CityfixProcess):
    """One ``cityfix ingest`` subprocess with its own metrics port and log file."""

    def __init__(self, instance: int, metrics_port: int, env: dict[str, str], log: Path) -> None:
        args = ["ingest", "--instance", str(instance), "--metrics-port", str(metrics_port)]
        super().__init__([*args, "--session-expiry-s", "600"], env, log)
        self.instance, self.metrics_port = instance, metrics_port

    def metrics(self) -> dict[str, float]:
        """Every sample of ``/metrics`` as ``name{labels}`` -> value ({} when not answering)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return {}
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def total(self, prefix: str) -> float:
        """Sum of the samples whose name starts with ``prefix``."""
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until the bridge is connected with its subscriptions granted."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited: {self.log()}")
            if self.metrics().get("cityfix_ingest_connected") == 1.0:
                return
            time.sleep(0.1)
        raise AssertionError(f"bridge not ready: {self.log()}")


@dataclass
class Bridges:
    """Start bridge processes isolated from any other bridge (own client ids, share group)."""

    settings: Settings
    uid: str
    tmp_path: Path
    started: list[BridgeProcess] = field(default_factory=list)

    @property
    def client_prefix(self) -> str:
        return f"test-ingest-{self.uid}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CITYFIX_INGEST__CLIENT_ID": self.client_prefix,
            "CITYFIX_INGEST__SHARE_GROUP": f"test-{self.uid}",
        }

    def start(self, instance: int = 0, wait: bool = True) -> BridgeProcess:
        port = free_port()
        bp = BridgeProcess(instance, port, self.env(), self.tmp_path / f"bridge-{instance}.log")
        self.started.append(bp.start())
        if wait:
            bp.wait_ready()
        return bp

    def close(self) -> None:
        for bp in self.started:
            bp.stop()
        # The sessions live on in the broker (that is the point); end them so the test's
        # share group stops collecting messages.
        for instance in {bp.instance for bp in self.started}:
            end_session(self.settings, f"{self.client_prefix}-{instance}")


def end_session(settings: Settings, client_id: str) -> None:
    """Connect with a clean start and no session expiry, so the broker drops the session."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(
        settings.mqtt.service_username, settings.mqtt.service_password.get_secret_value()
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    c.connect(settings.mqtt.host, settings.mqtt.port, clean_start=True, properties=props)
    c.loop_start()
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


# --- MQTT publishers -----------------------------------------------------------------------


class Refused(Exception):
    """The broker refused the connection."""

    def __init__(self, reason: mqtt.ReasonCode) -> None:
        super().__init__(str(reason))
        self.reason = reason


class Publisher:
    """A device's MQTT 5 connection publishing at QoS 1 with back-pressure.

    paho numbers messages with 16-bit ids; with more than 65,535 unacknowledged messages
    they wrap and some are silently lost, so at most ``window`` messages are in flight and
    ``publish`` blocks until the broker acknowledges older ones.
    """

    def __init__(self, settings: Settings, user: str, password: str, window: int = 500) -> None:
        self.window = threading.BoundedSemaphore(window)
        self.acked = 0
        self.refused: dict[int, mqtt.ReasonCode] = {}
        self._lock = threading.Lock()
        self._connack: list[mqtt.ReasonCode] = []
        self._connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{user}-pub-{os.getpid()}-{time.monotonic_ns() % 10**9}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(window)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.client.loop_stop()
            raise AssertionError("no CONNACK")
        if self._connack[0].is_failure:
            self.client.loop_stop()
            raise Refused(self._connack[0])

    def _on_connect(self, _c, _u, _f, reason, _p) -> None:
        self._connack.append(reason)
        self._connected.set()

    def _on_publish(self, _c, _u, mid, reason, _p) -> None:
        with self._lock:
            self.acked += 1
            if reason.is_failure:
                self.refused[mid] = reason
        self.window.release()

    def publish(self, topic: str, payload: bytes) -> int:
        self.window.acquire()
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.window.release()
            raise AssertionError(f"publish failed: {info.rc}")
        return info.mid

    def drain(self, timeout_s: float = 60.0) -> None:
        """Until every published message is acknowledged by the broker."""
        deadline = time.monotonic() + timeout_s
        for _ in range(self.window._initial_value):
            if not self.window.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise AssertionError("broker did not acknowledge every message")
        for _ in range(self.window._initial_value):
            self.window.release()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_outcome(
    settings: Settings, user: str, password: str, want_refused: bool, timeout_s: float = 5.0
) -> mqtt.ReasonCode | None:
    """Connect until the outcome is the wanted one (the broker reloads asynchronously).

    Returns the CONNACK reason when refused, None when accepted.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            Publisher(settings, user, password).close()
            outcome = None
        except Refused as exc:
            outcome = exc.reason
        if (outcome is not None) == want_refused or time.monotonic() > deadline:
            return outcome
        time.sleep(0.2)


# --- Kafka ------------------------------------------------------------------------------


class KafkaTap:
    """Reads topics from the end offsets recorded at creation (before anything is published)."""

    def __init__(self, settings: Settings, topics: Iterable[str]) -> None:
        self.bootstrap = settings.kafka.bootstrap
        self.topics = list(topics)
        self.start = asyncio.run(self._end_offsets())

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    async def _end_offsets(self) -> dict[TopicPartition, int]:
        c = self._consumer()
        await c.start()
        try:
            parts = {t.name: t.partitions for t in KAFKA_TOPICS}
            tps = [TopicPartition(t, p) for t in self.topics for p in range(parts[t])]
            return dict(await c.end_offsets(tps))
        finally:
            await c.stop()

    def collect(
        self,
        keep: Callable[[ConsumerRecord], bool],
        done: Callable[[list[ConsumerRecord]], bool],
        timeout_s: float = 120.0,
    ) -> list[ConsumerRecord]:
        """Records since the start that ``keep`` accepts, until ``done`` or the timeout."""
        return asyncio.run(self._collect(keep, done, timeout_s))

    async def _collect(self, keep, done, timeout_s) -> list[ConsumerRecord]:
        c = self._consumer()
        await c.start()
        got: list[ConsumerRecord] = []
        try:
            c.assign(list(self.start))
            for tp, off in self.start.items():
                c.seek(tp, off)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=300, max_records=5000)
                for records in batch.values():
                    got.extend(r for r in records if keep(r))
                if done(got):
                    break
        finally:
            await c.stop()
        return got
