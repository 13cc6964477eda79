from __future__ import annotations

import time
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import geo
from core.errors import ConfigError
from core.settings import GeoSettings
from geo._cache import read_npz

from .conftest import DATA


def test_graph_is_the_strongly_connected_drive_network(
    ags: geo.RoadGraph, ags_nx: nx.MultiDiGraph
) -> None:
    assert 600 < ags.node_count < 800
    assert 1200 < ags.edge_count < 1600
    assert nx.is_strongly_connected(ags_nx)
    min_lon, min_lat, max_lon, max_lat = ags.bounds
    assert -102.29 < min_lon < max_lon < -102.25
    assert 21.85 < min_lat < max_lat < 21.88
    highways = {ags.edge_highway(e) for e in range(ags.edge_count)}
    assert {"primary", "secondary", "residential"} <= highways
    assert not highways & {"footway", "service", "path", "cycleway"}
    assert np.all(ags.edge_length_m >= 0)
    assert np.all(ags.edge_travel_time_s >= 0)
    assert ags.meta["attribution"] == "© OpenStreetMap contributors, ODbL 1.0"
    assert len(set(ags.node_osmid.tolist())) == ags.node_count


def test_edge_geometry_runs_from_start_node_to_end_node(ags: geo.RoadGraph) -> None:
    for e in range(0, ags.edge_count, 7):
        line = ags.edge_coords(e)
        u, v = int(ags.edge_u[e]), int(ags.edge_v[e])
        assert line[0] == pytest.approx([ags.node_lon[u], ags.node_lat[u]])
        assert line[-1] == pytest.approx([ags.node_lon[v], ags.node_lat[v]])


def test_build_is_deterministic(geo_settings: GeoSettings, tmp_path: Path) -> None:
    osm = DATA / "aguascalientes.osm.pbf"
    first = geo.build_graph(osm, tmp_path / "a", geo_settings)
    second = geo.build_graph(osm, tmp_path / "b", geo_settings)
    assert first.cache_path is not None and second.cache_path is not None
    assert first.cache_path.parent.name == second.cache_path.parent.name == first.sha256
    assert first.cache_path.read_bytes() == second.cache_path.read_bytes()
    a, b = read_npz(first.cache_path), read_npz(second.cache_path)
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_second_build_is_a_fast_cache_hit(geo_settings: GeoSettings, ags: geo.RoadGraph) -> None:
    t0 = time.perf_counter()
    again = geo.build_graph(DATA / "aguascalientes.osm.pbf", geo_settings.cache_dir, geo_settings)
    assert time.perf_counter() - t0 < 1.0
    assert again.cache_path == ags.cache_path
    assert np.array_equal(again.edge_travel_time_s, ags.edge_travel_time_s)
    # load_city memoises per process
    assert geo.load_city(geo_settings) is geo.load_city(geo_settings)


def test_bz2_xml_and_pbf_give_the_same_graph(
    geo_settings: GeoSettings, ags: geo.RoadGraph, tmp_path: Path
) -> None:
    xml = geo.build_graph(DATA / "aguascalientes.osm.bz2", tmp_path, geo_settings)
    assert xml.sha256 != ags.sha256
    assert np.array_equal(xml.node_osmid, ags.node_osmid)
    assert np.array_equal(xml.edge_u, ags.edge_u)
    assert np.allclose(xml.edge_travel_time_s, ags.edge_travel_time_s)


def test_a_different_speed_table_is_a_different_cache_entry(
    geo_settings: GeoSettings, ags: geo.RoadGraph, tmp_path: Path
) -> None:
    slow = geo.SpeedTable(by_highway_kph={}, fallback_kph=10.0, use_maxspeed=False)
    crawl = geo.build_graph(DATA / "aguascalientes.osm.pbf", tmp_path, geo_settings, speeds=slow)
    assert crawl.cache_path != ags.cache_path
    assert np.allclose(crawl.edge_travel_time_s, crawl.edge_length_m / (10 / 3.6))


def test_unknown_city_is_a_config_error(geo_settings: GeoSettings) -> None:
    with pytest.raises(ConfigError, match="atlantis"):
        geo.load_city(geo_settings, "atlantis")
