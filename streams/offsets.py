"""At-least-once offset commits for Faust's consumer on topics without offset holes.

Faust commits, per partition, the end of the run of consecutive offsets its streams
have acknowledged, and it treats some holes in that run as done:

* a jump between the last offset it read and the next record it fetches is recorded as
  a *gap*, and the gap includes that next record itself, before any stream has it;
* a hole of exactly one record at the head of the run (the committed offset itself) is
  committed past.

Both are meant for compacted topics, where offsets are missing for good. Around a
rebalance they also cover records that exist: a record fetched before the rebalance
arrives after the seek to the committed offset, is skipped by the stream as stale, and
its offset is still committed; the record is never processed by any worker (seen as one
report missing from its incident after a second worker joined).

For the topics named here (delete retention, written without transactions, so offsets
have no holes) this module makes a hole block the commit instead, and repairs it: a
partition whose committed offset has not been acknowledged while later ones have, for
``hole_repair_s``, is read again from the committed offset. Records read twice are
harmless, as every consumer of these topics is idempotent (``streams.engine``). The
behaviour on compacted topics is Faust's own, except that the record being fetched is
no longer counted as done before a stream has acknowledged it.

A repair's seek races with the records Faust fetched before it: its fetch loop goes on
through them after the seek, and each moves its read offset on, so the record the seek
was for came back below that offset and was dropped as old again. So until the record
at the seek's offset comes, the records of that partition are dropped as they come out
of the fetch (``_fresh``): they were fetched before the seek, and come again after that
record. The record the loop was handling when the repair ran also sets the read offset
once it is done; ``_fresh`` puts the seek's offset back right after. Records are
dropped for at most twice ``hole_repair_s`` after a seek, and the same committed offset
is sought again only after ten times ``hole_repair_s``: the record may be gone
(retention deletes from the start), and then the hole stays, as it did before, holding
the partition's commits, while its records are still processed.

Commit barriers (``add_commit_barrier``) hold commits back behind outputs that do not go
through Kafka's producer, which Faust flushes before every commit by itself: each barrier
is awaited before offsets are committed, again and again while one says no (each waits a
while itself); the offsets Faust has taken off its list for this commit are committed
once all agree. Records are processed meanwhile until Faust's consumer, past
``broker_commit_every`` records since its last commit, waits for the commit before it
fetches more. A worker that is stopping, or giving its partitions up to a rebalance,
commits as usual once every barrier agrees; only when one still says no after its wait
does it drop the commit: the records are then read again from the offsets committed
before, by whichever worker gets them. (Each barrier's wait is bounded, so a stop or a
revocation waits at most that long per commit.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import faust
from faust.transport.consumer import Consumer
from faust.types import TP

_log = logging.getLogger(__name__)

_contiguous: set[str] = set()
_barriers: list[Callable[[], Awaitable[bool]]] = []
_stalled_since: dict[TP, float] = {}
# Partition -> (offset a repair sought to, until when its records from before are dropped).
_reread: dict[TP, tuple[int, float]] = {}
# Partition -> (committed offset a repair last sought it to, when). The same offset is
# sought again only after ``_RESEEK_AFTER`` repair waits.
_sought: dict[TP, tuple[int, float]] = {}
_RESEEK_AFTER = 10
_installed = False


def install(app: faust.App, contiguous_topics: Iterable[str], hole_repair_s: float) -> None:
    """Patch Faust's consumer for ``contiguous_topics`` and start the repair timer."""
    global _installed
    _contiguous.clear()
    _contiguous.update(contiguous_topics)
    if _installed:
        return
    _installed = True
    original_add_gap = Consumer._add_gap
    original_new_offset = Consumer._new_offset
    original_commit_offsets = Consumer._commit_offsets
    original_getmany = Consumer.getmany

    async def _add_gap(self: Consumer, tp: TP, offset_from: int, offset_to: int) -> None:
        # ``offset_to`` is the record being fetched: done only once a stream acks it.
        if tp.topic in _contiguous or offset_to - 1 < offset_from:
            return
        await original_add_gap(self, tp, offset_from, offset_to - 1)

    def _new_offset(self: Consumer, tp: TP) -> int | None:
        if tp.topic in _contiguous and head_hole(self, tp) is not None:
            return None
        return original_new_offset(self, tp)  # type: ignore[no-any-return]

    async def _commit_offsets(
        self: Consumer, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        while True:
            if await barriers_pass():
                return await original_commit_offsets(  # type: ignore[no-any-return]
                    self, offsets, start_new_transaction=start_new_transaction
                )
            if _leaving(self):
                # The partitions are leaving this worker: whoever reads them next starts
                # from the offsets committed before, so nothing is skipped.
                return False

    def getmany(self: Consumer, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        return _fresh(self, original_getmany(self, timeout))

    Consumer._add_gap = _add_gap  # type: ignore[method-assign]
    Consumer.getmany = getmany  # type: ignore[method-assign]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer._commit_offsets = _commit_offsets  # type: ignore[method-assign]

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode's type fits no handler
    async def forget_rereads(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Every partition kept or given is sought to its committed offset anew.
        _reread.clear()
        _sought.clear()

    @app.timer(interval=max(0.5, hole_repair_s / 2))
    async def repair_holes() -> None:
        if app.rebalancing:  # the assignment is changing: every partition is sought anew
            _stalled_since.clear()
            _reread.clear()
            _sought.clear()
            return
        await _repair(app.consumer, hole_repair_s)


def _leaving(consumer: Any) -> bool:
    """Whether the worker is stopping or its partitions are being revoked.

    Faust commits while it stops (``App.on_stop`` waits for the streams before the
    consumer itself is told to stop, so the app's flag is the one set by then) and when a
    rebalance revokes partitions (``rebalancing`` is set as revocation starts).
    """
    app = consumer.app
    return bool(consumer.should_stop or app.should_stop or app.rebalancing)


def add_commit_barrier(barrier: Callable[[], Awaitable[bool]]) -> None:
    """Await ``barrier`` before every offset commit, until it says True."""
    if barrier not in _barriers:
        _barriers.append(barrier)


async def barriers_pass() -> bool:
    """Whether every commit barrier lets offsets be committed now."""
    for barrier in _barriers:
        if not await barrier():
            return False
    return True


async def _fresh(
    consumer: Any, records: AsyncIterator[tuple[TP, Any]]
) -> AsyncIterator[tuple[TP, Any]]:
    """``records`` without those fetched before a repair's seek (see the module docstring).

    A partition a repair sought to offset *n* yields nothing until its record *n*, or
    until the wait is over. A seek made while a record of its partition was out (the
    repair runs while Faust's fetch loop awaits that record's handling) gets its read
    offset back once the loop asks for the next record: the loop set it to that record's.
    """
    async for tp, message in records:
        if _reread and tp in _reread:
            offset, until = _reread[tp]
            if message.offset != offset and time.monotonic() < until:
                continue
            del _reread[tp]
        before = _reread.get(tp)
        yield tp, message
        if _reread:
            after = _reread.get(tp)
            if after is not None and after is not before:
                consumer._read_offset[tp] = after[0] or None  # as Faust's own seek sets it


def head_hole(consumer: Any, tp: TP) -> tuple[int, int] | None:
    """``(committed, first acked)`` if the committed record is unacked but later ones are."""
    acked = consumer._acked.get(tp)
    committed = consumer._committed_offset.get(tp)
    if not acked or committed is None:
        return None
    first = min(acked)
    return (committed, first) if first > committed else None


async def _repair(consumer: Any, hole_repair_s: float) -> None:
    now = time.monotonic()
    holes = {}
    for tp in consumer.assignment():
        if tp.topic in _contiguous and (hole := head_hole(consumer, tp)) is not None:
            holes[tp] = hole
    for tp in list(_stalled_since):
        if tp not in holes:
            del _stalled_since[tp]
    for tp in list(_reread):
        if tp not in holes:
            del _reread[tp]
    for tp in list(_sought):
        if tp not in holes:
            del _sought[tp]
    wait_again = _RESEEK_AFTER * hole_repair_s
    for tp, (committed, first) in holes.items():
        since = _stalled_since.setdefault(tp, now)
        if now - since < hole_repair_s:
            continue
        _stalled_since[tp] = now
        last = _sought.get(tp)
        if last is not None and last[0] == committed and now - last[1] < wait_again:
            continue  # sought already: the record is on its way, or gone (see _fresh)
        _log.warning(
            "records %d..%d of %s were skipped: reading the partition again from %d",
            committed,
            first - 1,
            tp,
            committed,
            extra={"topic": tp.topic, "partition": tp.partition},
        )
        _reread[tp] = (committed, now + 2 * hole_repair_s)
        try:
            await consumer.seek(tp, committed)
        except Exception as exc:  # revoked meanwhile: its next owner reads it from there
            _reread.pop(tp, None)
            _log.warning("could not read %s again: %r", tp, exc)
        else:
            _sought[tp] = (committed, now)
