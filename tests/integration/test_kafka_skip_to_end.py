"""``core.kafka.skip_to_end``: a consumer group moved to the end of the topics (real Kafka)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core import topics
from core.kafka import skip_to_end
from core.settings import Settings


async def _produce(settings: Settings, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap)
    await producer.start()
    try:
        for i in range(n):
            await producer.send(topics.RAW_REPORTS, b"{}", key=f"backlog-{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _committed_and_ends(settings: Settings, group: str) -> tuple[dict, dict]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t.name, p) for t in topics.KAFKA_TOPICS for p in range(t.partitions)]
        committed = {tp: await consumer.committed(tp) for tp in tps}
        return committed, await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


def test_a_group_skips_what_is_already_on_the_topics() -> None:
    settings = Settings()
    group = f"cityfix-demo-itest-{uuid.uuid4().hex[:8]}"
    asyncio.run(_produce(settings, 50))

    skipped = asyncio.run(skip_to_end(settings.kafka.bootstrap, group))
    committed, ends = asyncio.run(_committed_and_ends(settings, group))
    assert skipped >= 50  # a new group would have started at the beginning of each topic
    assert committed == ends

    asyncio.run(_produce(settings, 5))
    assert asyncio.run(skip_to_end(settings.kafka.bootstrap, group)) == 5  # only what came since
