"""PostgreSQL stops for 20 s in the middle of a Kafka stream: every event still lands.

The consumer loop is what a sink does: read a batch from a real Kafka topic, write it
with the store writer, and commit the offsets only after the write returned. PostgreSQL
is stopped and restarted with the project's service runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import store
from cli.services import Postgres
from core.schemas import Telemetry, dumps, parse
from core.settings import PostgresSettings, Settings
from store.writers import Writer

N = 3000
OUTAGE_S = 20.0
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

pytestmark = pytest.mark.slow


async def _produce(bootstrap: str, topic: str) -> None:
    """N telemetry events spread over ~25 s, so the stream runs through the outage."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        for chunk in range(0, N, 100):
            for i in range(chunk, chunk + 100):
                msg = Telemetry(device_id=f"dev-{i % 40}", observed_at=T0 + timedelta(seconds=i),
                                metrics={"seq": float(i)})
                await producer.send(topic, dumps(msg), key=msg.device_id.encode())
            await producer.flush()
            await asyncio.sleep(0.8)
    finally:
        await producer.stop()


async def test_every_event_is_written_after_a_20_s_database_outage(
    settings: Settings, pg: PostgresSettings, uid: str
) -> None:
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        store.migrate(c, mode="postgres")
    bootstrap = settings.kafka.bootstrap
    topic = f"test.store.outage.{uid}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1)])
    runner = Postgres(settings)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"test-store-{uid}",
        enable_auto_commit=False, auto_offset_reset="earliest",
    )
    writer = Writer(pg.dsn, name="outage-test", max_backoff_s=2.0)
    consumed = 0
    outage: dict[str, float] = {}
    under_way = asyncio.Event()  # set once the stream has started landing rows

    async def stop_and_restart() -> None:
        await under_way.wait()
        outage["consumed_at_stop"] = consumed
        outage["start"] = time.monotonic()
        await asyncio.to_thread(runner.down)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(runner.up)
        outage["end"] = time.monotonic()

    producing = asyncio.create_task(_produce(bootstrap, topic))
    breaking = asyncio.create_task(stop_and_restart())
    await consumer.start()
    try:
        deadline = time.monotonic() + 180
        while consumed < N and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=250)
            msgs = [parse(Telemetry, rec.value) for recs in batches.values() for rec in recs]
            if msgs:
                await writer.write(msgs)  # returns only once committed to PostgreSQL
                await consumer.commit()
                consumed += len(msgs)
                if consumed >= 300:
                    under_way.set()
        await producing
        await breaking
    finally:
        producing.cancel()
        breaking.cancel()
        with contextlib.suppress(BaseException):
            await consumer.stop()
        await writer.close()
        # Whatever happened above, leave PostgreSQL running for everyone else.
        if not runner.state().running:
            await asyncio.to_thread(runner.up)
        with contextlib.suppress(BaseException):
            await admin.delete_topics([topic])
        await admin.close()

    assert consumed == N
    assert outage["consumed_at_stop"] < N, "the outage did not happen mid-stream"
    assert outage["end"] - outage["start"] >= OUTAGE_S
    assert writer.stats.retries > 0, "the writer never saw the outage"
    with psycopg.connect(pg.dsn) as c:
        count, distinct, lo, hi = c.execute(
            "SELECT count(*), count(DISTINCT (metrics->>'seq')), "
            "min((metrics->>'seq')::float::int), max((metrics->>'seq')::float::int) "
            "FROM telemetry"
        ).fetchone()
    assert (count, distinct, lo, hi) == (N, N, 0, N - 1)
