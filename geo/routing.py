"""Travel times, road distances and routes on the road graph.

The engine is ``scipy.sparse.csgraph.dijkstra`` on a CSR matrix with one entry per
directed node pair: where parallel edges join the same two nodes, only the fastest is kept
(and remembered, so a route's geometry follows the edge actually driven).

A travel-time matrix runs one Dijkstra per unique origin (or, when there are fewer
destinations, per unique destination on the reversed graph), but on the graph's *core*:
cul-de-sacs and the dead-end trees behind them (a fifth of a city's nodes) can only be
entered and left through one node, their root, so they are peeled off once and their
times added around the core result (``_CoreGraph``). Pairs inside one tree use the
tree path. The result is exact; it only saves the heap work on the peeled nodes.

A big matrix (hundreds of origins: a cold dispatch plan) spreads its searches over
``processes`` worker processes, forked once per graph and kept (only by a main process
with no other thread; elsewhere the searches stay in-process); each search is the same
``dijkstra`` call, so the numbers are the same as in-process. Dijkstra from each origin is
already what a one-to-many query costs on a graph this size (igraph and networkit are no
faster per search here), and the contraction-hierarchy libraries on PyPI round weights to
integers, so they are not exact; using the machine's cores is what is left.

Road distance (for deduplication) treats every road as two-way and walks from both ends
of the first point's edge, with a bounded Dijkstra that stops at ``limit_m``; it is cheap
because a few hundred metres of road reach only a handful of nodes.
"""

from __future__ import annotations

import heapq
import math
import multiprocessing
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.csgraph import dijkstra

from core.errors import NoRoute

# csgraph drops explicit zeros as "no edge"; a zero-length edge must stay an edge.
_MIN_WEIGHT = 1e-9
# Rows of the full distance matrix computed at once (bounds memory on big graphs).
_CHUNK = 64
# Fewer origins than this are searched in-process: a worker round trip would cost more.
_PARALLEL_MIN_ORIGINS = 2 * _CHUNK


@dataclass(frozen=True)
class Route:
    """A drive through a sequence of stops.

    ``coordinates`` is the path as (lon, lat) pairs; ``leg_*`` hold one value per pair of
    consecutive stops; ``nodes`` are the stops, ``edges`` every edge driven, in order.
    """

    nodes: tuple[int, ...]
    edges: tuple[int, ...]
    coordinates: list[tuple[float, float]]
    leg_travel_time_s: list[float]
    leg_distance_m: list[float]
    leg_edge_counts: list[int] = field(repr=False)

    @property
    def travel_time_s(self) -> float:
        """Total driving time, seconds."""
        return float(sum(self.leg_travel_time_s))

    @property
    def distance_m(self) -> float:
        """Total driven distance, metres."""
        return float(sum(self.leg_distance_m))

    @property
    def arrival_s(self) -> list[float]:
        """Seconds from departure to each stop (0 for the first), driving time only."""
        return [0.0, *np.cumsum(self.leg_travel_time_s).tolist()]

    def geojson(self) -> dict[str, Any]:
        """The path as a GeoJSON LineString geometry (lon, lat)."""
        coords = [[lon, lat] for lon, lat in self.coordinates]
        if len(coords) == 1:  # a LineString needs two positions
            coords.append(list(coords[0]))
        return {"type": "LineString", "coordinates": coords}


class Router:
    """Shortest paths over one graph (node indices 0..N-1, edge indices 0..E-1)."""

    def __init__(
        self,
        *,
        node_count: int,
        edge_u: NDArray[np.int32],
        edge_v: NDArray[np.int32],
        edge_time_s: NDArray[np.float64],
        edge_length_m: NDArray[np.float64],
        geom_offsets: NDArray[np.int64],
        geom_lon: NDArray[np.float64],
        geom_lat: NDArray[np.float64],
        edge_twin: NDArray[np.int32],
        processes: int = 1,
    ) -> None:
        self._n = node_count
        self._processes = max(1, processes)
        self._u = edge_u
        self._v = edge_v
        self._time = edge_time_s
        self._length = edge_length_m
        self._offsets = geom_offsets
        self._lon = geom_lon
        self._lat = geom_lat
        self._twin = edge_twin
        # Fastest edge per (u, v): sort by u, v, time, keep the first of each pair.
        order = np.lexsort((np.arange(len(edge_u)), edge_time_s, edge_v, edge_u))
        u, v = edge_u[order], edge_v[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
        kept = order[first]
        self._csr_edge = kept
        self._csr = sp.csr_array(
            (np.maximum(edge_time_s[kept], _MIN_WEIGHT), (edge_u[kept], edge_v[kept])),
            shape=(node_count, node_count),
        )
        self._csr.sort_indices()
        # csr_array built from COO sorts by (row, col) as ``kept`` is: entry k is kept[k].
        self._undirected: tuple[list[int], list[int], list[float]] | None = None

    @property
    def csr(self) -> sp.csr_array:
        """The travel-time graph: one entry (the fastest edge's seconds) per node pair."""
        return self._csr

    def fastest_edge(self, u: int, v: int) -> int:
        """The fastest edge from node ``u`` to node ``v`` (``KeyError`` if none)."""
        start, stop = int(self._csr.indptr[u]), int(self._csr.indptr[u + 1])
        cols = self._csr.indices[start:stop]
        hit = np.flatnonzero(cols == v)
        if not len(hit):
            raise KeyError((u, v))
        return int(self._csr_edge[start + int(hit[0])])

    def travel_time_matrix(self, src_nodes: ArrayLike, dst_nodes: ArrayLike) -> NDArray[np.float64]:
        """Seconds from each source node to each destination node (``inf`` if unreachable)."""
        src = np.asarray(src_nodes, dtype=np.int64).ravel()
        dst = np.asarray(dst_nodes, dtype=np.int64).ravel()
        for name, arr in (("src_nodes", src), ("dst_nodes", dst)):
            if len(arr) and (arr.min() < 0 or arr.max() >= self._n):
                raise ValueError(f"{name} must be node indices in 0..{self._n - 1}")
        if not len(src) or not len(dst):
            return np.zeros((len(src), len(dst)))
        usrc, src_inv = np.unique(src, return_inverse=True)
        udst, dst_inv = np.unique(dst, return_inverse=True)
        core = self._core
        block = core.matrix(usrc, udst)
        return np.ascontiguousarray(block[np.ix_(src_inv, dst_inv)])

    @cached_property
    def _core(self) -> _CoreGraph:
        return _CoreGraph(self._csr, self._processes)

    def path_edges(self, a: int, b: int) -> list[int]:
        """Edges of the fastest path from node ``a`` to node ``b`` (``NoRoute`` if none)."""
        if a == b:
            return []
        dist, pred = dijkstra(self._csr, directed=True, indices=a, return_predecessors=True)
        if not math.isfinite(dist[b]):
            raise NoRoute(f"no road from node {a} to node {b}")
        nodes = [b]
        while nodes[-1] != a:
            nodes.append(int(pred[nodes[-1]]))
        nodes.reverse()
        return [self.fastest_edge(p, q) for p, q in pairwise(nodes)]

    def edge_coords(self, edge: int) -> NDArray[np.float64]:
        """The (lon, lat) coordinates of one edge, from its start node to its end node."""
        a, b = int(self._offsets[edge]), int(self._offsets[edge + 1])
        return np.column_stack([self._lon[a:b], self._lat[a:b]])

    def route(self, nodes: Sequence[int]) -> Route:
        """The fastest drive visiting ``nodes`` in order (``NoRoute`` if a leg is impossible)."""
        stops = [int(n) for n in nodes]
        if not stops:
            raise ValueError("a route needs at least one stop")
        for n in stops:
            if not 0 <= n < self._n:
                raise ValueError(f"node {n} is not in 0..{self._n - 1}")
        edges: list[int] = []
        leg_time: list[float] = []
        leg_dist: list[float] = []
        leg_counts: list[int] = []
        coords: list[NDArray[np.float64]] = []
        for a, b in pairwise(stops):
            leg = self.path_edges(a, b)
            edges.extend(leg)
            leg_counts.append(len(leg))
            leg_time.append(float(self._time[leg].sum()) if leg else 0.0)
            leg_dist.append(float(self._length[leg].sum()) if leg else 0.0)
            for e in leg:
                part = self.edge_coords(e)
                coords.append(part if not coords else part[1:])
        if not coords:
            first = self.edge_coords(self._any_edge_at(stops[0]))
            at_start = int(self._u[self._any_edge_at(stops[0])]) == stops[0]
            coords.append(first[:1] if at_start else first[-1:])
        flat = np.concatenate(coords)
        return Route(
            nodes=tuple(stops),
            edges=tuple(edges),
            coordinates=[(float(x), float(y)) for x, y in flat],
            leg_travel_time_s=leg_time,
            leg_distance_m=leg_dist,
            leg_edge_counts=leg_counts,
        )

    def _any_edge_at(self, node: int) -> int:
        hits = np.flatnonzero(self._u == node)
        if not len(hits):
            hits = np.flatnonzero(self._v == node)
        return int(hits[0])

    def _undirected_lists(self) -> tuple[list[int], list[int], list[float]]:
        if self._undirected is None:
            rows = np.concatenate([self._u, self._v])
            cols = np.concatenate([self._v, self._u])
            vals = np.concatenate([self._length, self._length])
            order = np.lexsort((vals, cols, rows))
            rows, cols, vals = rows[order], cols[order], vals[order]
            keep = np.ones(len(rows), dtype=bool)
            keep[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
            indptr = np.searchsorted(rows, np.arange(self._n + 1))
            self._undirected = (indptr.tolist(), cols.tolist(), vals.tolist())
        return self._undirected

    def road_distance_m(
        self, edge_a: int, along_a: float, edge_b: int, along_b: float, limit_m: float
    ) -> float:
        """Metres along the road between two points on edges, ignoring one-way rules.

        Points are given by edge and distance from the edge's start. Returns ``inf`` when
        the distance exceeds ``limit_m``.
        """
        len_a, len_b = float(self._length[edge_a]), float(self._length[edge_b])
        best = math.inf
        if edge_b in (edge_a, int(self._twin[edge_a])):
            pos_b = along_b if edge_b == edge_a else len_b - along_b
            best = abs(along_a - pos_b)
        ua, va = int(self._u[edge_a]), int(self._v[edge_a])
        ub, vb = int(self._u[edge_b]), int(self._v[edge_b])
        targets = {ub: along_b, vb: len_b - along_b}
        if ub == vb:
            targets[ub] = min(along_b, len_b - along_b)
        indptr, cols, vals = self._undirected_lists()
        dist: dict[int, float] = {}
        heap = [(along_a, ua), (len_a - along_a, va)]
        heapq.heapify(heap)
        while heap:
            d, node = heapq.heappop(heap)
            if d >= best or d > limit_m:
                break
            if node in dist:
                continue
            dist[node] = d
            extra = targets.get(node)
            if extra is not None:
                best = min(best, d + extra)
            for k in range(indptr[node], indptr[node + 1]):
                nxt = cols[k]
                if nxt not in dist:
                    heapq.heappush(heap, (d + vals[k], nxt))
        return best if best <= limit_m else math.inf


class _CoreGraph:
    """The travel-time graph with its dead-end trees peeled off (see the module docstring).

    ``root[n]`` is the core node through which node ``n`` is reached (itself for core
    nodes), ``up[n]``/``down[n]`` the seconds from ``n`` to its root and back, and
    ``parent[n]`` the next node towards the root (-1 on the core).
    """

    def __init__(self, csr: sp.csr_array, processes: int = 1) -> None:
        n = csr.shape[0]
        indptr, indices, data = csr.indptr, csr.indices, csr.data
        pattern = sp.csr_array((np.ones(len(indices)), indices, indptr), shape=(n, n))
        sym = sp.csr_array(pattern + pattern.T)
        sym.setdiag(0)
        sym.eliminate_zeros()
        sym_ptr, sym_idx = sym.indptr, sym.indices
        degree = np.diff(sym_ptr).astype(np.int64)
        alive = np.ones(n, dtype=bool)
        parent = np.full(n, -1, dtype=np.int64)
        removed: list[int] = []
        queue = deque(np.flatnonzero(degree == 1).tolist())
        while queue:
            d = queue.popleft()
            if not alive[d] or degree[d] != 1:
                continue
            alive[d] = False
            removed.append(d)
            for p in sym_idx[sym_ptr[d] : sym_ptr[d + 1]].tolist():
                if alive[p]:
                    parent[d] = p
                    degree[p] -= 1
                    if degree[p] == 1:
                        queue.append(p)

        def weight(a: int, b: int) -> float:
            cols = indices[indptr[a] : indptr[a + 1]]
            hit = np.flatnonzero(cols == b)
            return float(data[indptr[a] + hit[0]]) if len(hit) else math.inf

        root = np.arange(n, dtype=np.int64)
        up = np.zeros(n)
        down = np.zeros(n)
        for d in reversed(removed):  # parents were removed later, or are on the core
            p = int(parent[d])
            root[d] = root[p]
            up[d] = weight(d, p) + up[p]
            down[d] = down[p] + weight(p, d)
        self.root, self.up, self.down, self.parent = root, up, down, parent
        core = np.flatnonzero(alive)
        self._pos = np.full(n, -1, dtype=np.int64)
        self._pos[core] = np.arange(len(core))
        sub = sp.csr_array(csr[core][:, core])
        sub.sort_indices()
        self._fwd = sub
        self._rev = sp.csr_array(sub.T)
        self.core_size = len(core)
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def matrix(self, src: NDArray[np.int64], dst: NDArray[np.int64]) -> NDArray[np.float64]:
        """Seconds from each of the unique nodes ``src`` to each of the unique ``dst``."""
        src_root, dst_root = self.root[src], self.root[dst]
        uroot_src, src_at = np.unique(src_root, return_inverse=True)
        uroot_dst, dst_at = np.unique(dst_root, return_inverse=True)
        if len(uroot_dst) < len(uroot_src):
            between = self._rows(True, self._pos[uroot_dst], self._pos[uroot_src]).T
        else:
            between = self._rows(False, self._pos[uroot_src], self._pos[uroot_dst])
        with np.errstate(invalid="ignore"):
            block = (
                self.up[src][:, None] + between[np.ix_(src_at, dst_at)] + self.down[dst][None, :]
            )
        same_tree = np.argwhere(src_root[:, None] == dst_root[None, :])
        for i, j in same_tree.tolist():
            block[i, j] = self._tree_time(int(src[i]), int(dst[j]))
        return block

    def _rows(
        self, reverse: bool, origins: NDArray[np.int64], targets: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        graph = self._rev if reverse else self._fwd
        pool = self._workers() if len(origins) >= _PARALLEL_MIN_ORIGINS else None
        if pool is None:
            return _dijkstra_rows(graph, origins, targets)
        # Interleaved slices, one per process: far and near origins mix in each.
        parts = [origins[k :: self._processes] for k in range(self._processes)]
        futures = [pool.submit(_worker_rows, reverse, part, targets) for part in parts]
        out = np.empty((len(origins), len(targets)))
        for k, fut in enumerate(futures):
            out[k :: self._processes] = fut.result()
        return out

    def _workers(self) -> ProcessPoolExecutor | None:
        with self._pool_lock:
            if self._pool is None:
                if self._processes < 2 or not _safe_to_fork():
                    return None
                # Forked: a worker starts at once, with the graph inherited rather than
                # pickled; only origins, targets and rows cross between processes.
                self._pool = ProcessPoolExecutor(
                    self._processes,
                    mp_context=multiprocessing.get_context("fork"),
                    initializer=_worker_init,
                    initargs=(self._fwd, self._rev),
                )
            return self._pool

    def _tree_time(self, a: int, b: int) -> float:
        """Seconds from ``a`` to ``b`` inside one tree, via their lowest common ancestor."""
        ancestors = {a}
        node = a
        while self.parent[node] >= 0:
            node = int(self.parent[node])
            ancestors.add(node)
        lca = b
        while lca not in ancestors:
            lca = int(self.parent[lca])
        return float((self.up[a] - self.up[lca]) + (self.down[b] - self.down[lca]))


def _safe_to_fork() -> bool:
    """Whether this process may fork workers: a main process with no other thread.

    Forking a process with other threads running can copy a lock some thread holds, and a
    worker process of a pool (the dispatcher's planner) hangs at exit with a pool of its
    own; those keep their searches in-process.
    """
    return multiprocessing.parent_process() is None and threading.active_count() == 1


# The forward and reverse core graphs a worker process searches.
_worker_graphs: tuple[sp.csr_array, sp.csr_array] | None = None


def _worker_init(fwd: sp.csr_array, rev: sp.csr_array) -> None:
    global _worker_graphs
    _worker_graphs = (fwd, rev)


def _worker_rows(
    reverse: bool, origins: NDArray[np.int64], targets: NDArray[np.int64]
) -> NDArray[np.float64]:
    assert _worker_graphs is not None
    return _dijkstra_rows(_worker_graphs[1 if reverse else 0], origins, targets)


def _dijkstra_rows(
    graph: sp.csr_array, origins: NDArray[np.int64], targets: NDArray[np.int64]
) -> NDArray[np.float64]:
    out = np.empty((len(origins), len(targets)))
    for start in range(0, len(origins), _CHUNK):
        part = origins[start : start + _CHUNK]
        dist = dijkstra(graph, directed=True, indices=part)
        out[start : start + len(part)] = dist[:, targets]
    return out
