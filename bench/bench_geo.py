"""Benchmark of the geo package on the Porto metro extract.

Run: ``uv run python bench/bench_geo.py [--osm data/osm/porto_portugal.osm.pbf]``.
Prints a table and writes ``bench/results/geo.json``. Measures a cold build into a temporary
cache, the cached load, snapping 10,000 points and travel-time matrices of 50x500 and
200x2,000, each matrix beside networkx (one ``single_source_dijkstra_path_length`` per
origin on the same multigraph) in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

import geo
from core.settings import GeoSettings

ROOT = Path(__file__).resolve().parents[1]


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _oracle(graph: geo.RoadGraph) -> nx.MultiDiGraph:
    g = nx.MultiDiGraph()
    g.add_nodes_from(range(graph.node_count))
    g.add_edges_from(
        (u, v, {"travel_time": t})
        for u, v, t in zip(
            graph.edge_u.tolist(),
            graph.edge_v.tolist(),
            graph.edge_travel_time_s.tolist(),
            strict=True,
        )
    )
    return g


def _nx_matrix(g: nx.MultiDiGraph, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    out = np.empty((len(src), len(dst)))
    for i, s in enumerate(src.tolist()):
        reach = nx.single_source_dijkstra_path_length(g, s, weight="travel_time")
        out[i] = [reach.get(d, math.inf) for d in dst.tolist()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--osm", type=Path, default=ROOT / "data/osm/porto_portugal.osm.pbf")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/geo.json")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, Any]] = []

    def row(what: str, seconds: float, nx_s: float | None = None, **extra: Any) -> None:
        rows.append(
            {
                "what": what,
                "seconds": round(seconds, 4),
                "networkx_seconds": None if nx_s is None else round(nx_s, 3),
                "speedup": None if nx_s is None else round(nx_s / seconds, 1),
                **extra,
            }
        )

    with tempfile.TemporaryDirectory(prefix="cityfix-bench-geo-") as tmp:
        settings = GeoSettings(cache_dir=Path(tmp))
        t0 = time.perf_counter()
        graph = geo.build_graph(args.osm, settings.cache_dir, settings)
        row("build (cold, empty cache)", time.perf_counter() - t0)
        load_s, graph = _best(
            lambda: geo.build_graph(args.osm, settings.cache_dir, settings), repeat=5
        )
        row("load (cache hit)", load_s)
        assert graph.cache_path is not None
        cache_mb = graph.cache_path.stat().st_size / 1e6

    lo_lon, lo_lat, hi_lon, hi_lat = graph.bounds
    lats = rng.uniform(lo_lat, hi_lat, 10_000)
    lons = rng.uniform(lo_lon, hi_lon, 10_000)
    t0 = time.perf_counter()
    snapped = graph.snap(lats, lons)
    row("snap 10,000 points (first call, builds indexes)", time.perf_counter() - t0)
    snap_s, snapped = _best(lambda: graph.snap(lats, lons), repeat=3)
    row("snap 10,000 points", snap_s, ok_share=round(float(snapped.ok.mean()), 3))

    oracle = _oracle(graph)
    t0 = time.perf_counter()
    graph.travel_time_matrix([0], [1])
    row("matrix set-up (first call, peels dead ends)", time.perf_counter() - t0)
    for n_src, n_dst in ((50, 500), (200, 2000)):
        src = rng.integers(0, graph.node_count, n_src)
        dst = rng.integers(0, graph.node_count, n_dst)
        ours_s, ours = _best(lambda s=src, d=dst: graph.travel_time_matrix(s, d), repeat=3)
        t0 = time.perf_counter()
        want = _nx_matrix(oracle, src, dst)
        nx_s = time.perf_counter() - t0
        finite = np.isfinite(want)
        assert np.array_equal(finite, np.isfinite(ours))
        err = float(np.max(np.abs(ours[finite] - want[finite]))) if finite.any() else 0.0
        row(f"matrix {n_src}x{n_dst:,}", ours_s, nx_s, max_abs_diff_s=err)

    report = {
        "extract": args.osm.name,
        "nodes": graph.node_count,
        "edges": graph.edge_count,
        "cache_mb": round(cache_mb, 1),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            # other work on the machine skews every timing; keep the evidence with them
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
        },
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{args.osm.name}: {graph.node_count:,} nodes, {graph.edge_count:,} edges, "
          f"cache {cache_mb:.1f} MB")  # fmt: skip
    print(f"{'what':<50} {'cityfix s':>10} {'networkx s':>11} {'speed-up':>9}")
    for r in rows:
        nx_col = "" if r["networkx_seconds"] is None else f"{r['networkx_seconds']:.2f}"
        up = "" if r["speedup"] is None else f"{r['speedup']:.0f}x"
        print(f"{r['what']:<50} {r['seconds']:>10.3f} {nx_col:>11} {up:>9}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
