"""The CPU-bound half of a re-plan, run in the dispatcher's worker process.

``plan_draft`` is pure (a draft and a graph in, a plan and its assignments out) and is
what the tests call. The process-level functions (``init``, ``ready``, ``plan``) hold the
road graph loaded once per worker, so the service's event loop never snaps, routes or
solves itself.

Consecutive plans mostly share places: incidents stay put, only crews move. ``RoadCache``
keeps travel times and route legs between runs, so a re-plan runs Dijkstra only from the
new places (about one search per moved crew and new incident) instead of from all of
them. Only travel *to jobs* is computed: nothing in the model drives to a crew's start.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

from core.errors import SolverError
from core.logs import setup_logging
from core.schemas import Assignment
from core.settings import DispatchSettings, GeoSettings
from dispatch import world
from dispatch.baseline import greedy
from dispatch.model import Plan, jobs_moved
from dispatch.solver import solve
from geo import RoadGraph, Route, load_city

__all__ = ["Outcome", "RoadCache", "init", "plan", "plan_draft", "ready"]

log = logging.getLogger(__name__)

_graph: RoadGraph | None = None
_cache: RoadCache | None = None

# Bounds on what RoadCache keeps (it starts over when full).
_MAX_PAIRS = 1_000_000
_MAX_LEGS = 50_000


class RoadCache:
    """Travel times and route legs of one road graph, kept across plans."""

    def __init__(self, graph: RoadGraph) -> None:
        self.graph = graph
        self._time: dict[tuple[int, int], float] = {}
        self._legs: dict[tuple[int, int], Route] = {}

    def matrix(self, nodes: Sequence[int], targets: Sequence[int]) -> NDArray[np.float64]:
        """Square matrix over ``nodes``: seconds into ``targets`` (others: unreachable)."""
        n = len(nodes)
        out = np.full((n, n), np.inf)
        if not n:
            return out
        wanted = sorted(set(targets))
        missing = [(a, b) for a in nodes for b in wanted if (a, b) not in self._time]
        if missing:
            if len(self._time) + len(nodes) * len(wanted) > _MAX_PAIRS:
                self._time.clear()
                missing = [(a, b) for a in nodes for b in wanted]
            # Whole rows for places never seen, then whatever columns are still missing
            # (the graph searches from the smaller side).
            missing_of: dict[int, int] = {}
            for a, _ in missing:
                missing_of[a] = missing_of.get(a, 0) + 1
            fresh = [a for a, k in missing_of.items() if k == len(wanted)]
            self._fill(fresh, wanted)
            rest = [(a, b) for a, b in missing if (a, b) not in self._time]
            if rest:
                self._fill(sorted({a for a, _ in rest}), sorted({b for _, b in rest}))
        col = {b: j for j, b in enumerate(nodes)}
        for i, a in enumerate(nodes):
            for b in wanted:
                out[i, col[b]] = self._time[(a, b)]
        return out

    def _fill(self, src: Sequence[int], dst: Sequence[int]) -> None:
        if not src or not dst:
            return
        block = self.graph.travel_time_matrix(list(src), list(dst))
        for i, a in enumerate(src):
            for j, b in enumerate(dst):
                self._time[(a, b)] = float(block[i, j])

    def route(self, nodes: Sequence[int]) -> Route:
        """``RoadGraph.route`` assembled from cached legs (``NoRoute`` if one is impossible)."""
        stops = [int(n) for n in nodes]
        if len(stops) < 2:
            return self.graph.route(stops)
        if len(self._legs) > _MAX_LEGS:
            self._legs.clear()
        legs = []
        for ab in pairwise(stops):
            leg = self._legs.get(ab)
            if leg is None:
                leg = self._legs[ab] = self.graph.route(list(ab))
            legs.append(leg)
        coords: list[tuple[float, float]] = []
        for leg in legs:
            if leg.edges:
                coords.extend(leg.coordinates if not coords else leg.coordinates[1:])
        if not coords:
            coords = list(legs[0].coordinates)
        return Route(
            nodes=tuple(stops),
            edges=tuple(e for leg in legs for e in leg.edges),
            coordinates=coords,
            leg_travel_time_s=[leg.leg_travel_time_s[0] for leg in legs],
            leg_distance_m=[leg.leg_distance_m[0] for leg in legs],
            leg_edge_counts=[leg.leg_edge_counts[0] for leg in legs],
        )


@dataclass(frozen=True)
class Outcome:
    """One re-plan: the plan, each crew's assignment, and what it took."""

    plan_id: str
    # The planned crews' ids and the number of jobs, not the Problem: its travel matrix
    # (24.7 MB at 1,500 places) would cross back to the service process on every plan.
    crew_ids: tuple[str, ...]
    job_count: int
    plan: Plan
    assignments: dict[str, Assignment]
    matrix_ms: float
    solve_ms: float
    moved: int
    notes: tuple[str, ...] = field(default=())


def plan_draft(
    draft: world.Draft,
    graph: RoadGraph,
    settings: DispatchSettings,
    previous: Plan | None,
    plan_id: str,
    cache: RoadCache | None = None,
) -> Outcome:
    """Snap, build the matrix over the unique nodes, solve (warm from ``previous``), route."""
    t0 = time.perf_counter()
    roads = cache if cache is not None and cache.graph is graph else RoadCache(graph)
    where = world.sites(draft, graph)
    targets = [where.nodes[k] for k in where.job_at.values()]
    durations = roads.matrix(where.nodes, targets)
    problem = world.build_problem(draft, where, durations)
    matrix_ms = (time.perf_counter() - t0) * 1000
    t1 = time.perf_counter()
    try:
        plan = solve(problem, settings, previous)
    except SolverError as exc:
        # No first solution inside the time limit (a very large world): a greedy plan now
        # beats no plan; the next run tries the solver again.
        log.warning("solver found no plan; using the greedy baseline", extra={"reason": str(exc)})
        plan = greedy(problem, settings)
    solve_ms = (time.perf_counter() - t1) * 1000
    out = world.assignments(draft, where, problem, plan, roads, plan_id)
    moved = len(jobs_moved(previous, plan)) if previous is not None else 0
    return Outcome(
        plan_id=plan_id,
        crew_ids=tuple(c.id for c in problem.crews),
        job_count=len(problem.jobs),
        plan=plan,
        assignments=out,
        matrix_ms=matrix_ms,
        solve_ms=solve_ms,
        moved=moved,
        notes=draft.notes + where.notes,
    )


def init(settings: GeoSettings, log_level: str = "INFO", log_json: bool = False) -> None:
    """Worker-process initialiser: log like the parent and load the road graph once.

    Ctrl-C and SIGTERM sent to the whole process group are left to the parent, which
    lets a running plan finish and then shuts the worker down.
    """
    global _graph, _cache
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(log_level, log_json)
    _graph = load_city(settings)
    _cache = RoadCache(_graph)


def ready() -> int:
    """The loaded graph's node count (the parent's check that the worker is up)."""
    assert _graph is not None, "worker not initialised"
    return _graph.node_count


def plan(
    draft: world.Draft, settings: DispatchSettings, previous: Plan | None, plan_id: str
) -> Outcome:
    """``plan_draft`` on the worker's graph."""
    assert _graph is not None, "worker not initialised"
    return plan_draft(draft, _graph, settings, previous, plan_id, _cache)
