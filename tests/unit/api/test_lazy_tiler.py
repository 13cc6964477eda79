"""The road tiler built in the background: async routes wait for it without a thread."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi import HTTPException

from api.map import _LazyTiler


def test_a_request_during_the_build_waits_on_the_loop_then_gets_the_tiler():
    release = threading.Event()
    built = object()

    def make():
        release.wait(10)
        return built

    lazy = _LazyTiler(make)  # type: ignore[arg-type]

    async def run():
        with pytest.raises(HTTPException) as early:
            await lazy.ready(limit_s=0.1)
        threading.Timer(0.1, release.set).start()
        return early.value, await lazy.ready(limit_s=5)

    early, got = asyncio.run(run())
    assert early.status_code == 503 and early.headers == {"Retry-After": "10"}
    assert got is built


def test_a_failed_build_is_a_503_naming_the_error():
    def make():
        raise OSError("no graph file")

    lazy = _LazyTiler(make)  # type: ignore[arg-type]
    with pytest.raises(HTTPException) as err:
        asyncio.run(lazy.ready(limit_s=5))
    assert err.value.status_code == 503 and "no graph file" in err.value.detail
