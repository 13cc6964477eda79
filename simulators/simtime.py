"""Scenario time on top of the shared clock (``core.clock``).

A scenario's events are planned in simulated seconds from its start; ``SimTime`` maps
them onto the one clock every service honours and sleeps in wall time until they are due.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.clock import Clock

# Never sleep longer than this in one go, so a stop request is noticed quickly.
_MAX_NAP_S = 0.5


@dataclass
class SimTime:
    """The scenario's start on the shared clock, and a stop flag."""

    clock: Clock
    start_s: float
    stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def starting_now(cls, clock: Clock, stop: threading.Event | None = None) -> SimTime:
        """A scenario that starts at the clock's current simulated time."""
        return cls(clock, clock.time(), stop or threading.Event())

    def now_s(self) -> float:
        """Simulated seconds since the Unix epoch."""
        return self.clock.time()

    def elapsed_s(self) -> float:
        """Simulated seconds since the scenario started."""
        return self.clock.time() - self.start_s

    def at(self, offset_s: float) -> datetime:
        """The simulated instant ``offset_s`` after the start."""
        return datetime.fromtimestamp(self.start_s + offset_s, tz=UTC)

    def now(self) -> datetime:
        """Simulated now."""
        return self.clock.now()

    def sleep_until(self, offset_s: float) -> bool:
        """Sleep until ``offset_s`` after the start; ``False`` if stopped first."""
        while not self.stop.is_set():
            left_sim = offset_s - self.elapsed_s()
            if left_sim <= 0:
                return True
            self.stop.wait(min(self.clock.wall_seconds(left_sim), _MAX_NAP_S))
        return False

    def nap(self, wall_s: float) -> bool:
        """Sleep ``wall_s`` wall seconds; ``False`` if stopped."""
        return not self.stop.wait(wall_s)
