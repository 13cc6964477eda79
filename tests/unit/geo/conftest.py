"""Shared fixtures: the aguascalientes graph, built once per session into a temp cache."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

import geo
from core.settings import GeoSettings

DATA = Path(__file__).resolve().parents[3] / "data" / "osm"


@pytest.fixture(scope="session")
def geo_settings(tmp_path_factory: pytest.TempPathFactory) -> GeoSettings:
    return GeoSettings(
        city="aguascalientes",
        osm_dir=DATA,
        cache_dir=tmp_path_factory.mktemp("geo-cache"),
    )


@pytest.fixture(scope="session")
def ags(geo_settings: GeoSettings) -> geo.RoadGraph:
    return geo.load_city(geo_settings)


@pytest.fixture(scope="session")
def ags_nx(ags: geo.RoadGraph) -> nx.MultiDiGraph:
    """The oracle: the same edges as a networkx multigraph, parallel edges and all."""
    g = nx.MultiDiGraph()
    g.add_nodes_from(range(ags.node_count))
    for e, (u, v) in enumerate(zip(ags.edge_u.tolist(), ags.edge_v.tolist(), strict=True)):
        g.add_edge(
            u,
            v,
            key=e,
            travel_time=float(ags.edge_travel_time_s[e]),
            length=float(ags.edge_length_m[e]),
        )
    return g
