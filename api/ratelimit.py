"""A sliding-window rate limiter (pure, in process; the clock is injected)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """At most ``limit`` events per ``window_s`` seconds for each key."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def __repr__(self) -> str:
        return f"RateLimiter({self.limit}/{self.window_s:g}s, keys={len(self._events)})"

    def retry_after_s(self, key: str) -> float:
        """Record one event for ``key``: 0 when allowed, else seconds until it would be."""
        now = self.clock()
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if len(events) >= self.limit:
            return events[0] + self.window_s - now
        events.append(now)
        if len(self._events) > 100_000:  # forget idle keys so memory stays bounded
            self._events = {
                k: v for k, v in self._events.items() if v and v[-1] > now - self.window_s
            }
        return 0.0
