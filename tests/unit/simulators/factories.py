"""Simulator test helpers: a grid city (no road graph needed), a clock that stands still."""

from __future__ import annotations

import numpy as np

from core.clock import Clock
from simulators.citymap import CityMap


class ManualClock(Clock):
    """The shared clock, standing at ``now_s`` (simulated) until a test moves it."""

    def __init__(self, now_s: float, factor: float = 60.0) -> None:
        super().__init__(factor, 0.0, now_s)
        object.__setattr__(self, "now_s", now_s)

    def time(self) -> float:
        return self.now_s

    def advance(self, sim_s: float) -> None:
        object.__setattr__(self, "now_s", self.now_s + sim_s)


def grid_city(
    n: int = 6, step_deg: float = 0.002, lat0: float = 41.15, lon0: float = -8.61
) -> CityMap:
    """``n`` x ``n`` blocks of straight streets; the middle row and column are major roads."""
    lat_a, lon_a, lat_b, lon_b, major = [], [], [], [], []
    for i in range(n + 1):
        for j in range(n):
            # east-west street i, block j
            lat_a.append(lat0 + i * step_deg)
            lon_a.append(lon0 + j * step_deg)
            lat_b.append(lat0 + i * step_deg)
            lon_b.append(lon0 + (j + 1) * step_deg)
            major.append(i == n // 2)
            # north-south street i, block j
            lat_a.append(lat0 + j * step_deg)
            lon_a.append(lon0 + i * step_deg)
            lat_b.append(lat0 + (j + 1) * step_deg)
            lon_b.append(lon0 + i * step_deg)
            major.append(i == n // 2)
    return CityMap(
        name="grid",
        lat0=np.array(lat_a),
        lon0=np.array(lon_a),
        lat1=np.array(lat_b),
        lon1=np.array(lon_b),
        major=np.array(major),
    )
