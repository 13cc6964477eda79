"""Kafka consumer-group housekeeping shared by the demo, the tests and the benchmarks."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from core.topics import KAFKA_TOPICS


async def skip_to_end(bootstrap: str, group: str) -> int:
    """Commit the end of every cityfix topic for consumer ``group``; how many it skips.

    A consumer of the group then reads only records published from now on, not those a
    new group would start from (the beginning) or an old one would resume at.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t.name, p) for t in KAFKA_TOPICS for p in range(t.partitions)]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        skipped = 0
        for tp in tps:
            at = await consumer.committed(tp)
            skipped += ends[tp] - max(starts[tp], at if at is not None else 0)
        await consumer.commit(ends)
        return skipped
    finally:
        await consumer.stop()
