"""Shared fixtures: the aguascalientes graph (built once per session into a temp cache),
the engine run in-process, and places on the map found from the graph itself."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import geo
from core.clock import Clock
from core.settings import GeoSettings, Settings, StreamsSettings
from streams.dedup import Grid
from streams.engine import Inline
from streams.roads import GeoRoads
from tests import factories

DATA = Path(__file__).resolve().parents[3] / "data" / "osm"
T0 = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def geo_settings(tmp_path_factory: pytest.TempPathFactory) -> GeoSettings:
    return GeoSettings(
        city="aguascalientes", osm_dir=DATA, cache_dir=tmp_path_factory.mktemp("geo-cache")
    )


@pytest.fixture(scope="session")
def ags(geo_settings: GeoSettings) -> geo.RoadGraph:
    return geo.load_city(geo_settings)


@pytest.fixture(scope="session")
def roads(ags: geo.RoadGraph, geo_settings: GeoSettings) -> GeoRoads:
    return GeoRoads(ags, geo_settings.poi_radius_m)


@pytest.fixture(scope="session")
def streams_settings() -> StreamsSettings:
    return StreamsSettings()


@pytest.fixture
def inline(roads: GeoRoads, streams_settings: StreamsSettings) -> Inline:
    return Inline(streams_settings, roads, Clock())


# -- places on the map ---------------------------------------------------------------------


def point_along(
    ags: geo.RoadGraph, edge: int, along_m: float, side_m: float = 0.0
) -> tuple[float, float]:
    """(lat, lon) ``along_m`` metres along an edge, ``side_m`` to its left (metres)."""
    coords = ags.edge_coords(edge)  # (lon, lat)
    k = math.cos(math.radians(float(coords[0, 1])))
    xy = np.column_stack([coords[:, 0] * 111_320.0 * k, coords[:, 1] * 110_540.0])
    seg = np.diff(xy, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    scale = float(ags.edge_length_m[edge]) / max(float(seg_len.sum()), 1e-9)
    target = along_m / scale
    acc = 0.0
    for i, length in enumerate(seg_len):
        if acc + length >= target or i == len(seg_len) - 1:
            f = 0.0 if length == 0 else min(1.0, max(0.0, (target - acc) / length))
            x, y = xy[i] + f * seg[i]
            ux, uy = seg[i] / max(length, 1e-9)
            x, y = x - uy * side_m, y + ux * side_m
            return float(y / 110_540.0), float(x / (111_320.0 * k))
        acc += float(length)
    raise AssertionError("unreachable")


def bearing(ags: geo.RoadGraph, edge: int) -> float:
    c = ags.edge_coords(edge)
    k = math.cos(math.radians(float(c[0, 1])))
    dx, dy = (c[-1, 0] - c[0, 0]) * k, c[-1, 1] - c[0, 1]
    return math.degrees(math.atan2(dy, dx)) % 180.0


def snaps_to(ags: geo.RoadGraph, lat: float, lon: float, edge: int) -> bool:
    s = ags.snap([lat], [lon])
    if not s.ok[0]:
        return False
    got = int(s.edge[0])
    return got == edge or got == int(ags.edge_twin[edge])


def fault_sites(ags: geo.RoadGraph, n: int, min_gap_m: float) -> list[tuple[int, float]]:
    """``n`` (edge, along_m) places on roads, pairwise more than ``min_gap_m`` apart."""
    chosen: list[tuple[int, float, tuple[float, float]]] = []
    for e in sorted(range(ags.edge_count), key=lambda e: (-float(ags.edge_length_m[e]), e)):
        length = float(ags.edge_length_m[e])
        if length < 40.0:
            break
        if 0 <= int(ags.edge_twin[e]) < e:
            continue
        for along in [length / 2] if length < 200 else [length / 4, length / 2, 3 * length / 4]:
            p = point_along(ags, e, along)
            if snaps_to(ags, *p, e) and all(_metres(p, q) > min_gap_m for _, _, q in chosen):
                chosen.append((e, along, p))
            if len(chosen) == n:
                return [(e, a) for e, a, _ in chosen]
    raise AssertionError(f"only {len(chosen)} places {min_gap_m} m apart")


@dataclass(frozen=True)
class Parallel:
    """Two parallel streets, close in a straight line but far apart along the road."""

    edge_a: int
    edge_b: int
    a: tuple[float, float]
    b: tuple[float, float]
    gap_m: float


@pytest.fixture(scope="session")
def parallel(ags: geo.RoadGraph, roads: GeoRoads) -> Parallel:
    """Midpoints of two parallel streets 20-60 m apart, more than 100 m apart by road."""
    long_edges = [e for e in range(ags.edge_count) if ags.edge_length_m[e] >= 60.0]
    mids = {e: point_along(ags, e, float(ags.edge_length_m[e]) / 2) for e in long_edges}
    bearings = {e: bearing(ags, e) for e in long_edges}
    best: Parallel | None = None
    for i, ea in enumerate(long_edges):
        for eb in long_edges[i + 1 :]:
            if eb == int(ags.edge_twin[ea]) or ags.edges_adjacent(ea, eb):
                continue
            diff = abs(bearings[ea] - bearings[eb]) % 180.0
            if min(diff, 180.0 - diff) > 10.0 or _metres(mids[ea], mids[eb]) > 150.0:
                continue
            pa = mids[ea]
            pb = _across(ags, eb, pa)
            if pb is None:
                continue
            gap = _metres(pa, pb)
            if not 20.0 <= gap <= 60.0:
                continue
            if not (snaps_to(ags, *pa, ea) and snaps_to(ags, *pb, eb)):
                continue
            sa, sb = ags.snap_one(*pa), ags.snap_one(*pb)
            if ags.road_distance_m(sa, sb, 100.0) <= 100.0:
                continue
            if best is None or gap < best.gap_m:
                best = Parallel(ea, eb, pa, pb, gap)
    assert best is not None, "no parallel streets 20-60 m apart in the test city"
    return best


def _across(ags: geo.RoadGraph, eb: int, pa: tuple[float, float]) -> tuple[float, float] | None:
    """The point of edge ``eb`` nearest to ``pa`` (not at its ends)."""
    length = float(ags.edge_length_m[eb])
    best = None
    for along in np.linspace(10.0, length - 10.0, 60):
        p = point_along(ags, eb, float(along))
        d = _metres(pa, p)
        if best is None or d < best[0]:
            best = (d, p, along)
    if best is None or best[2] in (10.0, length - 10.0):
        return None
    return best[1]


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    k = math.cos(math.radians(a[0]))
    return math.hypot((a[1] - b[1]) * 111_320.0 * k, (a[0] - b[0]) * 110_540.0)


@dataclass(frozen=True)
class Border:
    """Two points 1 m apart on one road, in different dedup cells."""

    edge: int
    a: tuple[float, float]
    b: tuple[float, float]


@pytest.fixture(scope="session")
def border(ags: geo.RoadGraph, roads: GeoRoads, streams_settings: StreamsSettings) -> Border:
    grid = Grid(streams_settings.cell_size_m, roads.ref_lat)
    for e in range(ags.edge_count):
        length = float(ags.edge_length_m[e])
        if length < 60.0:
            continue
        prev = None
        for along in np.arange(15.0, length - 15.0, 0.5):
            p = point_along(ags, e, float(along))
            s = roads.snap_many([p[0]], [p[1]])[0]
            cell = grid.cell_of(s.snap_lat, s.snap_lon)
            if (
                prev is not None
                and cell != prev[1]
                and snaps_to(ags, *prev[0], e)
                and snaps_to(ags, *p, e)
            ):
                a = point_along(ags, e, float(along) - 0.5)
                b = point_along(ags, e, float(along) + 0.5)
                return Border(e, a, b)
            prev = (p, cell)
    raise AssertionError("no road crosses a cell border")


@pytest.fixture(scope="session")
def sites(ags: geo.RoadGraph) -> list[tuple[int, float]]:
    """Ten (edge, along_m) places on long roads, pairwise more than 200 m apart."""
    chosen: list[tuple[int, float, tuple[float, float]]] = []
    for e in sorted(range(ags.edge_count), key=lambda e: -float(ags.edge_length_m[e])):
        mid = float(ags.edge_length_m[e]) / 2
        p = point_along(ags, e, mid)
        if not snaps_to(ags, *p, e):
            continue
        if all(_metres(p, q) > 200.0 for _, _, q in chosen):
            chosen.append((e, mid, p))
        if len(chosen) == 10:
            break
    assert len(chosen) == 10
    return [(e, a) for e, a, _ in chosen]


# -- messages ------------------------------------------------------------------------------


def report_raw(
    lat: float, lon: float, *, at: datetime | None = None, **over: object
) -> tuple[str, bytes]:
    doc = factories.report(lat=lat, lon=lon, reported_at=(at or T0).isoformat(), **over)
    doc.setdefault("client_id", "app-" + doc["report_id"][:8])
    return "report", json.dumps(doc).encode()


def alert_raw(
    lat: float, lon: float, *, at: datetime | None = None, **over: object
) -> tuple[str, bytes]:
    doc = factories.alert(lat=lat, lon=lon, observed_at=(at or T0).isoformat(), **over)
    return "alert", json.dumps(doc).encode()


def ids_of(raws: list[tuple[str, bytes]]) -> list[str]:
    out = []
    for _, payload in raws:
        doc = json.loads(payload)
        out.append(doc.get("report_id") or doc["alert_id"])
    return out


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- the Faust agents, driven without Kafka (test_agents, test_aging) --------------------


class RecordingSink:
    """Collects what the agents would send to Kafka and MQTT."""

    def __init__(self) -> None:
        self.incidents = []
        self.routes = []
        self.statuses = []
        self.dead = []
        self.changelogs = []

    async def incident(self, inc, encoded=None) -> None:
        self.incidents.append(inc)

    async def route(self, key, msg):
        self.routes.append((key, msg))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def dead_letter(self, source, payload, rejected) -> None:
        self.dead.append(rejected)

    def status(self, status) -> None:
        self.statuses.append(status)

    async def changelog(self, topic, key, value, partition) -> None:
        self.changelogs.append((topic, key, partition))


@pytest.fixture(scope="module")
def agents(geo_settings, tmp_path_factory):
    from streams import app as streams_app

    base = Settings()
    settings = base.model_copy(
        update={
            "geo": geo_settings,
            "streams": base.streams.model_copy(
                update={"store": "memory://", "data_dir": tmp_path_factory.mktemp("streams")}
            ),
        }
    )
    streams_app.configure(settings)
    from streams import agents

    return agents


@pytest.fixture
def sink(agents, monkeypatch) -> RecordingSink:
    rec = RecordingSink()
    monkeypatch.setattr(agents, "sink", rec)
    return rec


class _Message:
    """What the overlay needs of a Kafka message: its partition."""

    def __init__(self, partition: int) -> None:
        self.partition = partition


class Event:
    """What the overlay needs of a Faust event: key, value and the message's partition."""

    def __init__(self, key: str, value: bytes, partition: int) -> None:
        self.key, self.value, self.message = key.encode(), value, _Message(partition)
