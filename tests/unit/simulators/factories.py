"""A small synthetic city for simulator tests: a grid of streets, no road graph needed."""

from __future__ import annotations

import numpy as np

from simulators.citymap import CityMap


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
