"""A short-lived cache of rendered answers, shared by concurrent identical requests.

The heavy reads (the incidents map layer, the default Open311 request list) are asked
for again and again by many clients; rendering them once per ``ttl_s`` and serving the
same bytes (and their gzip form, compressed once) keeps latency flat under load. One
computation per key runs at a time: concurrent misses wait for it (single flight).
The cost is staleness of at most ``ttl_s``; live push is where changes arrive at once.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True)
class Rendered:
    """An answer body, its gzip form and its entity tag."""

    body: bytes
    gzipped: bytes
    etag: str
    media_type: str
    status_code: int = 200

    @classmethod
    def of(cls, body: bytes, media_type: str, status_code: int = 200) -> Rendered:
        """Compress and tag a body."""
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        return cls(body, gzip.compress(body, compresslevel=3), etag, media_type, status_code)

    def respond(self, request: Request) -> Response:
        """The answer for ``request``: 304 when it has it, gzip when it accepts it."""
        headers = {"ETag": self.etag, "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", "") and len(self.body) > 1024:
            headers["Content-Encoding"] = "gzip"
            return Response(self.gzipped, self.status_code, headers, self.media_type)
        return Response(self.body, self.status_code, headers, self.media_type)


class AnswerCache:
    """Rendered answers by key for ``ttl_s`` seconds; ``ttl_s == 0`` disables it.

    Stale while revalidating: a request within ``ttl_s`` after an answer expired still
    gets it at once while one background task renders the next, so under steady traffic
    no request waits for a render. An answer is never served more than ``2 * ttl_s``
    after it was rendered (plus the render time): after a quiet spell the first request
    waits for a fresh one.
    """

    def __init__(self, ttl_s: float, max_keys: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self.clock = clock
        self._entries: dict[str, tuple[float, Rendered]] = {}  # key -> (expires at, answer)
        self._inflight: dict[str, asyncio.Task[Rendered]] = {}

    def __repr__(self) -> str:
        return f"AnswerCache(ttl_s={self.ttl_s:g}, keys={len(self._entries)})"

    def clear(self) -> None:
        """Forget everything (after a write that changes answers)."""
        self._entries.clear()

    async def _render(self, key: str, make: Callable[[], Awaitable[Rendered]]) -> Rendered:
        try:
            rendered = await make()
        finally:
            self._inflight.pop(key, None)
        if len(self._entries) >= self.max_keys:
            self._entries.clear()
        self._entries[key] = (self.clock() + self.ttl_s, rendered)
        return rendered

    def _start(self, key: str, make: Callable[[], Awaitable[Rendered]]) -> asyncio.Task[Rendered]:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._render(key, make))
            self._inflight[key] = task
            task.add_done_callback(_consume)
        return task

    async def get(self, key: str, make: Callable[[], Awaitable[Rendered]]) -> Rendered:
        """The cached answer for ``key``, or the one ``make`` renders now."""
        if self.ttl_s <= 0:
            return await make()
        hit = self._entries.get(key)
        now = self.clock()
        if hit is not None and now < hit[0]:
            return hit[1]
        task = self._start(key, make)
        if hit is not None and now < hit[0] + self.ttl_s:
            return hit[1]
        return await asyncio.shield(task)


def _consume(task: asyncio.Task[Rendered]) -> None:
    # A failed background render is retried by the next request; its error is not lost
    # for the requests awaiting it, and not reported twice for the ones that are not.
    if not task.cancelled():
        task.exception()
