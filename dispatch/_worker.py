"""The CPU-bound half of a re-plan, run in the dispatcher's worker process.

``plan_draft`` is pure (a draft and a graph in, a plan and its assignments out) and is
what the tests call. The process-level functions (``init``, ``ready``, ``plan``) hold the
road graph loaded once per worker, so the service's event loop never snaps, routes or
solves itself.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from core.errors import SolverError
from core.logs import setup_logging
from core.schemas import Assignment
from core.settings import DispatchSettings, GeoSettings
from dispatch import world
from dispatch.baseline import greedy
from dispatch.model import Plan, Problem, jobs_moved
from dispatch.solver import solve
from geo import RoadGraph, load_city

__all__ = ["Outcome", "init", "plan", "plan_draft", "ready"]

log = logging.getLogger(__name__)

_graph: RoadGraph | None = None


@dataclass(frozen=True)
class Outcome:
    """One re-plan: the plan, each crew's assignment, and what it took."""

    plan_id: str
    problem: Problem
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
) -> Outcome:
    """Snap, build the matrix over the unique nodes, solve (warm from ``previous``), route."""
    t0 = time.perf_counter()
    where = world.sites(draft, graph)
    if where.nodes:
        durations = graph.travel_time_matrix(list(where.nodes), list(where.nodes))
    else:
        durations = np.zeros((0, 0))
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
    out = world.assignments(draft, where, problem, plan, graph, plan_id)
    moved = len(jobs_moved(previous, plan)) if previous is not None else 0
    return Outcome(
        plan_id=plan_id,
        problem=problem,
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
    global _graph
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(log_level, log_json)
    _graph = load_city(settings)


def ready() -> int:
    """The loaded graph's node count (the parent's check that the worker is up)."""
    assert _graph is not None, "worker not initialised"
    return _graph.node_count


def plan(
    draft: world.Draft, settings: DispatchSettings, previous: Plan | None, plan_id: str
) -> Outcome:
    """``plan_draft`` on the worker's graph."""
    assert _graph is not None, "worker not initialised"
    return plan_draft(draft, _graph, settings, previous, plan_id)
