"""The MQTT -> Kafka bridge: the I/O shell around ``ingest.validate.route``.

Delivery, end to end at least once:

- MQTT 5, QoS 1, a persistent session (``clean_start=False`` on *every* connect, including
  the first of a restarted process, plus a session expiry interval) under a client id that
  is stable per instance (``{settings.ingest.client_id}-{instance}``). Messages the bridge
  had received but not acknowledged when it died stay in that session and the broker sends
  them again when the same instance reconnects; messages published while it is away are
  queued there too.
- A shared subscription (``$share/{share_group}/...``) splits the load among instances.
- Manual acknowledgement: a PUBACK goes to the broker only after Kafka acknowledged the
  record (idempotent producer, ``acks=all``). Bad input goes to ``ingest.dlq`` and is
  acknowledged once that record is written, so it is never lost either.
- The broker's in-flight window toward the bridge (MQTT 5 Receive Maximum) is the
  back-pressure: when Kafka slows down, the broker stops sending.

Threads: paho's network loop runs in its own thread (``loop_start``) and calls
``_on_message``, which validates and hands the record over to the asyncio loop, where
aiokafka batches the sends. Kafka's completion callbacks call ``client.ack`` from the
asyncio thread; with ``loop_start`` paho only appends the PUBACK to its outgoing deque and
wakes its own loop to write it, so no socket is touched from two threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.errors import InvalidMessage
from core.mqtt import service_client
from core.settings import Settings
from core.topics import INBOUND_SUBSCRIPTIONS, INGEST_DLQ
from ingest._mqtt import BufferedClient
from ingest.metrics import IngestMetrics
from ingest.validate import TOO_LARGE, Record, Rejected, reject, route

log = logging.getLogger(__name__)

_RETRY_DELAY_S = 1.0


@dataclass(frozen=True)
class BridgeOptions:
    """How one bridge process runs (the rest comes from ``Settings``)."""

    instance: int = 0
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    receive_maximum: int = 1000
    session_expiry_s: int = 24 * 3600
    linger_ms: int = 5
    drain_timeout_s: float = 30.0
    # QoS 0 messages waiting for Kafka beyond this many are dropped, as QoS 0 allows (at
    # most once): while Kafka is slow or down they would otherwise fill the memory. QoS 1
    # and 2 are held back by the broker instead (``receive_maximum`` unacknowledged).
    max_waiting_qos0: int = 20_000


class _Item:
    """One received message on its way to Kafka and back to the broker as a PUBACK."""

    __slots__ = (
        "generation",
        "mid",
        "mqtt_topic",
        "payload",
        "qos",
        "reason_class",
        "record",
        "sent_at",
        "seq",
    )

    def __init__(
        self,
        msg: mqtt.MQTTMessage,
        topic: str,
        generation: int,
        outcome: Record | Rejected,
        seq: int,
    ) -> None:
        self.seq = seq  # the order of receipt
        self.mid = msg.mid
        self.qos = msg.qos
        self.mqtt_topic = topic
        self.payload = msg.payload
        self.generation = generation
        if isinstance(outcome, Rejected):
            self.record = outcome.record()
            self.reason_class: str | None = outcome.reason_class
        else:
            self.record = outcome
            self.reason_class = None
        self.sent_at = 0.0


def subscriptions(share_group: str) -> list[str]:
    """The shared-subscription filters every bridge instance subscribes to."""
    return [f"$share/{share_group}/{t}" for t in INBOUND_SUBSCRIPTIONS]


def end_session(settings: Settings, instance: int = 0, timeout_s: float = 5.0) -> bool:
    """Retire a bridge instance: make the broker drop its persistent session.

    A stopped instance keeps its place in the shared subscription until its session
    expires, and the broker keeps handing it a share of the messages; a deployment that
    scales down for good (or a demo that ends) retires the instance with this. Messages
    still queued in that session are dropped with it, so stop the instance gracefully
    first. Returns whether the broker accepted the clean connection.
    """
    connected = threading.Event()
    client = service_client(settings.mqtt, f"{settings.ingest.client_id}-{instance}")
    client.on_connect = lambda *_args: connected.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect(settings.mqtt.host, settings.mqtt.port, clean_start=True, properties=props)
    except OSError:
        return False
    client.loop_start()
    try:
        return connected.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()


class Bridge:
    """One bridge process: MQTT (paho, own thread) in, Kafka (aiokafka, asyncio) out."""

    def __init__(
        self, settings: Settings, options: BridgeOptions, metrics: IngestMetrics | None = None
    ) -> None:
        self.settings = settings
        self.options = options
        self.metrics = metrics or IngestMetrics()
        self.client_id = f"{settings.ingest.client_id}-{options.instance}"
        self._clock = settings.make_clock()
        self._max_payload = settings.ingest.max_payload_bytes
        self._inbox: collections.deque[_Item] = collections.deque()
        self._wake_pending = False
        self._dropping = False
        self._stopping = False
        self._generation = 0
        self._outstanding = 0
        # Per source (record key): failed records waiting for their retry, the timer that
        # sends them again, and the records received after them, held back until then.
        self._retry: dict[bytes, list[_Item]] = {}
        self._retry_timers: dict[bytes, asyncio.TimerHandle] = {}
        self._held: dict[bytes, list[_Item]] = {}
        self._received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._producer: AIOKafkaProducer | None = None
        self._client = self._make_client()
        self._source = self.client_id.encode()

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``request_stop``; then stop taking messages, flush, ack, disconnect."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        if self.options.metrics_port:
            self.metrics.serve(self.options.metrics_port, self.options.metrics_addr)
        self._producer = await self._start_producer()
        if self._producer is None:
            return
        pump = asyncio.create_task(self._pump(), name="ingest-pump")
        self._connect()
        log.info(
            "ingest bridge running",
            extra={
                "client_id": self.client_id,
                "share_group": self.settings.ingest.share_group,
                "kafka": self.settings.kafka.bootstrap,
                "metrics_port": self.options.metrics_port,
            },
        )
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(pump)

    def request_stop(self) -> None:
        """Begin a graceful stop (call from the bridge's event loop, e.g. a signal handler)."""
        if self._stop is not None and not self._stop.is_set():
            log.info("stop requested; finishing in-flight messages")
            self._stopping = True
            self._stop.set()

    async def _start_producer(self) -> AIOKafkaProducer | None:
        assert self._stop is not None
        delay = 1.0
        while not self._stop.is_set():
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka.bootstrap,
                client_id=self.client_id,
                enable_idempotence=True,
                acks="all",
                linger_ms=self.options.linger_ms,
                max_batch_size=512 * 1024,
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                log.warning("kafka not reachable, retrying", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 30.0)
                continue
            return producer
        return None

    async def _shutdown(self, pump: asyncio.Task[None]) -> None:
        self._stopping = True
        assert self._producer is not None
        deadline = time.monotonic() + self.options.drain_timeout_s
        # Everything already received goes to Kafka and is acknowledged; anything the broker
        # sends from now on is left unacknowledged and comes back on the next connect.
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            if self._inbox or self._outstanding or self._retry:
                quiet = 0
                with contextlib.suppress(KafkaError):
                    await self._producer.flush()
            else:
                quiet += 1
            await asyncio.sleep(0.02)
        if self._outstanding or self._inbox or self._retry:
            log.warning(
                "drain timed out; the rest stays unacknowledged and will be redelivered",
                extra={
                    "unsent": len(self._inbox)
                    + self._outstanding
                    + sum(map(len, self._retry.values()))
                    + sum(map(len, self._held.values()))
                },
            )
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        # DISCONNECT is queued behind the PUBACKs, so they reach the broker first.
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        await self._producer.stop()
        log.info("ingest bridge stopped", extra={"client_id": self.client_id})

    # --- MQTT side (paho's thread) -------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = service_client(
            self.settings.mqtt, self.client_id, client_class=BufferedClient, manual_ack=True
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.options.session_expiry_s
        props.ReceiveMaximum = self.options.receive_maximum
        m = self.settings.mqtt
        # clean_start=False even on the first connect: paho's default (clean on the first
        # connect only) would wipe the session a killed predecessor left with unacked messages.
        self._client.connect_async(
            m.host, m.port, keepalive=m.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the bridge", extra={"reason": str(reason)})
            return
        self._generation += 1
        log.info(
            "connected to broker",
            extra={"client_id": self.client_id, "session_present": flags.session_present},
        )
        client.subscribe([(t, 1) for t in subscriptions(self.settings.ingest.share_group)])

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("subscriptions refused", extra={"reasons": failed})
            return
        self.metrics.connected.set(1)
        log.info("subscribed", extra={"filters": len(reasons)})

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.metrics.connected.set(0)
        if not self._stopping:
            log.warning("disconnected from broker; reconnecting", extra={"reason": str(reason)})

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._stopping:
            return  # unacknowledged: the broker redelivers it to this session
        if msg.qos == 0 and len(self._inbox) >= self.options.max_waiting_qos0:
            self.metrics.dropped.inc()
            if self._dropping is False:
                self._dropping = True
                log.warning(
                    "kafka is not keeping up; dropping QoS 0 messages",
                    extra={"waiting": len(self._inbox)},
                )
            return
        self._dropping = False
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")  # the broker checks UTF-8
        outcome = route(
            topic, msg.payload, max_payload_bytes=self._max_payload, received_at=self._clock.now()
        )
        self.metrics.received.labels(outcome.kind).inc()
        self.metrics.inflight.inc()
        self._received += 1
        self._inbox.append(_Item(msg, topic, self._generation, outcome, self._received))
        if not self._wake_pending:
            self._wake_pending = True
            assert self._loop is not None and self._wake is not None
            self._loop.call_soon_threadsafe(self._wake.set)

    # --- Kafka side (the asyncio loop) ------------------------------------------------------

    async def _pump(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._wake_pending = False
            # While a failed record waits for its retry, the records of its source wait
            # behind it: a source's records reach Kafka in the order they came (records
            # already handed to the producer can still land before it). Other sources go on.
            while self._inbox:
                item = self._inbox.popleft()
                key = item.record.key
                if key in self._retry:
                    self._held.setdefault(key, []).append(item)
                else:
                    await self._send(item)

    async def _send(self, item: _Item) -> None:
        assert self._producer is not None
        rec = item.record
        item.sent_at = time.perf_counter()
        try:
            fut = await self._producer.send(
                rec.topic,
                rec.value,
                key=rec.key,
                headers=[("kind", rec.kind.encode()), ("bridge", self._source)],
            )
        except (KafkaError, ValueError) as exc:
            self._failed(item, exc)
            return
        self._outstanding += 1
        fut.add_done_callback(partial(self._on_produced, item))

    def _on_produced(self, item: _Item, fut: asyncio.Future[Any]) -> None:
        self._outstanding -= 1
        exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if exc is not None:
            self._failed(item, exc)
            return
        self.metrics.produce_seconds.observe(time.perf_counter() - item.sent_at)
        if item.reason_class is not None:
            self.metrics.dead_lettered.labels(item.reason_class).inc()
        else:
            self.metrics.forwarded.labels(item.record.topic).inc()
        self._ack(item)

    def _ack(self, item: _Item) -> None:
        self.metrics.inflight.dec()
        if item.qos == 0 or item.generation != self._generation:
            # A message from an earlier connection: the session redelivers it with the same
            # packet id, so it is forwarded again (a duplicate, never a loss).
            return
        self._client.ack(item.mid, item.qos)

    def _failed(self, item: _Item, exc: BaseException) -> None:
        rec = item.record
        if isinstance(exc, MessageSizeTooLargeError) and rec.topic != INGEST_DLQ:
            # Valid but too big for Kafka (the payload limit is set above Kafka's): dead-letter.
            log.warning("record too large for kafka", extra={"topic": rec.topic})
            err = InvalidMessage(f"Kafka refused the record: {exc}", "payload")
            rejected = reject(
                TOO_LARGE,
                err,
                item.mqtt_topic,
                item.payload,
                item.record.kind,
                self._max_payload,
                self._clock.now(),
            )
            item.record = rejected.record()
            item.reason_class = rejected.reason_class
            self._requeue(item)
            return
        log.warning(
            "kafka produce failed; retrying",
            extra={"topic": rec.topic, "error": repr(exc), "retry_in_s": _RETRY_DELAY_S},
        )
        self.metrics.produce_retries.inc()
        self._retry.setdefault(rec.key, []).append(item)
        assert self._loop is not None
        # The source's latest failure restarts its delay: all its failed records go again
        # together, a full delay after the last one failed.
        if (timer := self._retry_timers.get(rec.key)) is not None:
            timer.cancel()
        self._retry_timers[rec.key] = self._loop.call_later(
            _RETRY_DELAY_S, self._retry_due, rec.key
        )

    def _retry_due(self, key: bytes) -> None:
        """Send a source's failed records again once its delay is over.

        They and the records held behind them go back to the front of the inbox, in the
        order they were received.
        """
        del self._retry_timers[key]
        items = sorted([*self._retry.pop(key), *self._held.pop(key, [])], key=lambda i: i.seq)
        self._inbox.extendleft(reversed(items))
        assert self._wake is not None
        self._wake.set()

    def _requeue(self, item: _Item) -> None:
        self._inbox.appendleft(item)
        assert self._wake is not None
        self._wake.set()


def run_bridge(settings: Settings, options: BridgeOptions) -> None:
    """Run one bridge until SIGTERM or SIGINT, then stop gracefully."""

    async def main() -> None:
        bridge = Bridge(settings, options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, bridge.request_stop)
        await bridge.run()

    asyncio.run(main())
