"""The answer cache: fresh within its ttl, stale for one more ttl while it re-renders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from api.cache import AnswerCache, Rendered


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def renderer() -> tuple[list[int], Callable[[], Awaitable[Rendered]]]:
    calls: list[int] = []

    async def make() -> Rendered:
        calls.append(len(calls) + 1)
        await asyncio.sleep(0)
        return Rendered.of(f"v{len(calls)}".encode(), "text/plain")

    return calls, make


async def test_an_answer_is_reused_within_its_ttl() -> None:
    clock = Clock()
    cache = AnswerCache(1.0, clock=clock)
    calls, make = renderer()
    assert (await cache.get("k", make)).body == b"v1"
    clock.now = 0.9
    assert (await cache.get("k", make)).body == b"v1"
    assert calls == [1]


async def test_just_expired_answers_are_served_while_the_next_renders() -> None:
    clock = Clock()
    cache = AnswerCache(1.0, clock=clock)
    calls, make = renderer()
    await cache.get("k", make)
    clock.now = 1.5
    assert (await cache.get("k", make)).body == b"v1"  # at once, stale
    await asyncio.sleep(0.01)  # the background render lands
    assert calls == [1, 2]
    assert (await cache.get("k", make)).body == b"v2"


async def test_after_a_quiet_spell_the_first_request_waits_for_a_fresh_answer() -> None:
    clock = Clock()
    cache = AnswerCache(1.0, clock=clock)
    calls, make = renderer()
    await cache.get("k", make)
    clock.now = 3600.0
    assert (await cache.get("k", make)).body == b"v2"
    assert calls == [1, 2]


async def test_concurrent_misses_share_one_render() -> None:
    cache = AnswerCache(1.0, clock=Clock())
    calls, make = renderer()
    answers = await asyncio.gather(*(cache.get("k", make) for _ in range(5)))
    assert {a.body for a in answers} == {b"v1"}
    assert calls == [1]
