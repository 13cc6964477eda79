"""Building the road graph from an OSM extract, and caching it.

Stages (each logged with its duration):

1. **filter** - pyosmium keeps the drivable ways (``geo._osm.is_drivable``) and their nodes
   and writes them to a small OSM XML file;
2. **graph** - osmnx builds the graph from that file (``graph_from_xml``, no network), keeps
   the largest strongly connected component, then simplifies it without merging ways of a
   different highway class, name or ``maxspeed`` (so every edge has one of each);
3. **arrays** - nodes (sorted by OSM id, numbered 0..N-1) and edges (sorted by their end
   nodes) become flat numpy arrays; edge geometries are stored as flat coordinates plus
   offsets, in WGS84 and in a local UTM projection; speeds come from ``geo.speeds``;
4. **service area** - the concave hull of the road geometry, buffered by ``service_area_buffer_m``;
5. **context** - districts and points of interest (``geo.context``).

The result is written to ``{cache_dir}/{sha256 of the extract}/graph-v{FORMAT}-{config}.npz``,
where ``config`` hashes the speed table and the geo settings that shape the arrays. The
same extract and settings always give a byte-identical file. The cache is a derivative of
OpenStreetMap data (ODbL 1.0, "© OpenStreetMap contributors").
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
from numpy.typing import NDArray
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from core.errors import ConfigError, GeoError
from core.settings import GeoSettings
from geo import _osm, context
from geo._cache import memo_key, read_npz, sha256_of, write_npz
from geo.graph import RoadGraph
from geo.speeds import SpeedTable

_log = logging.getLogger(__name__)

FORMAT = 1
OSM_SUFFIXES = (".osm.pbf", ".osm.bz2", ".osm")
ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0"
#: Concavity of the service-area hull (shapely ``concave_hull`` ratio: 0 = tight, 1 = convex).
HULL_RATIO = 0.2
#: The hull is simplified to this tolerance (m) before buffering; it only decides in/out.
_HULL_SIMPLIFY_M = 20.0

_memo: dict[tuple[Any, ...], RoadGraph] = {}
_memo_lock = threading.Lock()


@contextmanager
def _stage(name: str, **extra: object) -> Iterator[None]:
    _log.info("geo build: %s ...", name, extra=dict(extra))
    t0 = time.perf_counter()
    yield
    _log.info("geo build: %s done in %.2f s", name, time.perf_counter() - t0, extra=dict(extra))


def _configure_osmnx() -> Any:
    import osmnx as ox  # heavy; only needed when building

    # graph_from_xml only reads the file; pointing the web endpoints at a closed local port
    # makes any accidental network call fail at once instead of reaching the internet.
    ox.settings.use_cache = False
    ox.settings.overpass_url = "http://127.0.0.1:9/api"
    ox.settings.nominatim_url = "http://127.0.0.1:9/"
    ox.settings.log_file = False
    ox.settings.log_console = False
    return ox


def city_path(settings: GeoSettings, name: str | None = None) -> Path:
    """The extract of city ``name`` (default ``settings.city``) in ``settings.osm_dir``."""
    city = name or settings.city
    for suffix in OSM_SUFFIXES:
        candidate = settings.osm_dir / f"{city}{suffix}"
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no OSM extract for city {city!r} in {settings.osm_dir} "
        f"(looked for {', '.join(city + s for s in OSM_SUFFIXES)})"
    )


def _config_key(settings: GeoSettings, speeds: SpeedTable) -> str:
    doc = {
        "format": FORMAT,
        "speeds": speeds.fingerprint(),
        "service_area_buffer_m": settings.service_area_buffer_m,
        "district_grid_m": settings.district_grid_m,
        "hull_ratio": HULL_RATIO,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(osm_path: Path, cache_dir: Path, settings: GeoSettings, speeds: SpeedTable) -> Path:
    """Where the graph of ``osm_path`` built with these settings is cached."""
    sha = sha256_of(osm_path)
    return cache_dir / sha / f"graph-v{FORMAT}-{_config_key(settings, speeds)}.npz"


def load_city(
    settings: GeoSettings, name: str | None = None, *, speeds: SpeedTable | None = None
) -> RoadGraph:
    """The road graph of city ``name`` (default ``settings.city``): cached, else built.

    The extract is ``{settings.osm_dir}/{name}.osm.pbf`` (or ``.osm.bz2``, ``.osm``), the
    cache ``settings.cache_dir``. Graphs are also memoised per process, keyed by the file's
    path, size and modification time, so repeated calls are free.
    """
    osm_path = city_path(settings, name)
    table = speeds or SpeedTable()
    key = (
        *memo_key(osm_path, settings.cache_dir),
        _config_key(settings, table),
        settings.matrix_processes,
    )
    with _memo_lock:
        graph = _memo.get(key)
        if graph is None:
            graph = build_graph(
                osm_path, settings.cache_dir, settings, name=name or settings.city, speeds=table
            )
            _memo[key] = graph
    return graph


def build_graph(
    osm_path: Path,
    cache_dir: Path,
    settings: GeoSettings,
    *,
    name: str | None = None,
    speeds: SpeedTable | None = None,
    force: bool = False,
) -> RoadGraph:
    """The road graph of the extract ``osm_path``, from ``cache_dir`` when already built.

    ``name`` labels the graph (default: the file name without its OSM suffix); ``speeds``
    overrides the default speed table; ``force`` rebuilds even when cached.
    """
    if not osm_path.is_file():
        raise ConfigError(f"OSM extract not found: {osm_path}")
    label = name or _stem(osm_path)
    table = speeds or SpeedTable()
    path = cache_path(osm_path, cache_dir, settings, table)
    if path.exists() and not force:
        t0 = time.perf_counter()
        try:
            graph = RoadGraph(
                read_npz(path),
                name=label,
                cache_path=path,
                matrix_processes=settings.matrix_processes,
            )
        except (OSError, ValueError, KeyError) as exc:
            _log.warning(
                "geo cache unreadable, rebuilding", extra={"path": str(path), "err": str(exc)}
            )
        else:
            _log.info(
                "geo cache hit: %s (%d nodes, %d edges) in %.3f s",
                label, graph.node_count, graph.edge_count, time.perf_counter() - t0,
                extra={"path": str(path)},
            )  # fmt: skip
            return graph
    t0 = time.perf_counter()
    arrays = build_arrays(osm_path, settings, table)
    with _stage("write cache", path=str(path)):
        write_npz(path, arrays)
    graph = RoadGraph(
        arrays, name=label, cache_path=path, matrix_processes=settings.matrix_processes
    )
    _log.info(
        "geo build: %s ready, %d nodes, %d edges, %.1f s",
        label, graph.node_count, graph.edge_count, time.perf_counter() - t0,
    )  # fmt: skip
    return graph


def _stem(path: Path) -> str:
    for suffix in OSM_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def _first(value: object) -> object:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " / ".join(dict.fromkeys(str(v) for v in value))
    return str(value)


def _utm_crs(lon: float, lat: float) -> pyproj.CRS:
    infos = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat)
    )
    if not infos:
        raise GeoError(f"no UTM zone for lon={lon} lat={lat}")
    return pyproj.CRS.from_epsg(int(infos[0].code))


def _vocab(values: list[str]) -> tuple[NDArray[np.int32], NDArray[np.str_]]:
    vocab = sorted(set(values))
    index = {v: i for i, v in enumerate(vocab)}
    codes = np.fromiter((index[v] for v in values), dtype=np.int32, count=len(values))
    return codes, np.array(vocab, dtype=np.str_) if vocab else np.zeros(0, dtype="<U1")


def build_arrays(
    osm_path: Path, settings: GeoSettings, speeds: SpeedTable
) -> dict[str, NDArray[Any]]:
    """Every array of the cached graph of ``osm_path`` (see the module docstring)."""
    ox = _configure_osmnx()
    sha = sha256_of(osm_path)
    with tempfile.TemporaryDirectory(prefix="cityfix-geo-") as tmp:
        xml = Path(tmp) / "drive.osm"
        with _stage("filter drivable ways", src=osm_path.name):
            n_nodes, n_ways = _osm.write_drivable_xml(osm_path, xml)
            _log.info("geo build: %d nodes, %d drivable ways", n_nodes, n_ways)
        if n_ways == 0:
            raise GeoError(f"{osm_path} has no drivable roads")
        with _stage("graph (osmnx)"):
            G = ox.graph_from_xml(xml, simplify=False, retain_all=True)
            G = ox.truncate.largest_component(G, strongly=True)
            G = ox.simplify_graph(G, edge_attrs_differ=["highway", "name", "maxspeed"])
    if G.number_of_nodes() < 2:
        raise GeoError(f"{osm_path} gives an empty road graph")

    with _stage("arrays"):
        arrays = _graph_arrays(G, speeds)
    lon0 = float((arrays["node_lon"].min() + arrays["node_lon"].max()) / 2)
    lat0 = float((arrays["node_lat"].min() + arrays["node_lat"].max()) / 2)
    crs = _utm_crs(lon0, lat0)
    fwd = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    arrays["node_x"], arrays["node_y"] = fwd.transform(arrays["node_lon"], arrays["node_lat"])
    arrays["geom_x"], arrays["geom_y"] = fwd.transform(arrays["geom_lon"], arrays["geom_lat"])

    with _stage("service area"):
        hull = shapely.concave_hull(
            shapely.multipoints(np.column_stack([arrays["geom_x"], arrays["geom_y"]])),
            ratio=HULL_RATIO,
        )
        area = hull.simplify(_HULL_SIMPLIFY_M).buffer(settings.service_area_buffer_m)
        area = shapely.set_precision(area, 0.01)
        arrays["service_area_wkb"] = np.frombuffer(shapely.to_wkb(area), dtype=np.uint8)

    with _stage("context (districts, points of interest)"):
        arrays.update(context.build_context_arrays(osm_path, area, fwd, settings))

    meta = {
        "format": FORMAT,
        "source": osm_path.name,
        "sha256": sha,
        "crs_epsg": crs.to_epsg(),
        "attribution": ATTRIBUTION,
        "speeds": speeds.fingerprint(),
        "service_area_buffer_m": settings.service_area_buffer_m,
        "district_grid_m": settings.district_grid_m,
    }
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def _graph_arrays(G: Any, speeds: SpeedTable) -> dict[str, NDArray[Any]]:
    osmids = np.array(sorted(int(n) for n in G.nodes), dtype=np.int64)
    index = {int(n): i for i, n in enumerate(osmids)}
    node_lon = np.array([G.nodes[int(n)]["x"] for n in osmids], dtype=np.float64)
    node_lat = np.array([G.nodes[int(n)]["y"] for n in osmids], dtype=np.float64)

    rows = sorted(
        ((index[int(u)], index[int(v)], int(k), d) for u, v, k, d in G.edges(keys=True, data=True)),
        key=lambda r: (r[0], r[1], r[2]),
    )
    n_edges = len(rows)
    edge_u = np.empty(n_edges, dtype=np.int32)
    edge_v = np.empty(n_edges, dtype=np.int32)
    length = np.empty(n_edges, dtype=np.float64)
    speed = np.empty(n_edges, dtype=np.float64)
    way_id = np.empty(n_edges, dtype=np.int64)
    highways: list[str] = []
    names: list[str] = []
    offsets = np.zeros(n_edges + 1, dtype=np.int64)
    lon_parts: list[NDArray[np.float64]] = []
    lat_parts: list[NDArray[np.float64]] = []
    for i, (u, v, _k, data) in enumerate(rows):
        edge_u[i], edge_v[i] = u, v
        length[i] = float(data["length"])
        highway = data.get("highway")
        speed[i] = speeds.speed_kph(highway, data.get("maxspeed"))
        highways.append(_text(_first(highway)))
        names.append(_text(data.get("name")))
        first_way = _first(data.get("osmid"))
        way_id[i] = int(first_way) if isinstance(first_way, (int, str)) else -1
        geom = data.get("geometry")
        if geom is not None:
            coords = np.asarray(geom.coords, dtype=np.float64)
        else:
            coords = np.array([[node_lon[u], node_lat[u]], [node_lon[v], node_lat[v]]])
        lon_parts.append(coords[:, 0])
        lat_parts.append(coords[:, 1])
        offsets[i + 1] = offsets[i] + len(coords)
    highway_code, highway_vocab = _vocab(highways)
    name_code, name_vocab = _vocab(names)
    return {
        "node_osmid": osmids,
        "node_lon": node_lon,
        "node_lat": node_lat,
        "edge_u": edge_u,
        "edge_v": edge_v,
        "edge_length_m": length,
        "edge_speed_kph": speed,
        "edge_travel_time_s": length / (speed / 3.6),
        "edge_way_osmid": way_id,
        "edge_highway": highway_code,
        "highway_vocab": highway_vocab,
        "edge_name": name_code,
        "name_vocab": name_vocab,
        "edge_twin": _twins(edge_u, edge_v, offsets, lon_parts, lat_parts),
        "geom_offsets": offsets,
        "geom_lon": np.concatenate(lon_parts),
        "geom_lat": np.concatenate(lat_parts),
    }


def _twins(
    edge_u: NDArray[np.int32],
    edge_v: NDArray[np.int32],
    offsets: NDArray[np.int64],
    lon_parts: list[NDArray[np.float64]],
    lat_parts: list[NDArray[np.float64]],
) -> NDArray[np.int32]:
    """For each edge, the edge running the other way along the same geometry (or -1)."""
    seen: dict[tuple[int, int, bytes], int] = {}
    twin = np.full(len(edge_u), -1, dtype=np.int32)
    for i in range(len(edge_u)):
        coords = np.column_stack([lon_parts[i], lat_parts[i]])
        u, v = int(edge_u[i]), int(edge_v[i])
        if u == v:
            continue
        canon = coords if u < v else coords[::-1]
        key = (min(u, v), max(u, v), np.round(canon, 7).tobytes())
        j = seen.get(key)
        if j is not None and twin[j] == -1 and int(edge_u[j]) == v:
            twin[i], twin[j] = j, i
        else:
            seen.setdefault(key, i)
    return twin
