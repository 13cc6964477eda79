"""One clock for every service, so an accelerated city stays consistent.

Simulated time runs ``factor`` times faster than the wall clock from a shared anchor:
``sim_now = sim_epoch + (wall_now - wall_epoch) * factor``. Every process of a demo gets
the same anchor through settings, so SLAs, aging, ETAs and shift ends agree across
services. With ``factor == 1`` and no anchor the clock is simply the wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Clock:
    """Wall clock, or a scaled clock anchored at a shared instant."""

    factor: float = 1.0
    wall_epoch_s: float | None = None
    sim_epoch_s: float | None = None

    def time(self) -> float:
        """Seconds since the Unix epoch in simulated time."""
        wall = time.time()
        if self.wall_epoch_s is None or (self.factor == 1.0 and self.sim_epoch_s is None):
            return wall
        sim_epoch = self.sim_epoch_s if self.sim_epoch_s is not None else self.wall_epoch_s
        return sim_epoch + (wall - self.wall_epoch_s) * self.factor

    def now(self) -> datetime:
        """Simulated now, timezone-aware (UTC)."""
        return datetime.fromtimestamp(self.time(), tz=UTC)

    def sim_seconds(self, wall_s: float) -> float:
        """A wall-clock duration expressed in simulated seconds."""
        return wall_s * self.factor

    def wall_seconds(self, sim_s: float) -> float:
        """A simulated duration expressed in wall-clock seconds (for sleeping)."""
        return sim_s / self.factor


WALL_CLOCK = Clock()
