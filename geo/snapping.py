"""Snapping points to the road graph, many at once, in the city's projected CRS.

Nearest node: a ``scipy.spatial.cKDTree`` over the projected nodes. Nearest edge: a shapely
``STRtree`` over the projected edge geometries, queried with ``query_nearest`` (exact
distance to each line, in GEOS); ties (the two directions of a two-way street) go to the
lowest edge index. Positions along an edge are measured on the projected line and scaled to
the edge's stored length, so ``0 <= along_m <= length_m``.

Points outside the service area, or with coordinates that are not numbers on the globe,
are refused: the batch call returns ``ok=False`` and a reason; ``snap_one`` raises
``OutOfServiceArea``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class SnapPoint:
    """One point snapped to the road graph.

    ``edge`` is the nearest edge, ``along_m`` how far along it (from its start node) the
    nearest point lies, ``offset_m`` how far the original point is from the road;
    ``node`` is the nearest graph node; ``snap_lat``/``snap_lon`` the point on the road.
    """

    lat: float
    lon: float
    node: int
    edge: int
    offset_m: float
    along_m: float
    snap_lat: float
    snap_lon: float

    def __repr__(self) -> str:
        return (
            f"SnapPoint(edge={self.edge} at {self.along_m:.1f} m, {self.offset_m:.1f} m off road, "
            f"node={self.node})"
        )


@dataclass(frozen=True)
class Snapped:
    """Many points snapped at once; arrays are aligned with the input.

    Where ``ok`` is False, ``node``/``edge`` are -1, the float arrays NaN and ``reason[i]``
    says why the point was refused (``None`` where ``ok``).
    """

    node: NDArray[np.int64]
    edge: NDArray[np.int64]
    offset_m: NDArray[np.float64]
    along_m: NDArray[np.float64]
    snap_lat: NDArray[np.float64]
    snap_lon: NDArray[np.float64]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    ok: NDArray[np.bool_]
    reason: list[str | None]

    def __len__(self) -> int:
        return len(self.ok)

    def point(self, i: int) -> SnapPoint:
        """Point ``i`` as a ``SnapPoint`` (``ValueError`` if it was refused)."""
        if not self.ok[i]:
            raise ValueError(f"point {i} was not snapped: {self.reason[i]}")
        return SnapPoint(
            lat=float(self.lat[i]),
            lon=float(self.lon[i]),
            node=int(self.node[i]),
            edge=int(self.edge[i]),
            offset_m=float(self.offset_m[i]),
            along_m=float(self.along_m[i]),
            snap_lat=float(self.snap_lat[i]),
            snap_lon=float(self.snap_lon[i]),
        )


class Snapper:
    """Spatial indexes over one graph; built once, queried in batches."""

    def __init__(
        self,
        *,
        city: str,
        node_xy: NDArray[np.float64],
        lines: NDArray[np.object_],
        edge_length_m: NDArray[np.float64],
        service_area: BaseGeometry,
        fwd: pyproj.Transformer,
        inv: pyproj.Transformer,
    ) -> None:
        self._city = city
        self._node_tree = cKDTree(node_xy)
        self._lines = lines
        self._line_tree = shapely.STRtree(lines)
        self._scale = edge_length_m / np.maximum(shapely.length(lines), 1e-9)
        self._area = service_area
        shapely.prepare(self._area)
        self._fwd = fwd
        self._inv = inv

    def snap(self, lats: ArrayLike, lons: ArrayLike) -> Snapped:
        """Snap every (lat, lon) pair; see ``Snapped``."""
        lat = np.atleast_1d(np.asarray(lats, dtype=np.float64))
        lon = np.atleast_1d(np.asarray(lons, dtype=np.float64))
        if lat.shape != lon.shape or lat.ndim != 1:
            raise ValueError("lats and lons must be 1-d arrays of the same length")
        n = len(lat)
        node = np.full(n, -1, dtype=np.int64)
        edge = np.full(n, -1, dtype=np.int64)
        offset = np.full(n, np.nan)
        along = np.full(n, np.nan)
        snap_lat = np.full(n, np.nan)
        snap_lon = np.full(n, np.nan)
        reason: list[str | None] = [None] * n

        valid = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
        for i in np.flatnonzero(~valid):
            reason[int(i)] = f"invalid coordinates lat={lat[i]} lon={lon[i]}"
        x = np.full(n, np.nan)
        y = np.full(n, np.nan)
        if valid.any():
            x[valid], y[valid] = self._fwd.transform(lon[valid], lat[valid])
        inside = valid.copy()
        inside[valid] = shapely.contains_xy(self._area, x[valid], y[valid])
        outside = valid & ~inside
        if outside.any():
            gaps = shapely.distance(self._area, shapely.points(x[outside], y[outside]))
            for i, gap in zip(np.flatnonzero(outside), gaps, strict=True):
                reason[int(i)] = (
                    f"outside the service area of {self._city} "
                    f"({gap / 1000:.1f} km beyond its edge)"
                )
        idx = np.flatnonzero(inside)
        if len(idx):
            pts = shapely.points(x[idx], y[idx])
            _, nearest_node = self._node_tree.query(np.column_stack([x[idx], y[idx]]))
            node[idx] = nearest_node
            pairs, dist = self._line_tree.query_nearest(pts, all_matches=True, return_distance=True)
            order = np.lexsort((pairs[1], pairs[0]))
            first = np.ones(len(order), dtype=bool)
            first[1:] = pairs[0][order][1:] != pairs[0][order][:-1]
            which = pairs[0][order][first]
            best = pairs[1][order][first]
            edge[idx[which]] = best
            offset[idx[which]] = dist[order][first]
            lines = self._lines[best]
            along_proj = shapely.line_locate_point(lines, pts[which])
            on_road = shapely.line_interpolate_point(lines, along_proj)
            along[idx[which]] = np.clip(along_proj * self._scale[best], 0.0, None)
            slon, slat = self._inv.transform(shapely.get_x(on_road), shapely.get_y(on_road))
            snap_lon[idx[which]] = slon
            snap_lat[idx[which]] = slat
        return Snapped(
            node=node,
            edge=edge,
            offset_m=offset,
            along_m=along,
            snap_lat=snap_lat,
            snap_lon=snap_lon,
            lat=lat,
            lon=lon,
            ok=inside,
            reason=reason,
        )
