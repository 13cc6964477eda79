"""Context layers of a city: districts and points of interest that raise priority.

**Districts.** Administrative areas of the extract (``boundary=administrative`` relations
with ``admin_level`` 7 to 10, i.e. municipal and sub-municipal) that touch the service
area. A point belongs to the finest (highest ``admin_level``, then smallest) area that
contains it. Where the extract has no such areas, or a point lies in none of them, the
district is a cell of a square grid of ``geo.district_grid_m`` metres laid in the city's
projection from the south-west corner of the service area: ``"grid-{col}-{row}"``,
counted from 0 eastwards and northwards.

**Points of interest.** Schools, hospitals, clinics, kindergartens, universities and
nursing homes (``geo._osm.POI_TAGS``), from nodes and from the centroids of ways, inside
the service area.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyproj
import shapely
from numpy.typing import NDArray
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry

from core.settings import GeoSettings
from geo import _osm

if TYPE_CHECKING:
    import geopandas as gpd


@dataclass(frozen=True)
class Poi:
    """A point of interest near a location (``distance_m`` from it, straight line)."""

    kind: str
    name: str
    lat: float
    lon: float
    distance_m: float
    osm_id: str

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Poi({self.kind}{label} at {self.distance_m:.0f} m, {self.osm_id})"


def _strings(values: list[str]) -> NDArray[np.str_]:
    return np.array(values, dtype=np.str_) if values else np.zeros(0, dtype="<U1")


def build_context_arrays(
    osm_path: Path, area: BaseGeometry, fwd: pyproj.Transformer, settings: GeoSettings
) -> dict[str, NDArray[Any]]:
    """The district and POI arrays of the cache (``area`` in the projected CRS)."""
    import geopandas as gpd  # only needed while building

    raw_pois, raw_districts = _osm.read_context(osm_path)
    crs = pyproj.CRS.from_user_input(fwd.target_crs)
    out: dict[str, NDArray[Any]] = {}

    if raw_districts:
        frame = gpd.GeoDataFrame(
            {
                "name": [d.name for d in raw_districts],
                "admin_level": [d.admin_level for d in raw_districts],
                "osm_id": [d.osm_id for d in raw_districts],
            },
            geometry=[d.geometry for d in raw_districts],
            crs="EPSG:4326",
        ).to_crs(crs)
        frame = frame[frame.geometry.is_valid & frame.intersects(area)]
        frame = frame.assign(area_m2=frame.area).sort_values(
            ["admin_level", "area_m2", "osm_id"], ascending=[False, True, True]
        )
    else:
        frame = gpd.GeoDataFrame(
            {"name": [], "admin_level": [], "osm_id": []}, geometry=[], crs=crs
        )
    wkbs = [shapely.to_wkb(g) for g in frame.geometry]
    out["district_name"] = _strings([str(n) for n in frame["name"]])
    out["district_admin_level"] = np.asarray(frame["admin_level"], dtype=np.int16)
    out["district_wkb"] = np.frombuffer(b"".join(wkbs), dtype=np.uint8).copy()
    out["district_wkb_offsets"] = np.cumsum([0, *map(len, wkbs)], dtype=np.int64)
    minx, miny, _, _ = area.bounds
    out["grid_origin_xy"] = np.array([minx, miny], dtype=np.float64)

    lon = np.array([p.lon for p in raw_pois], dtype=np.float64)
    lat = np.array([p.lat for p in raw_pois], dtype=np.float64)
    x, y = fwd.transform(lon, lat) if raw_pois else (lon, lat)
    inside = shapely.contains_xy(area, x, y) if raw_pois else np.zeros(0, dtype=bool)
    keep = [p for p, k in zip(raw_pois, inside, strict=True) if k]
    keep.sort(key=lambda p: (p.osm_type, p.osm_id))
    out["poi_lon"] = np.array([p.lon for p in keep], dtype=np.float64)
    out["poi_lat"] = np.array([p.lat for p in keep], dtype=np.float64)
    out["poi_kind"] = _strings([p.kind for p in keep])
    out["poi_name"] = _strings([p.name for p in keep])
    out["poi_osm_id"] = _strings([f"{p.osm_type}{p.osm_id}" for p in keep])
    return out


class Context:
    """Runtime lookups over the cached context arrays."""

    def __init__(
        self,
        arrays: dict[str, NDArray[Any]],
        fwd: pyproj.Transformer,
        grid_m: float,
    ) -> None:
        self._fwd = fwd
        self._grid_m = grid_m
        self._grid_origin = arrays["grid_origin_xy"]
        offsets = arrays["district_wkb_offsets"]
        blob = arrays["district_wkb"].tobytes()
        self.district_names: list[str] = [str(n) for n in arrays["district_name"]]
        self._district_levels = arrays["district_admin_level"]
        self._districts = np.array(
            [shapely.from_wkb(blob[a:b]) for a, b in pairwise(offsets)],
            dtype=object,
        )
        self._district_tree = shapely.STRtree(self._districts) if len(self._districts) else None
        self._poi_lon = arrays["poi_lon"]
        self._poi_lat = arrays["poi_lat"]
        self._poi_kind = arrays["poi_kind"]
        self._poi_name = arrays["poi_name"]
        self._poi_osm_id = arrays["poi_osm_id"]
        px, py = fwd.transform(self._poi_lon, self._poi_lat)
        self._poi_xy = np.column_stack([px, py]) if len(self._poi_lon) else np.zeros((0, 2))
        self._poi_tree = cKDTree(self._poi_xy) if len(self._poi_xy) else None

    @property
    def poi_count(self) -> int:
        """How many points of interest the city has."""
        return len(self._poi_lon)

    def districts_of_xy(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> list[str]:
        """The district of each projected point (see the module docstring)."""
        result: list[str | None] = [None] * len(x)
        if self._district_tree is not None and len(x):
            pts = shapely.points(x, y)
            hits = self._district_tree.query(pts, predicate="intersects")
            # Areas are stored finest first, so the lowest area index per point wins.
            order = np.lexsort((hits[1], hits[0]))
            seen = np.ones(len(order), dtype=bool)
            seen[1:] = hits[0][order][1:] != hits[0][order][:-1]
            for p, d in zip(hits[0][order][seen], hits[1][order][seen], strict=True):
                result[int(p)] = self.district_names[int(d)]
        col = np.floor((x - self._grid_origin[0]) / self._grid_m).astype(np.int64)
        row = np.floor((y - self._grid_origin[1]) / self._grid_m).astype(np.int64)
        return [
            r if r is not None else f"grid-{c}-{w}"
            for r, c, w in zip(result, col.tolist(), row.tolist(), strict=True)
        ]

    def district_of(self, lat: float, lon: float) -> str:
        """The district of one point."""
        x, y = self._fwd.transform(np.array([lon]), np.array([lat]))
        return self.districts_of_xy(np.asarray(x), np.asarray(y))[0]

    def pois_near(self, lat: float, lon: float, radius_m: float) -> list[Poi]:
        """Points of interest within ``radius_m`` of a point, nearest first."""
        if self._poi_tree is None:
            return []
        x, y = self._fwd.transform(lon, lat)
        found = self._poi_tree.query_ball_point([x, y], r=radius_m)
        pois = []
        for i in found:
            dist = float(np.hypot(self._poi_xy[i, 0] - x, self._poi_xy[i, 1] - y))
            pois.append(
                Poi(
                    kind=str(self._poi_kind[i]),
                    name=str(self._poi_name[i]),
                    lat=float(self._poi_lat[i]),
                    lon=float(self._poi_lon[i]),
                    distance_m=dist,
                    osm_id=str(self._poi_osm_id[i]),
                )
            )
        pois.sort(key=lambda p: (p.distance_m, p.osm_id))
        return pois

    def districts_frame(self, crs: pyproj.CRS) -> gpd.GeoDataFrame:
        """The admin districts as a GeoDataFrame in WGS84 (empty when the extract has none)."""
        import geopandas as gpd

        frame = gpd.GeoDataFrame(
            {"name": self.district_names, "admin_level": self._district_levels},
            geometry=list(self._districts),
            crs=crs,
        )
        return frame.to_crs("EPSG:4326")

    def pois_frame(self) -> gpd.GeoDataFrame:
        """The points of interest as a GeoDataFrame in WGS84."""
        import geopandas as gpd

        return gpd.GeoDataFrame(
            {
                "kind": self._poi_kind.tolist(),
                "name": self._poi_name.tolist(),
                "osm_id": self._poi_osm_id.tolist(),
            },
            geometry=gpd.points_from_xy(self._poi_lon, self._poi_lat),
            crs="EPSG:4326",
        )
