from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import geo
from core.settings import GeoSettings


def test_matrix_equals_networkx_dijkstra(ags: geo.RoadGraph, ags_nx: nx.MultiDiGraph) -> None:
    rng = np.random.default_rng(7)
    src = rng.integers(0, ags.node_count, 25)
    dst = rng.integers(0, ags.node_count, 60)
    # include dead ends, repeated nodes and a node to itself
    dead_ends = [n for n in range(ags.node_count) if ags_nx.out_degree(n) == 1][:5]
    src = np.concatenate([src, dead_ends, src[:2]])
    dst = np.concatenate([dst, dead_ends, src[:1]])
    got = ags.travel_time_matrix(src, dst)
    assert got.shape == (len(src), len(dst))
    for i, s in enumerate(src.tolist()):
        oracle = nx.single_source_dijkstra_path_length(ags_nx, s, weight="travel_time")
        want = np.array([oracle.get(d, math.inf) for d in dst.tolist()])
        np.testing.assert_allclose(got[i], want, rtol=1e-9, atol=1e-6)


def test_matrix_with_more_origins_than_destinations(
    ags: geo.RoadGraph, ags_nx: nx.MultiDiGraph
) -> None:
    rng = np.random.default_rng(8)
    src = rng.integers(0, ags.node_count, 40)
    dst = rng.integers(0, ags.node_count, 3)
    got = ags.travel_time_matrix(src, dst)
    for j, d in enumerate(dst.tolist()):
        oracle = nx.single_source_dijkstra_path_length(
            ags_nx.reverse(copy=False), d, weight="travel_time"
        )
        np.testing.assert_allclose(got[:, j], [oracle[s] for s in src.tolist()], rtol=1e-9)


def test_route_follows_the_fastest_path(ags: geo.RoadGraph, ags_nx: nx.MultiDiGraph) -> None:
    rng = np.random.default_rng(9)
    stops = rng.integers(0, ags.node_count, 4).tolist()
    route = ags.route(stops)
    matrix = ags.travel_time_matrix(stops, stops)
    for k, (a, b) in enumerate(pairwise(stops)):
        assert route.leg_travel_time_s[k] == pytest.approx(matrix[k, k + 1])
        want = nx.dijkstra_path_length(ags_nx, a, b, weight="travel_time")
        assert route.leg_travel_time_s[k] == pytest.approx(want)
    assert route.travel_time_s == pytest.approx(sum(route.leg_travel_time_s))
    assert route.distance_m == pytest.approx(sum(float(ags.edge_length_m[e]) for e in route.edges))
    # the path is continuous: each edge starts where the previous one ended
    for e1, e2 in pairwise(route.edges):
        assert ags.edge_v[e1] == ags.edge_u[e2]
    gj = route.geojson()
    assert gj["type"] == "LineString"
    assert gj["coordinates"][0] == pytest.approx([ags.node_lon[stops[0]], ags.node_lat[stops[0]]])
    assert gj["coordinates"][-1] == pytest.approx(
        [ags.node_lon[stops[-1]], ags.node_lat[stops[-1]]]
    )
    assert route.arrival_s[-1] == pytest.approx(route.travel_time_s)


def test_route_through_one_stop_is_a_point(ags: geo.RoadGraph) -> None:
    route = ags.route([5])
    assert route.travel_time_s == 0.0 and route.distance_m == 0.0
    assert route.coordinates == [(float(ags.node_lon[5]), float(ags.node_lat[5]))]
    assert len(route.geojson()["coordinates"]) == 2


_TINY_OSM = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="test">
  <node id="1" lat="41.1500" lon="-8.6100" version="1"/>
  <node id="2" lat="41.1500" lon="-8.6080" version="1"/>
  <node id="3" lat="41.1510" lon="-8.6090" version="1"/>
  <node id="4" lat="41.1490" lon="-8.6110" version="1"/>
  <node id="5" lat="41.1490" lon="-8.6070" version="1"/>
  <way id="10" version="1"><nd ref="1"/><nd ref="2"/>
    <tag k="highway" v="residential"/><tag k="maxspeed" v="10"/><tag k="name" v="Slow Lane"/></way>
  <way id="11" version="1"><nd ref="1"/><nd ref="3"/><nd ref="2"/>
    <tag k="highway" v="primary"/><tag k="maxspeed" v="90"/><tag k="name" v="Fast Road"/></way>
  <way id="12" version="1"><nd ref="4"/><nd ref="1"/><tag k="highway" v="residential"/></way>
  <way id="13" version="1"><nd ref="2"/><nd ref="5"/><tag k="highway" v="residential"/></way>
  <way id="14" version="1"><nd ref="4"/><nd ref="5"/><tag k="highway" v="footway"/></way>
</osm>
"""


def test_parallel_edges_route_by_the_fastest(tmp_path: Path) -> None:
    osm = tmp_path / "tiny.osm"
    osm.write_text(_TINY_OSM)
    graph = geo.build_graph(osm, tmp_path / "cache", GeoSettings(cache_dir=tmp_path / "cache"))
    index = {int(o): i for i, o in enumerate(graph.node_osmid)}
    assert set(index) == {1, 2, 4, 5}  # the detour's middle node is simplified away
    a, b = index[1], index[2]
    parallel = [e for e in range(graph.edge_count) if (graph.edge_u[e], graph.edge_v[e]) == (a, b)]
    assert sorted(graph.edge_name(e) for e in parallel) == ["Fast Road", "Slow Lane"]
    fast = next(e for e in parallel if graph.edge_name(e) == "Fast Road")
    slow = next(e for e in parallel if graph.edge_name(e) == "Slow Lane")
    assert graph.edge_length_m[fast] > graph.edge_length_m[slow]
    assert graph.edge_travel_time_s[fast] < graph.edge_travel_time_s[slow]

    assert graph.travel_time_matrix([a], [b])[0, 0] == pytest.approx(graph.edge_travel_time_s[fast])
    route = graph.route([a, b])
    assert route.edges == (fast,)
    assert (-8.609, 41.151) in [(round(x, 6), round(y, 6)) for x, y in route.coordinates]
    assert graph.edge_highway(fast) == "primary"
    assert graph.edges_adjacent(fast, slow)


def test_road_distance_along_one_street(ags: geo.RoadGraph) -> None:
    edge = int(np.argmax(ags.edge_length_m))
    lat, lon = _point_on_edge(ags, edge, 0.3)
    lat2, lon2 = _point_on_edge(ags, edge, 0.6)
    a, b = ags.snap_one(lat, lon), ags.snap_one(lat2, lon2)
    length = float(ags.edge_length_m[edge])
    assert ags.road_distance_m(a, b, limit_m=5000) == pytest.approx(0.3 * length, rel=0.02)
    assert ags.road_distance_m(a, b, limit_m=0.1 * length) == math.inf
    assert ags.road_distance_m(a, a, limit_m=1) == 0.0


def test_road_distance_matches_an_undirected_oracle(
    ags: geo.RoadGraph, ags_nx: nx.MultiDiGraph
) -> None:
    undirected = nx.Graph()
    for u, v, d in ags_nx.edges(data=True):
        if not undirected.has_edge(u, v) or undirected[u][v]["length"] > d["length"]:
            undirected.add_edge(u, v, length=d["length"])
    rng = np.random.default_rng(3)
    lo_lon, lo_lat, hi_lon, hi_lat = ags.bounds
    snapped = ags.snap(rng.uniform(lo_lat, hi_lat, 40), rng.uniform(lo_lon, hi_lon, 40))
    points = [snapped.point(i) for i in np.flatnonzero(snapped.ok)]
    for a, b in pairwise(points):
        got = ags.road_distance_m(a, b, limit_m=1e9)
        ua, va = int(ags.edge_u[a.edge]), int(ags.edge_v[a.edge])
        ub, vb = int(ags.edge_u[b.edge]), int(ags.edge_v[b.edge])
        la, lb = float(ags.edge_length_m[a.edge]), float(ags.edge_length_m[b.edge])
        want = math.inf
        for start, pre in ((ua, a.along_m), (va, la - a.along_m)):
            reach = nx.single_source_dijkstra_path_length(undirected, start, weight="length")
            for end, post in ((ub, b.along_m), (vb, lb - b.along_m)):
                want = min(want, pre + reach[end] + post)
        if a.edge == b.edge:
            want = min(want, abs(a.along_m - b.along_m))
        assert got == pytest.approx(want, rel=1e-9, abs=1e-6)
        bounded = ags.road_distance_m(a, b, limit_m=want * 0.99)
        assert bounded == math.inf or want == 0.0


def _point_on_edge(graph: geo.RoadGraph, edge: int, fraction: float) -> tuple[float, float]:
    line = graph.edge_coords(edge)
    seg = np.hypot(*np.diff(line, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    target = fraction * cum[-1]
    k = int(np.searchsorted(cum, target, side="right") - 1)
    t = (target - cum[k]) / seg[k]
    lon, lat = line[k] + t * (line[k + 1] - line[k])
    return float(lat), float(lon)


def test_big_matrix_in_worker_processes_equals_in_process(
    ags: geo.RoadGraph, ags_nx: nx.MultiDiGraph
) -> None:
    # Hundreds of origins go to worker processes; the numbers must not change.
    assert ags.cache_path is not None
    with np.load(ags.cache_path) as data:
        arrays = {name: data[name] for name in data.files}
    parallel = geo.RoadGraph(arrays, name="ags-parallel", matrix_processes=2)
    rng = np.random.default_rng(11)
    src = rng.integers(0, ags.node_count, 300)
    dst = rng.integers(0, ags.node_count, 200)
    # fewer destinations: searches on the reverse graph; more: on the forward graph
    got = parallel.travel_time_matrix(src, dst)
    np.testing.assert_array_equal(got, ags.travel_time_matrix(src, dst))
    np.testing.assert_array_equal(
        parallel.travel_time_matrix(dst, src), ags.travel_time_matrix(dst, src)
    )
    for i in (0, 150, 299):
        oracle = nx.single_source_dijkstra_path_length(ags_nx, int(src[i]), weight="travel_time")
        want = [oracle.get(d, math.inf) for d in dst.tolist()]
        np.testing.assert_allclose(got[i], want, rtol=1e-9, atol=1e-6)
    assert parallel._router._core._pool is not None  # the searches did run in workers
