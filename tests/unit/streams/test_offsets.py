"""Offset commits with holes: Faust's own functions, patched by ``streams.offsets``."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams import offsets
from streams.app import app

RAW = TP("raw.reports", 0)
PLANS = TP("assignments", 0)


class Bookkeeping:
    """The per-partition state Faust's consumer keeps, with a recorded ``seek``."""

    def __init__(self, committed: dict[TP, int], acked: dict[TP, list[int]]) -> None:
        self._committed_offset = defaultdict(lambda: None, committed)
        self._acked = defaultdict(list, {tp: list(v) for tp, v in acked.items()})
        self._acked_index = defaultdict(set, {tp: set(v) for tp, v in acked.items()})
        self._gap = defaultdict(IntervalTree)
        self._read_offset: dict[TP, int | None] = {}
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return set(self._committed_offset)

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


@pytest.fixture(autouse=True)
def contiguous():
    before = set(offsets._contiguous)
    offsets.install(app, {RAW.topic}, 2.0)
    offsets._stalled_since.clear()
    offsets._reread.clear()
    offsets._sought.clear()
    yield
    offsets._contiguous.clear()
    offsets._contiguous.update(before)


def test_a_skipped_committed_record_blocks_the_commit_on_a_topic_without_holes():
    c = Bookkeeping({RAW: 10, PLANS: 10}, {RAW: [11, 12], PLANS: [11, 12]})
    assert Consumer._new_offset(c, RAW) is None
    # a compacted topic keeps Faust's rule: the record at the committed offset may be gone
    assert Consumer._new_offset(c, PLANS) == 13


def test_acked_records_from_the_committed_offset_on_are_committed():
    c = Bookkeeping({RAW: 10}, {RAW: [10, 11, 12, 14]})
    assert Consumer._new_offset(c, RAW) == 13


def test_the_record_being_fetched_is_not_counted_done_by_a_gap():
    # read up to 4, the next record fetched is 9 (5..8 compacted away); 9 is skipped by
    # the stream, 10 is processed
    c = Bookkeeping({PLANS: 4}, {PLANS: [4, 10]})
    asyncio.run(Consumer._add_gap(c, PLANS, 5, 9))
    assert Consumer._new_offset(c, PLANS) == 9


def test_no_gap_is_recorded_on_a_topic_without_holes():
    c = Bookkeeping({RAW: 4}, {RAW: [4]})
    asyncio.run(Consumer._add_gap(c, RAW, 5, 9))
    assert not c._gap[RAW]
    assert Consumer._new_offset(c, RAW) == 5


def test_a_hole_that_stays_is_read_again_from_the_committed_offset(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(offsets.time, "monotonic", lambda: clock[0])
    c = Bookkeeping({RAW: 10, PLANS: 3}, {RAW: [11, 12], PLANS: [5]})
    asyncio.run(offsets._repair(c, 2.0))
    assert c.seeks == []  # a hole may be a record still on its way: wait
    clock[0] += 2.5
    asyncio.run(offsets._repair(c, 2.0))
    assert c.seeks == [(RAW, 10)]  # the compacted topic is left alone
    clock[0] += 0.5
    asyncio.run(offsets._repair(c, 2.0))
    assert c.seeks == [(RAW, 10)]  # not again before another wait


def test_a_hole_that_closes_is_forgotten(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(offsets.time, "monotonic", lambda: clock[0])
    c = Bookkeeping({RAW: 10}, {RAW: [11]})
    asyncio.run(offsets._repair(c, 2.0))
    c._acked[RAW] = [10, 11]
    clock[0] += 1.5
    asyncio.run(offsets._repair(c, 2.0))
    c._acked[RAW] = [13]
    c._committed_offset[RAW] = 12
    clock[0] += 1.0
    asyncio.run(offsets._repair(c, 2.0))
    assert c.seeks == [] and RAW in offsets._stalled_since


def test_a_partition_revoked_before_its_seek_does_not_stop_the_repair(monkeypatch):
    monkeypatch.setattr(offsets.time, "monotonic", lambda: 100.0)
    other = TP("raw.reports", 1)
    c = Bookkeeping({RAW: 10, other: 5}, {RAW: [11], other: [7]})

    async def seek(tp: TP, offset: int) -> None:
        if tp == RAW:  # revoked between the look at the assignment and the seek
            raise RuntimeError("no current assignment")
        c.seeks.append((tp, offset))

    c.seek = seek  # type: ignore[method-assign]
    asyncio.run(offsets._repair(c, 0.0))
    assert c.seeks == [(other, 5)]


class Committing:
    """What Faust's ``_commit_offsets`` uses of its consumer, with the commits recorded."""

    def __init__(self) -> None:
        self.committed: list[dict[TP, int]] = []
        self._committed_offset: dict[TP, int] = {}
        self.in_transaction = False
        self.should_stop = False
        self.log = SimpleNamespace(dev=lambda *a, **k: None, info=lambda *a, **k: None)

        async def flush() -> None:
            return None

        self.app = SimpleNamespace(
            producer=SimpleNamespace(flush=flush),
            tables=SimpleNamespace(on_commit=lambda offsets: None),
            monitor=SimpleNamespace(on_tp_commit=lambda offsets: None),
            rebalancing=False,
            should_stop=False,
        )

    def assignment(self) -> set[TP]:
        return {RAW}

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        self.committed.append(dict(offsets))
        return True


@pytest.fixture
def barriers():
    before = list(offsets._barriers)
    offsets._barriers.clear()
    yield offsets._barriers
    offsets._barriers[:] = before


def test_a_commit_waits_until_every_barrier_lets_it_through(barriers):
    answers = [False, False, True]
    calls = []

    async def barrier() -> bool:
        calls.append(1)
        return answers[len(calls) - 1]

    offsets.add_commit_barrier(barrier)
    offsets.add_commit_barrier(barrier)  # once only
    c = Committing()
    assert asyncio.run(Consumer._commit_offsets(c, {RAW: 5}))
    assert c.committed == [{RAW: 5}] and c._committed_offset == {RAW: 5}
    assert len(calls) == 3


def _leave(c: Committing, how: str) -> None:
    c.should_stop = how == "consumer stopping"
    c.app.should_stop = how == "app stopping"
    c.app.rebalancing = how == "rebalancing"


LEAVING = ["consumer stopping", "app stopping", "rebalancing"]


@pytest.mark.parametrize("leaving", LEAVING)
def test_a_worker_giving_its_partitions_up_drops_a_held_commit(barriers, leaving):
    c = Committing()
    calls = []

    async def barrier() -> bool:
        calls.append(1)
        if len(calls) == 2:  # the worker starts leaving while the commit is held
            _leave(c, leaving)
        return False

    offsets.add_commit_barrier(barrier)
    assert not asyncio.run(Consumer._commit_offsets(c, {RAW: 5}))
    assert c.committed == [] and c._committed_offset == {}
    assert len(calls) == 2


@pytest.mark.parametrize("leaving", LEAVING)
def test_a_worker_giving_its_partitions_up_still_commits_when_the_barriers_agree(
    barriers, leaving
):
    # The commit of a revocation or a stop is what spares the next owner a replay.
    c = Committing()
    _leave(c, leaving)
    calls = []

    async def barrier() -> bool:
        calls.append(1)
        return True

    offsets.add_commit_barrier(barrier)
    assert asyncio.run(Consumer._commit_offsets(c, {RAW: 5}))
    assert c.committed == [{RAW: 5}] and len(calls) == 1


def test_without_barriers_offsets_are_committed_as_faust_would(barriers):
    c = Committing()
    assert asyncio.run(Consumer._commit_offsets(c, {RAW: 3}))
    assert c.committed == [{RAW: 3}]


def fetched(*records: tuple[TP, int]):
    """Records as Faust's ``getmany`` yields them: ``(tp, message)``."""

    async def gen():
        for tp, offset in records:
            yield tp, SimpleNamespace(offset=offset)

    return gen()


def after_repair(c: Bookkeeping, *records: tuple[TP, int]) -> list[tuple[TP, int]]:
    async def run() -> list[tuple[TP, int]]:
        return [(tp, m.offset) async for tp, m in offsets._fresh(c, fetched(*records))]

    return asyncio.run(run())


async def drain(c: Bookkeeping, records, on_message) -> list[tuple[TP, int]]:
    """Faust's fetch loop (``Consumer._drain_messages``): what it hands to the streams.

    A record below the partition's read offset is dropped as old; the read offset moves
    to each record once its handling (``on_message``, where timers may run) is done.
    """
    handled = []
    async for tp, message in offsets._fresh(c, records):
        r_offset = c._read_offset.get(tp)
        if r_offset is None or message.offset >= r_offset:
            await on_message(tp, message)
            handled.append((tp, message.offset))
            c._read_offset[tp] = message.offset
    return handled


def test_records_fetched_before_a_repairs_seek_are_dropped_until_its_record(monkeypatch):
    monkeypatch.setattr(offsets.time, "monotonic", lambda: 100.0)
    other = TP("raw.reports", 1)
    c = Bookkeeping({RAW: 10}, {RAW: [11, 12]})
    offsets._stalled_since[RAW] = 90.0
    asyncio.run(offsets._repair(c, 2.0))
    assert c.seeks == [(RAW, 10)]
    # 13 and 14 were fetched before the seek: processed, they moved Faust's read offset
    # past 10, and 10 was dropped as old when it came again
    got = after_repair(c, (RAW, 13), (other, 7), (RAW, 14), (RAW, 10), (RAW, 11), (RAW, 12))
    assert got == [(other, 7), (RAW, 10), (RAW, 11), (RAW, 12)]
    assert not offsets._reread
    # later fetches go through untouched
    assert after_repair(c, (RAW, 13), (RAW, 14)) == [(RAW, 13), (RAW, 14)]


def test_a_repair_while_a_record_is_being_handled_still_gets_its_record(monkeypatch):
    """The repair timer runs while the fetch loop awaits the handling of record 13."""
    monkeypatch.setattr(offsets.time, "monotonic", lambda: 100.0)
    c = Bookkeeping({RAW: 10}, {RAW: [11, 12]})
    c._read_offset = {RAW: 12}

    async def seek(tp: TP, offset: int) -> None:  # Faust's seek: the read offset too
        c.seeks.append((tp, offset))
        c._read_offset[tp] = offset

    c.seek = seek  # type: ignore[method-assign]
    offsets._stalled_since[RAW] = 90.0

    async def on_message(tp: TP, message) -> None:
        if message.offset == 13:
            await offsets._repair(c, 2.0)

    async def run():
        # the batch in hand (13, 14), then the fetch from the seek on (10..14)
        first = await drain(c, fetched((RAW, 13), (RAW, 14)), on_message)
        second = await drain(c, fetched(*((RAW, o) for o in range(10, 15))), on_message)
        return first + second

    handled = asyncio.run(run())
    assert c.seeks == [(RAW, 10)]
    assert handled == [(RAW, 13), (RAW, 10), (RAW, 11), (RAW, 12), (RAW, 13), (RAW, 14)]


def test_a_partition_whose_sought_record_is_gone_is_read_after_the_wait(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(offsets.time, "monotonic", lambda: clock[0])
    c = Bookkeeping({RAW: 10}, {RAW: [11]})
    offsets._stalled_since[RAW] = 90.0
    asyncio.run(offsets._repair(c, 2.0))
    assert after_repair(c, (RAW, 12)) == []
    clock[0] = 104.5  # retention deleted 10 and 11: the fetch starts at 12
    assert after_repair(c, (RAW, 12), (RAW, 13)) == [(RAW, 12), (RAW, 13)]
    # the hole stays: the repairs that follow do not seek and drop records again soon
    for _ in range(5):
        clock[0] += 2.5
        asyncio.run(offsets._repair(c, 2.0))
    assert c.seeks == [(RAW, 10)]
    assert after_repair(c, (RAW, 14)) == [(RAW, 14)]
    clock[0] += 10.0  # ... but after ten waits, in case the record did come back
    asyncio.run(offsets._repair(c, 2.0))
    assert c.seeks == [(RAW, 10), (RAW, 10)]


def test_a_failed_seek_drops_nothing(monkeypatch):
    monkeypatch.setattr(offsets.time, "monotonic", lambda: 100.0)
    c = Bookkeeping({RAW: 10}, {RAW: [11]})
    offsets._stalled_since[RAW] = 90.0

    async def seek(tp: TP, offset: int) -> None:
        raise RuntimeError("no current assignment")

    c.seek = seek  # type: ignore[method-assign]
    asyncio.run(offsets._repair(c, 2.0))
    assert not offsets._reread
    assert after_repair(c, (RAW, 12)) == [(RAW, 12)]
