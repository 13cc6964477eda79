"""What the stream processors need of the road graph, behind one small seam.

``Roads`` is the protocol the engine is written against; ``GeoRoads`` implements it over a
``geo.RoadGraph``. Tests and benchmarks use the real graph of a small city.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

import geo
from core.settings import GeoSettings


@dataclass(frozen=True)
class Snap:
    """A point on the road: edge, metres along it, the on-road position, distance off road."""

    ok: bool
    edge: int = -1
    along_m: float = 0.0
    snap_lat: float = 0.0
    snap_lon: float = 0.0
    offset_m: float = 0.0
    reason: str | None = None


class Roads(Protocol):
    """Road-graph lookups used by dedup, fusion and scoring."""

    ref_lat: float

    def snap_many(self, lats: Sequence[float], lons: Sequence[float]) -> list[Snap]:
        """Snap many points at once (refused points come back with ``ok=False``)."""
        ...

    def distance_m(
        self, edge_a: int, along_a: float, edge_b: int, along_b: float, limit_m: float
    ) -> float:
        """Metres along the road between two points, ``inf`` beyond ``limit_m``."""
        ...

    def road_class(self, edge: int) -> str:
        """The OSM highway class of an edge."""
        ...

    def edge_nodes(self, edge: int) -> tuple[int, int]:
        """The OSM node ids at the two ends of an edge."""
        ...

    def district(self, lat: float, lon: float) -> str:
        """The district of a point."""
        ...

    def poi_kinds(self, lat: float, lon: float) -> tuple[str, ...]:
        """Kinds of the points of interest near a point."""
        ...


def _point(edge: int, along_m: float) -> geo.SnapPoint:
    # road_distance_m reads only the edge and the position along it.
    return geo.SnapPoint(0.0, 0.0, -1, edge, 0.0, along_m, 0.0, 0.0)


class GeoRoads:
    """``Roads`` over a ``geo.RoadGraph``."""

    def __init__(self, graph: geo.RoadGraph, poi_radius_m: float) -> None:
        self.graph = graph
        self.poi_radius_m = poi_radius_m
        _, lo_lat, _, hi_lat = graph.bounds
        self.ref_lat = round((lo_lat + hi_lat) / 2, 3)

    @classmethod
    def load(cls, settings: GeoSettings) -> GeoRoads:
        """The configured city's roads."""
        return cls(geo.load_city(settings), settings.poi_radius_m)

    def snap_many(self, lats: Sequence[float], lons: Sequence[float]) -> list[Snap]:
        """Snap many points at once (refused points come back with ``ok=False``)."""
        if not len(lats):
            return []
        s = self.graph.snap(np.asarray(lats, dtype=float), np.asarray(lons, dtype=float))
        out = []
        for i in range(len(s)):
            if not s.ok[i]:
                out.append(Snap(ok=False, reason=s.reason[i]))
                continue
            out.append(
                Snap(
                    ok=True,
                    edge=int(s.edge[i]),
                    along_m=float(s.along_m[i]),
                    snap_lat=float(s.snap_lat[i]),
                    snap_lon=float(s.snap_lon[i]),
                    offset_m=float(s.offset_m[i]),
                )
            )
        return out

    def distance_m(
        self, edge_a: int, along_a: float, edge_b: int, along_b: float, limit_m: float
    ) -> float:
        """Metres along the road between two points, ``inf`` beyond ``limit_m``."""
        return self.graph.road_distance_m(_point(edge_a, along_a), _point(edge_b, along_b), limit_m)

    def road_class(self, edge: int) -> str:
        """The OSM highway class of an edge."""
        return self.graph.edge_highway(edge)

    def edge_nodes(self, edge: int) -> tuple[int, int]:
        """The OSM node ids at the two ends of an edge."""
        g = self.graph
        return int(g.node_osmid[g.edge_u[edge]]), int(g.node_osmid[g.edge_v[edge]])

    def district(self, lat: float, lon: float) -> str:
        """The district of a point (looked up at ~10 m resolution, cached)."""
        return self._district(round(lat, 4), round(lon, 4))

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one instance per process, lives as long
    def _district(self, lat: float, lon: float) -> str:
        return self.graph.district_of(lat, lon)

    def poi_kinds(self, lat: float, lon: float) -> tuple[str, ...]:
        """Kinds of the points of interest within the POI radius of a point.

        Looked up at ~10 m resolution (cached): nothing next to a 300 m radius.
        """
        return self._poi_kinds(round(lat, 4), round(lon, 4))

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one instance per process, lives as long
    def _poi_kinds(self, lat: float, lon: float) -> tuple[str, ...]:
        return tuple(sorted({p.kind for p in self.graph.pois_near(lat, lon, self.poi_radius_m)}))
