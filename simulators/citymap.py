"""Where things can happen: the city's streets as straight segments, for sampling places.

``CityMap`` is a plain value object (numpy arrays) so the fault and fleet models stay pure
and testable without a road graph; ``CityMap.from_graph`` builds one from ``geo``'s
``RoadGraph``. Distances use a local equirectangular projection, accurate to well under a
metre over a city.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyproj
import shapely
from numpy.typing import NDArray

M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQ = 111_320.0

# Roads that buses drive on (road-surface sensors ride the buses).
MAJOR_ROADS = frozenset(
    {"motorway", "trunk", "primary", "secondary", "tertiary", "primary_link", "secondary_link"}
)


def m_per_deg_lon(lat: float) -> float:
    """Metres per degree of longitude at latitude ``lat``."""
    return _M_PER_DEG_LON_EQ * math.cos(math.radians(lat))


@dataclass(frozen=True)
class CityMap:
    """Street segments (straight pieces of road geometry) with their length and class."""

    name: str
    lat0: NDArray[np.float64]
    lon0: NDArray[np.float64]
    lat1: NDArray[np.float64]
    lon1: NDArray[np.float64]
    major: NDArray[np.bool_]

    def __post_init__(self) -> None:
        if len(self.lat0) == 0:
            raise ValueError(f"city {self.name!r} has no street segments")

    def __repr__(self) -> str:
        return f"CityMap({self.name!r}, {len(self.lat0)} segments, {int(self.major.sum())} major)"

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_graph(cls, graph: Any) -> CityMap:
        """Segments of every street of a ``geo.RoadGraph`` (one direction per street).

        Segments with an end outside the graph's service area are left out: a fault there
        would be refused as out of area, which is the job of the out-of-area share.
        """
        lines = graph.road_lines(one_per_street=True)
        lat0: list[NDArray[np.float64]] = []
        lon0: list[NDArray[np.float64]] = []
        lat1: list[NDArray[np.float64]] = []
        lon1: list[NDArray[np.float64]] = []
        major: list[NDArray[np.bool_]] = []
        for coords, highway in zip(lines.coordinates, lines.highway, strict=True):
            if len(coords) < 2:
                continue
            lon0.append(coords[:-1, 0])
            lat0.append(coords[:-1, 1])
            lon1.append(coords[1:, 0])
            lat1.append(coords[1:, 1])
            major.append(np.full(len(coords) - 1, highway in MAJOR_ROADS))
        a_lat, a_lon = np.concatenate(lat0), np.concatenate(lon0)
        b_lat, b_lon = np.concatenate(lat1), np.concatenate(lon1)
        area = graph.service_area
        shapely.prepare(area)
        to_xy = pyproj.Transformer.from_crs("EPSG:4326", graph.crs, always_xy=True)
        ax, ay = to_xy.transform(a_lon, a_lat)
        bx, by = to_xy.transform(b_lon, b_lat)
        inside = shapely.contains_xy(area, ax, ay) & shapely.contains_xy(area, bx, by)
        return cls(
            name=str(graph.name),
            lat0=a_lat[inside],
            lon0=a_lon[inside],
            lat1=b_lat[inside],
            lon1=b_lon[inside],
            major=np.concatenate(major)[inside],
        )

    # -- geometry -------------------------------------------------------------------
    @property
    def centre(self) -> tuple[float, float]:
        """``(lat, lon)`` of the middle of the bounding box."""
        return (
            float((self.lat0.min() + self.lat0.max()) / 2),
            float((self.lon0.min() + self.lon0.max()) / 2),
        )

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(min_lon, min_lat, max_lon, max_lat)``."""
        lons = np.concatenate([self.lon0, self.lon1])
        lats = np.concatenate([self.lat0, self.lat1])
        return float(lons.min()), float(lats.min()), float(lons.max()), float(lats.max())

    @cached_property
    def length_m(self) -> NDArray[np.float64]:
        """Length of each segment, metres."""
        k = m_per_deg_lon(self.centre[0])
        dx = (self.lon1 - self.lon0) * k
        dy = (self.lat1 - self.lat0) * M_PER_DEG_LAT
        return np.hypot(dx, dy)

    @cached_property
    def _mid(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return (self.lat0 + self.lat1) / 2, (self.lon0 + self.lon1) / 2

    def distance_m(self, lat: float, lon: float) -> NDArray[np.float64]:
        """Distance from a point to each segment's midpoint, metres."""
        mid_lat, mid_lon = self._mid
        return np.hypot((mid_lon - lon) * m_per_deg_lon(lat), (mid_lat - lat) * M_PER_DEG_LAT)

    # -- sampling -------------------------------------------------------------------
    @cached_property
    def _cum_length_m(self) -> NDArray[np.float64]:
        return np.cumsum(self.length_m)

    @cached_property
    def _cum_major_m(self) -> NDArray[np.float64]:
        return np.cumsum(np.where(self.major, self.length_m, 0.0))

    def sample_point(
        self, rng: np.random.Generator, mask: NDArray[np.bool_] | None = None
    ) -> tuple[float, float]:
        """A uniformly random point on the streets (``mask`` limits the segments)."""
        if mask is None or not mask.any():
            cum = self._cum_length_m
        elif mask is self.major:
            cum = self._cum_major_m
        else:
            cum = np.cumsum(np.where(mask, self.length_m, 0.0))
        if cum[-1] <= 0:
            cum = np.arange(1.0, len(cum) + 1.0)
        seg = min(
            int(np.searchsorted(cum, float(rng.random()) * cum[-1], side="right")), len(cum) - 1
        )
        t = float(rng.random())
        return (
            float(self.lat0[seg] + t * (self.lat1[seg] - self.lat0[seg])),
            float(self.lon0[seg] + t * (self.lon1[seg] - self.lon0[seg])),
        )

    def sample_near(
        self, rng: np.random.Generator, lat: float, lon: float, radius_m: float
    ) -> tuple[float, float]:
        """A random street point whose segment lies within ``radius_m`` of a point."""
        near = self.distance_m(lat, lon) <= radius_m
        if not near.any():
            return lat, lon
        return self.sample_point(rng, near)


def jitter(rng: np.random.Generator, lat: float, lon: float, sigma_m: float) -> tuple[float, float]:
    """A point moved by Gaussian noise of ``sigma_m`` metres per axis (a phone's GPS)."""
    if sigma_m <= 0:
        return lat, lon
    dy, dx = rng.normal(0.0, sigma_m, size=2)
    return lat + float(dy) / M_PER_DEG_LAT, lon + float(dx) / m_per_deg_lon(lat)
