"""``RoadGraph``: one city's drivable roads, as arrays, with snapping and routing on top.

Nodes are numbered 0..N-1 (``node_osmid`` keeps their OSM ids); edges 0..E-1, each from
``edge_u`` to ``edge_v`` with its highway class, name, length, speed and travel time, and
its geometry from start to end. Spatial indexes are built on first use.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry.base import BaseGeometry

from core.errors import OutOfServiceArea
from geo.context import Context, Poi
from geo.routing import Route, Router
from geo.snapping import Snapped, Snapper, SnapPoint

if TYPE_CHECKING:
    import geopandas as gpd


@dataclass(frozen=True)
class RoadLines:
    """Every road as a (lon, lat) line with its highway class, for drawing.

    ``edge[i]`` is the edge drawn by ``coordinates[i]`` (a ``(k, 2)`` array).
    """

    edge: NDArray[np.int64]
    coordinates: list[NDArray[np.float64]]
    highway: list[str]
    name: list[str]


class RoadGraph:
    """The road graph of one city (see the module docstring)."""

    def __init__(
        self,
        arrays: dict[str, NDArray[Any]],
        *,
        name: str,
        cache_path: Path | None = None,
        matrix_processes: int = 1,
    ) -> None:
        self.name = name
        self.cache_path = cache_path
        self.matrix_processes = matrix_processes
        self.meta: dict[str, Any] = json.loads(str(arrays["meta_json"]))
        self._a = arrays
        self.node_osmid: NDArray[np.int64] = arrays["node_osmid"]
        self.node_lat: NDArray[np.float64] = arrays["node_lat"]
        self.node_lon: NDArray[np.float64] = arrays["node_lon"]
        self.node_x: NDArray[np.float64] = arrays["node_x"]
        self.node_y: NDArray[np.float64] = arrays["node_y"]
        self.edge_u: NDArray[np.int32] = arrays["edge_u"]
        self.edge_v: NDArray[np.int32] = arrays["edge_v"]
        self.edge_length_m: NDArray[np.float64] = arrays["edge_length_m"]
        self.edge_speed_kph: NDArray[np.float64] = arrays["edge_speed_kph"]
        self.edge_travel_time_s: NDArray[np.float64] = arrays["edge_travel_time_s"]
        self.edge_way_osmid: NDArray[np.int64] = arrays["edge_way_osmid"]
        self.edge_twin: NDArray[np.int32] = arrays["edge_twin"]
        self._highway_code = arrays["edge_highway"]
        self._highway_vocab = [str(s) for s in arrays["highway_vocab"]]
        self._name_code = arrays["edge_name"]
        self._name_vocab = [str(s) for s in arrays["name_vocab"]]
        self.crs = pyproj.CRS.from_epsg(int(self.meta["crs_epsg"]))
        self._fwd = pyproj.Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        self._inv = pyproj.Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RoadGraph({self.name!r}, {self.node_count} nodes, {self.edge_count} edges)"

    # -- sizes and extent ------------------------------------------------------------
    @property
    def node_count(self) -> int:
        """Number of nodes."""
        return len(self.node_osmid)

    @property
    def edge_count(self) -> int:
        """Number of directed edges."""
        return len(self.edge_u)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(min_lon, min_lat, max_lon, max_lat)`` of the nodes."""
        return (
            float(self.node_lon.min()),
            float(self.node_lat.min()),
            float(self.node_lon.max()),
            float(self.node_lat.max()),
        )

    @property
    def sha256(self) -> str:
        """The sha256 of the extract this graph was built from."""
        return str(self.meta["sha256"])

    @cached_property
    def service_area(self) -> BaseGeometry:
        """The service area polygon, in the projected CRS (``self.crs``)."""
        return shapely.from_wkb(self._a["service_area_wkb"].tobytes())

    # -- edges -----------------------------------------------------------------------
    def edge_highway(self, edge: int) -> str:
        """The OSM highway class of an edge (``"residential"``, ``"primary"``, ...)."""
        return self._highway_vocab[int(self._highway_code[edge])]

    def edge_name(self, edge: int) -> str:
        """The street name of an edge (``""`` when unnamed)."""
        return self._name_vocab[int(self._name_code[edge])]

    def edges_adjacent(self, e1: int, e2: int) -> bool:
        """Whether two edges share a node (an edge is adjacent to itself)."""
        a = {int(self.edge_u[e1]), int(self.edge_v[e1])}
        return int(self.edge_u[e2]) in a or int(self.edge_v[e2]) in a

    def edge_coords(self, edge: int) -> NDArray[np.float64]:
        """The (lon, lat) line of an edge, from ``edge_u`` to ``edge_v``."""
        return self._router.edge_coords(edge)

    def road_lines(self, *, one_per_street: bool = True) -> RoadLines:
        """Every edge's (lon, lat) line and highway class, for the map.

        With ``one_per_street`` the two directions of a two-way street are drawn once.
        """
        edges = np.arange(self.edge_count)
        if one_per_street:
            edges = edges[(self.edge_twin < 0) | (self.edge_twin > edges)]
        offsets, lon, lat = self._a["geom_offsets"], self._a["geom_lon"], self._a["geom_lat"]
        coords = [
            np.column_stack([lon[offsets[e] : offsets[e + 1]], lat[offsets[e] : offsets[e + 1]]])
            for e in edges.tolist()
        ]
        return RoadLines(
            edge=edges,
            coordinates=coords,
            highway=[self.edge_highway(e) for e in edges.tolist()],
            name=[self.edge_name(e) for e in edges.tolist()],
        )

    # -- snapping --------------------------------------------------------------------
    @cached_property
    def _snapper(self) -> Snapper:
        offsets = self._a["geom_offsets"]
        counts = np.diff(offsets)
        lines = shapely.linestrings(
            np.column_stack([self._a["geom_x"], self._a["geom_y"]]),
            indices=np.repeat(np.arange(self.edge_count), counts),
        )
        return Snapper(
            city=self.name,
            node_xy=np.column_stack([self.node_x, self.node_y]),
            lines=lines,
            edge_length_m=self.edge_length_m,
            service_area=self.service_area,
            fwd=self._fwd,
            inv=self._inv,
        )

    def snap(self, lats: ArrayLike, lons: ArrayLike) -> Snapped:
        """Snap many points at once to their nearest node and nearest edge.

        Points outside the service area come back with ``ok=False`` and a ``reason``.
        """
        with self._lock:
            snapper = self._snapper
        return snapper.snap(lats, lons)

    def snap_one(self, lat: float, lon: float) -> SnapPoint:
        """Snap one point; raises ``OutOfServiceArea`` (with the reason) when refused."""
        snapped = self.snap([lat], [lon])
        if not snapped.ok[0]:
            raise OutOfServiceArea(snapped.reason[0] or "outside the service area")
        return snapped.point(0)

    # -- routing ---------------------------------------------------------------------
    @cached_property
    def _router(self) -> Router:
        return Router(
            node_count=self.node_count,
            edge_u=self.edge_u,
            edge_v=self.edge_v,
            edge_time_s=self.edge_travel_time_s,
            edge_length_m=self.edge_length_m,
            geom_offsets=self._a["geom_offsets"],
            geom_lon=self._a["geom_lon"],
            geom_lat=self._a["geom_lat"],
            edge_twin=self.edge_twin,
            processes=self.matrix_processes,
        )

    def travel_time_matrix(self, src_nodes: ArrayLike, dst_nodes: ArrayLike) -> NDArray[np.float64]:
        """Driving seconds from each source node to each destination node.

        Shape ``(len(src_nodes), len(dst_nodes))``; ``inf`` where unreachable. Hundreds of
        searches are spread over ``matrix_processes`` worker processes (same numbers).
        """
        return self._router.travel_time_matrix(src_nodes, dst_nodes)

    def road_distance_m(self, a: SnapPoint, b: SnapPoint, limit_m: float) -> float:
        """Metres along the road between two snapped points, or ``inf`` beyond ``limit_m``.

        Roads count as two-way here (a pothole is as near from either side); the search
        stops at ``limit_m``, so small limits are cheap.
        """
        return self._router.road_distance_m(a.edge, a.along_m, b.edge, b.along_m, limit_m)

    def route(self, nodes: Sequence[int]) -> Route:
        """The fastest drive through ``nodes`` in order, with per-leg times and distances.

        Raises ``NoRoute`` when a leg cannot be driven.
        """
        return self._router.route(nodes)

    @property
    def csr(self) -> Any:
        """The travel-time CSR matrix used by the matrix (fastest parallel edge only)."""
        return self._router.csr

    # -- context ---------------------------------------------------------------------
    @cached_property
    def _context(self) -> Context:
        return Context(self._a, self._fwd, float(self.meta["district_grid_m"]))

    def district_of(self, lat: float, lon: float) -> str:
        """The district of a point: an admin area's name, else ``"grid-{col}-{row}"``."""
        return self._context.district_of(lat, lon)

    def districts_of(self, lats: ArrayLike, lons: ArrayLike) -> list[str]:
        """``district_of`` for many points."""
        x, y = self._fwd.transform(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        return self._context.districts_of_xy(np.atleast_1d(x), np.atleast_1d(y))

    def pois_near(self, lat: float, lon: float, radius_m: float) -> list[Poi]:
        """Schools, hospitals, ... within ``radius_m`` of a point, nearest first."""
        return self._context.pois_near(lat, lon, radius_m)

    @property
    def poi_count(self) -> int:
        """How many points of interest the city has."""
        return self._context.poi_count

    @property
    def district_names(self) -> list[str]:
        """Names of the admin districts (empty when the grid is used)."""
        return list(self._context.district_names)

    def districts_frame(self) -> gpd.GeoDataFrame:
        """The admin districts as a GeoDataFrame (WGS84)."""
        return self._context.districts_frame(self.crs)

    def pois_frame(self) -> gpd.GeoDataFrame:
        """The points of interest as a GeoDataFrame (WGS84)."""
        return self._context.pois_frame()
