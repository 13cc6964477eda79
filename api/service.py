"""The web service's I/O shell: database pool, MQTT publisher, Kafka producer, readiness.

One ``ApiService`` per app, started by the app's lifespan and stopped with it. Every
connection is opened without blocking start-up: a server that is down makes the calls
that need it fail with ``ServiceUnavailable`` (503) and ``/readyz`` say which one, and
the service recovers by itself when the server comes back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

import paho.mqtt.client as mqtt
import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.concurrency import run_in_threadpool

from api.cache import AnswerCache
from api.live import LiveHub
from api.metrics import Metrics
from api.ratelimit import RateLimiter
from core import topics
from core.clock import Clock
from core.errors import ServiceUnavailable
from core.mqtt import service_client
from core.schemas import CitizenReport, Command, dumps
from core.settings import Settings
from geo import RoadGraph, load_city
from geo.geocode import Geocoder, load_geocoder
from store import api_queries

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a request waits for the address index before a 503 (a first build of a big
#: city's index takes a few seconds; loading a cached one, well under a second).
GEOCODER_WAIT_S = 30.0


class NotSent(ServiceUnavailable):
    """A message that was never handed to the broker."""


class MqttPublisher:
    """A paho-mqtt client on its own network thread, publishing with QoS 1."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: mqtt.Client | None = None

    def _make_client(self) -> mqtt.Client:
        cid = f"cityfix-api-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        client = service_client(self.settings.mqtt, cid, protocol=mqtt.MQTTv311, clean_session=True)
        client.max_inflight_messages_set(self.settings.mqtt.max_inflight)
        client.reconnect_delay_set(1, 10)
        return client

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after a loss."""
        self.client = self._make_client()
        self.client.connect_async(
            self.settings.mqtt.host, self.settings.mqtt.port, self.settings.mqtt.keepalive_s
        )
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def connected(self) -> bool:
        """Whether the broker session is up."""
        return self.client is not None and self.client.is_connected()

    async def publish(self, topic: str, payload: bytes, timeout_s: float) -> None:
        """Publish with QoS 1 and wait for the broker's PUBACK, or raise ServiceUnavailable.

        ``NotSent`` when the message never left; after it left, a missing PUBACK raises
        plain ``ServiceUnavailable``: the client keeps the message and sends it again once
        it reconnects, so it may still arrive.
        """
        client = self.client
        deadline = asyncio.get_running_loop().time() + timeout_s
        while client is None or not client.is_connected():  # (re)connecting: wait a little
            if asyncio.get_running_loop().time() > deadline:
                raise NotSent("mqtt: not connected to the broker")
            await asyncio.sleep(0.05)
            client = self.client
        info = client.publish(topic, payload, qos=1)
        try:
            await run_in_threadpool(info.wait_for_publish, timeout_s)
        except ValueError as exc:  # the client's queue is full: it dropped the message
            raise NotSent(f"mqtt: publish failed: {exc}") from exc
        except RuntimeError as exc:  # queued, then refused by the connection: retried later
            raise ServiceUnavailable(f"mqtt: publish failed: {exc}") from exc
        if not info.is_published():
            raise ServiceUnavailable(f"mqtt: no PUBACK within {timeout_s:g} s")


class LazyLoad(Generic[T]):
    """A value made once, in a thread of its own started by the first caller.

    Async callers wait on the event loop (as ``api.map._LazyTiler.ready`` does), never in
    a worker thread: a request waiting in a thread would hold one of the threads every
    database call also needs. A failed load is reported to callers as a 503; the first
    caller ``retry_s`` after the failure starts loading again (a cache rebuilt, an
    extract restored), so one failure does not last until a restart.
    """

    def __init__(self, make: Callable[[], T], what: str, *, retry_s: float = 30.0) -> None:
        self._make = make
        self._what = what
        self._retry_s = retry_s
        self._value: T | None = None
        self._error: BaseException | None = None
        self._failed_at = 0.0
        self._done = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start loading (once; again ``retry_s`` after a failure)."""
        with self._lock:
            if self._started:
                failed = self._done.is_set() and self._value is None
                if not failed or time.monotonic() - self._failed_at < self._retry_s:
                    return
                self._done.clear()  # callers wait for this new try, as for the first
            self._started = True
        threading.Thread(target=self._run, name=f"load-{self._what}", daemon=True).start()

    def _run(self) -> None:
        try:
            value = self._make()
        except BaseException as exc:  # surfaced to every caller
            log.exception("%s unavailable", self._what)
            with self._lock:
                self._error, self._failed_at = exc, time.monotonic()
        else:
            with self._lock:
                self._value, self._error = value, None
        finally:
            self._done.set()

    async def ready(self, limit_s: float) -> T:
        """The value; ``ServiceUnavailable`` if it failed or is not ready within ``limit_s``."""
        self.start()
        deadline = time.monotonic() + limit_s
        while not self._done.is_set():
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"{self._what} still loading; retry shortly")
            await asyncio.sleep(0.05)
        value = self._value
        if value is None:
            raise ServiceUnavailable(f"{self._what} unavailable: {self._error}")
        return value


class ApiService:
    """Everything the routes need that talks to a server."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        live_topics: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        # The topics live push follows (``api.live.STREAMS``; tests point it elsewhere).
        self.live_topics = live_topics
        self.live_hub = LiveHub(settings, live_topics)
        self.clock = clock or settings.make_clock()
        self.pool: ConnectionPool | None = None
        self.mqtt = MqttPublisher(settings)
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self.key_limiter = RateLimiter(settings.api.post_rate_per_min, 60.0)
        self.address_limiter = RateLimiter(settings.api.post_rate_per_address_per_min, 60.0)
        self.login_limiter = RateLimiter(settings.api.login_rate_per_address_per_min, 60.0)
        self.started_at = self.clock.now()
        self.metrics = Metrics()
        self.cache = AnswerCache(settings.api.answer_cache_s)
        self._users: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._user_loads: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._graph: RoadGraph | None = None
        self._graph_lock = threading.Lock()
        self._graph_loading = asyncio.Lock()
        self._geocoder = LazyLoad(lambda: load_geocoder(settings.geo), "address index")

    # --- the city ----------------------------------------------------------------------

    async def geocoder(self) -> Geocoder:
        """The city's address index (``geo.geocode``), loaded on first use in its own thread."""
        return await self._geocoder.ready(GEOCODER_WAIT_S)

    def graph(self) -> RoadGraph:
        """The city's road graph, loaded on first use (the map's tiles and ``refusal``)."""
        with self._graph_lock:
            if self._graph is None:
                self._graph = load_city(self.settings.geo)
            return self._graph

    async def refusal(self, lat: float, lon: float) -> str | None:
        """Why the pipeline would refuse a report at this point, or ``None``.

        The same rules as the stream worker's: inside the city's service area, and at
        most ``streams.max_road_offset_m`` from a road.
        """
        if self._graph is None:
            # One request loads it in a worker thread; the others wait here, on the event
            # loop, rather than each holding a thread the database calls also need.
            async with self._graph_loading:
                await run_in_threadpool(self.graph)
        snapped = await run_in_threadpool(lambda: self.graph().snap([lat], [lon]))
        if not snapped.ok[0]:
            return snapped.reason[0] or "outside the service area"
        limit = self.settings.streams.max_road_offset_m
        offset = float(snapped.offset_m[0])
        if offset > limit:
            return f"{offset:.0f} m from the nearest road (at most {limit:g} m)"
        return None

    # --- life --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool, connect MQTT and try Kafka (failures are retried on use)."""
        self.pool = ConnectionPool(
            self.settings.pg.dsn,
            min_size=1,
            max_size=self.settings.api.pg_pool_max,
            open=False,
            timeout=self.settings.api.readiness_timeout_s * 2,
            kwargs={"autocommit": True, "connect_timeout": 3},
            name="cityfix-api",
        )
        self.pool.open(wait=False)
        self.mqtt.start()
        try:
            await self.producer()
        except ServiceUnavailable as exc:
            log.warning("kafka not ready at start: %s", exc)

    async def stop(self) -> None:
        """Close everything."""
        await self.live_hub.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self.mqtt.stop()
        pool, self.pool = self.pool, None
        if pool is not None:
            await run_in_threadpool(pool.close)

    # --- database ----------------------------------------------------------------------

    async def db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a store query ``fn(pool, ...)`` off the event loop; 503 when the DB is down."""
        pool = self.pool
        if pool is None:
            raise ServiceUnavailable("database: the service is not started")
        try:
            return await run_in_threadpool(fn, pool, *args, **kwargs)
        except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise ServiceUnavailable(f"database: {exc}") from exc

    # --- kafka -------------------------------------------------------------------------

    async def producer(self) -> AIOKafkaProducer:
        """The started idempotent producer (started on first use if start-up failed)."""
        if self._producer is not None:
            return self._producer
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.settings.kafka.bootstrap,
                    enable_idempotence=True,
                    acks="all",
                    client_id="cityfix-api",
                    request_timeout_ms=int(self.settings.api.publish_timeout_s * 1000),
                )
                try:
                    await asyncio.wait_for(producer.start(), self.settings.api.publish_timeout_s)
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise ServiceUnavailable(f"kafka: {exc!r}") from exc
                self._producer = producer
        return self._producer

    async def send_command(self, command: Command) -> None:
        """Send a dispatcher action to the ``commands`` topic and wait for the broker's ack."""
        producer = await self.producer()
        key = (command.incident_id or command.crew_id or str(command.command_id)).encode()
        try:
            await asyncio.wait_for(
                producer.send_and_wait(topics.COMMANDS, dumps(command), key=key),
                self.settings.api.publish_timeout_s,
            )
        except (KafkaError, TimeoutError) as exc:
            raise ServiceUnavailable(f"kafka: {exc!r}") from exc

    # --- mqtt --------------------------------------------------------------------------

    async def publish_report(self, client_id: str, report: CitizenReport) -> None:
        """Publish a citizen report where the apps publish theirs, and wait for PUBACK."""
        await self.mqtt.publish(
            topics.report_topic(client_id), dumps(report), self.settings.api.publish_timeout_s
        )

    # --- readiness ---------------------------------------------------------------------

    async def readiness(self) -> dict[str, str]:
        """``ok`` or the reason, for the database, Kafka and MQTT."""
        timeout = self.settings.api.readiness_timeout_s
        out: dict[str, str] = {}

        async def database() -> None:
            await self.db(api_queries.ping)

        async def kafka() -> None:
            producer = await self.producer()
            await producer.client.fetch_all_metadata()

        async def broker() -> None:
            if not self.mqtt.connected():
                raise ServiceUnavailable("not connected")

        for name, check in (("database", database), ("kafka", kafka), ("mqtt", broker)):
            try:
                await asyncio.wait_for(check(), timeout)
                out[name] = "ok"
            except TimeoutError:
                out[name] = f"no answer within {timeout:g} s"
            except (ServiceUnavailable, KafkaError, OSError) as exc:
                out[name] = str(exc) or type(exc).__name__
        return out

    async def user(
        self, username: str, load: Callable[[], Awaitable[dict[str, Any] | None]]
    ) -> dict[str, Any] | None:
        """A user row, remembered for ``settings.api.user_cache_s`` (one load at a time)."""
        now = time.monotonic()
        hit = self._users.get(username)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._user_loads.get(username)
        if pending is None:
            pending = asyncio.ensure_future(load())
            self._user_loads[username] = pending
            try:
                row = await asyncio.shield(pending)
            finally:
                self._user_loads.pop(username, None)
            if len(self._users) > 10_000:
                self._users.clear()
            self._users[username] = (time.monotonic() + self.settings.api.user_cache_s, row)
            return row
        return await asyncio.shield(pending)

    def forget_users(self) -> None:
        """Drop remembered users (after a change to users)."""
        self._users.clear()

    def now(self) -> datetime:
        """The shared clock's now."""
        return self.clock.now()
