from __future__ import annotations

import math

import numpy as np
import osmium
import pytest

import geo
from core.errors import GeoError, OutOfServiceArea

from .conftest import DATA

STREET = "Calle Estrella"


def _street_midpoint(name: str) -> tuple[float, float]:
    """The middle of the middle segment of the longest OSM way named ``name`` (raw data)."""
    best: list[tuple[float, float]] = []
    for way in osmium.FileProcessor(str(DATA / "aguascalientes.osm.pbf")).with_locations():
        if way.is_way() and way.tags.get("name") == name:
            coords = [(n.lat, n.lon) for n in way.nodes]
            if len(coords) > len(best):
                best = coords
    assert len(best) >= 2, f"no way named {name}"
    k = (len(best) - 1) // 2
    (lat1, lon1), (lat2, lon2) = best[k], best[k + 1]
    return (lat1 + lat2) / 2, (lon1 + lon2) / 2


def test_a_point_beside_a_known_street_snaps_to_it(ags: geo.RoadGraph) -> None:
    lat, lon = _street_midpoint(STREET)
    # 4 m to the north of the centre line, like a phone's GPS fix
    point = ags.snap_one(lat + 4 / 111_320, lon)
    assert ags.edge_name(point.edge) == STREET
    assert 0 <= point.offset_m <= 4.5
    assert 0 <= point.along_m <= ags.edge_length_m[point.edge]
    assert abs(point.snap_lat - lat) < 5 / 111_320
    # the nearest node is one of the graph's nodes, near the point
    node_gap = math.dist(
        (ags.node_lat[point.node] * 111_320, ags.node_lon[point.node] * 103_000),
        (lat * 111_320, lon * 103_000),
    )
    assert node_gap < 300


def test_batch_snapping_refuses_far_points_with_a_reason(ags: geo.RoadGraph) -> None:
    lat, lon = _street_midpoint(STREET)
    lats = np.array([lat, 40.4168, lat, float("nan")])
    lons = np.array([lon, -3.7038, lon + 0.5, lon])  # Madrid; 50 km east; garbage
    snapped = ags.snap(lats, lons)
    assert snapped.ok.tolist() == [True, False, False, False]
    assert snapped.reason[0] is None
    assert "outside the service area of aguascalientes" in (snapped.reason[1] or "")
    assert "km beyond its edge" in (snapped.reason[2] or "")
    assert "invalid coordinates" in (snapped.reason[3] or "")
    assert snapped.edge[1] == -1 and snapped.node[1] == -1 and math.isnan(snapped.offset_m[1])
    assert ags.edge_name(int(snapped.edge[0])) == STREET
    with pytest.raises(ValueError, match="not snapped"):
        snapped.point(1)


def test_snap_one_outside_raises(ags: geo.RoadGraph) -> None:
    with pytest.raises(OutOfServiceArea, match="outside the service area") as info:
        ags.snap_one(40.4168, -3.7038)
    assert isinstance(info.value, GeoError)


def test_points_just_outside_the_network_are_still_served(ags: geo.RoadGraph) -> None:
    # within the buffer around the road network: accepted, with a large offset
    min_lon = ags.bounds[0]
    west = ags.snap_one(float(ags.node_lat[np.argmin(ags.node_lon)]), min_lon - 100 / 103_000)
    assert 90 < west.offset_m < 250


def test_many_points_snap_like_one_by_one(ags: geo.RoadGraph) -> None:
    rng = np.random.default_rng(1)
    lo_lon, lo_lat, hi_lon, hi_lat = ags.bounds
    lats, lons = rng.uniform(lo_lat, hi_lat, 50), rng.uniform(lo_lon, hi_lon, 50)
    batch = ags.snap(lats, lons)
    assert batch.ok.sum() > 40
    for i in np.flatnonzero(batch.ok)[:10]:
        one = ags.snap_one(float(lats[i]), float(lons[i]))
        assert one == batch.point(int(i))


def test_edges_expose_their_attributes(ags: geo.RoadGraph) -> None:
    e = 0
    u, v = int(ags.edge_u[e]), int(ags.edge_v[e])
    assert ags.edges_adjacent(e, e)
    touching = [f for f in range(ags.edge_count) if f != e and ags.edge_u[f] == v]
    assert touching and all(ags.edges_adjacent(e, f) for f in touching)
    far = [
        f for f in range(ags.edge_count) if not {u, v} & {int(ags.edge_u[f]), int(ags.edge_v[f])}
    ]
    assert far and not ags.edges_adjacent(e, far[0])
    lines = ags.road_lines()
    assert len(lines.coordinates) == len(lines.highway) == len(lines.edge) < ags.edge_count
    assert all(c.shape[1] == 2 and len(c) >= 2 for c in lines.coordinates)
    assert len(ags.road_lines(one_per_street=False).edge) == ags.edge_count
