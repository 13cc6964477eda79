"""The OR-Tools routing model behind ``solve``; all index juggling stays in this module.

Model
-----
Nodes are the jobs some crew is able to do alone (see ``_schedule.eligibility``; the others
are reported unassigned with their reason before the solver starts), then one start and
one end node per crew. A crew's start node sits where its free time begins: its current
position, or the site of its pinned job, which is therefore always its first stop without
the solver ever seeing it (the stop is prepended to the route afterwards). An open end
(``Crew.end is None``) is a node with zero travel from anywhere.

* **Travel** is the arc cost (seconds, from ``Problem.durations``). The arc into an open
  end costs the same constant from every stop, the mean travel time, and every crew with
  an open end pays it even when it stays idle, so the objective only shifts by a constant;
  with free arcs into open ends the search settles markedly worse (bench_dispatch, 200x30
  at 2 s: +7.4 % over pyvroom's travel on average over four instances, +4.7 % with it).
  A crew with a closed end away from where its free time begins pays the leg to its end
  even when idle (``SetVehicleUsedWhenEmpty``), as ``_schedule`` counts it: otherwise
  taking the last job off a crew out in the field looked like saving its way home.
* **Time** is a dimension whose transit is service at the origin plus travel; a job's
  windows bound its cumul (gaps removed), a crew's start cumul starts at its shift start
  (or pinned-job end) and every cumul is capped by its shift end: shift ends are hard.
* **Skills, material and "can reach it in time"** restrict each job to its allowed crews
  (the job's ``VehicleVar`` domain); one capacity dimension per material keeps loads within
  what each truck carries.
* **SLA lateness** is ``SetCumulVarSoftUpperBound`` on the service start at
  ``deadline - service``, costing ``lateness_cost_per_s * (1 + priority)`` per second.
* **Leaving a job out** costs the disjunction penalty of ``_schedule.drop_penalty``:
  priority first (lexicographically), then the number of jobs, then travel.
* **Reshuffle penalty.** A crew heading to job *j* keeps it for free only if *j* stays its
  first stop. Every arc into *j* costs ``reshuffle_penalty_s`` more, except the one arc
  from that crew's start node (an arc only that crew can use, so one cost matrix serves all
  crews), and dropping *j* costs the penalty on top of its drop penalty. So the plan pays
  the penalty exactly when *j* is moved to another crew, queued behind other work, or
  dropped, and a move happens only when it saves more than the penalty.

Search: first-solution strategy and metaheuristic by name from the settings, a reduced set
of local-search operators (``_OPERATORS_OFF``), local cheapest insertion taking far jobs
first, always under the time limit (guided local search never stops by itself). Every job
is optional, so a first solution always exists.

From ``_PARTS_MIN_CREWS`` crews up, the whole search gets ``_WHOLE_SHARE`` of the time
and the rest goes to re-planning parts: a crew, its nearest crews by how close their routes
run, their jobs and the unassigned jobs they may do, as a model of its own at the whole
problem's prices, searched from the current routes for ``_PART_TIME_S``. One move of the
whole search scans every route (about 13 ms on 500 jobs and 60 crews), so within a few
seconds it is still descending from its first plan; a part of eight crews moves many
times faster, and on 500 jobs nearly every part finds a better plan within 50 ms, so many
short parts beat fewer longer ones. On the bench's instances (bench_dispatch, travel over
pyvroom's) parts of six crews for 0.1 s took 500x60 from +18.7 % to +13.6 % at 2 s; eight
crews for 0.05 s take it to +8.0 % (200x30: +4.0 % to +3.7 %). Parts of four or ten
crews, 0.03 s or 0.2 s, or parts searched by greedy descent, simulated annealing or tabu
search, or with more local-search operators did no better. With the whole search's share
cut to 0.05 (below), on a slower machine, parts of 0.08 s helped 200x30 and hurt 500x60
(bench_dispatch at 2 s: 200x30 +3.8 % -> +2.6 %, 500x60 +6.2 % -> +7.5 %, mean over sizes
unchanged), so 0.05 s stays; 0.12 s did worse on both, and so did ruining twelve jobs
instead of eight.

The whole search gets little of the time: its local search barely moves the first plan
(200x30: objective 98,100 for the first plan, 92,700 after 0.3 s more of the whole
search, 63,000 after the parts), while parts run in two processes. At 2 s, mean of nine
runs each, 500x60 went from +7.5 % with a share of 0.4 to +5.7 % with 0.2, 200x30 from
+4.7 % to +3.9 %; on a slower machine, over seven paired rounds of five runs on three
instances (200x30 two seeds, 500x60), from +6.3 % with 0.2 to +5.6 % with 0.05 (better
in five rounds of seven), mostly by fewer bad runs on one 200x30 instance. Its first plan
may overrun the share (``_first_then_search``): the first-solution heuristic takes about
0.3 s on 500x60 here, and a cut-short first plan missing most jobs would fall back to
the greedy baseline.

Parts alone stall: each is searched until it sits in a local optimum of its own, and the
next part over the same crews finds nothing (200x30 stays at +4.2 % over pyvroom from
2 s to 8 s). So once every crew has been in some part, each further part is a ruin and
recreate step: it takes ``_RUIN_JOBS`` routed jobs out around a random one (``_ruin``),
lets its search put them back, and keeps the result only if the part then costs less
than before. Measured on the bench's instances, travel over pyvroom's, before -> after:
200x30 at 5 s +4.3 % -> +1.8 %, at 8 s +4.2 % -> +1.3 %; 500x60 at 5 s +6.9 % -> +5.2 to
+6.0 %. Ruining from the first part on is much worse (500x60 at 2 s: +20 %): a part that
is still descending cannot beat its own plan from a ruined start within its time. Waiting
instead until every crew has *seeded* a part (one part per crew, each part taking eight
crews) starts too late: on 500x60 at 2 s that round is not over when time runs out.
Counting the crews parts have taken, on 200x30 (two instances) and 500x60 the mean over
pyvroom's travel went from +5.4 % to +4.8 % at 2 s over nine paired runs (eight of nine
better), and from +1.6 % to +0.6 % at 5 s over three.

With ``search_processes = 2`` a helper process (spawned once, kept for later solves)
re-plans one part while this process re-plans others; the two never share a crew or an
unassigned job, so both gains add up. 500x60 at 2 s: +8.1 % -> +3.6 to +6.5 %; 200x30:
+3.7 % -> +3.4 %. OR-Tools holds the GIL while it searches, so a thread would not do.
The problem goes to the helper as the solve starts, and this process pauses 2 ms after
each submission so the part usually leaves before its own search takes the GIL
(``_hand_off``). Over sixteen paired runs at 2 s this took 500x60 from +3.9 % to +2.7 %;
200x30 went from +1.8/+0.4 % to +2.6/+0.8 % (two instances), within their noise. (In
those runs the problem still reached the helper only in about two solves of three; see
``_packed``.)

A previous plan warm-starts the search (``ReadAssignmentFromRoutes`` +
``SolveFromAssignmentWithParameters``); if its routes no longer fit the problem the search
starts cold. ETAs are recomputed from the route order by
the earliest-schedule pass the baseline uses, so both report times the same way.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import os
import pickle
import random
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2
from ortools.constraint_solver.routing_heuristic_parameters_pb2 import (
    LocalCheapestInsertionParameters,
)
from ortools.util import optional_boolean_pb2

from core.errors import ConfigError, SolverError
from dispatch import _schedule
from dispatch.baseline import greedy
from dispatch.model import CrewRoute, Plan, Problem, SolverSettings, Unassigned, UnassignedKind

__all__ = ["prepare", "solve"]

log = logging.getLogger(__name__)

_FALLBACK_FIRST_SOLUTION = "PARALLEL_CHEAPEST_INSERTION"
# Up to this many (job, crew) pairs the greedy baseline takes milliseconds, so every
# plan is checked against it; above, only plans that leave jobs out are.
_BASELINE_CHECK_MAX_PAIRS = 1000
# From ``_PARTS_MIN_CREWS`` crews up, the whole search gets ``_WHOLE_SHARE`` of the time
# limit and parts of ``_PART_CREWS`` neighbouring crews are re-planned on their own,
# ``_PART_TIME_S`` each, for the rest (see ``_improve_in_parts``). Below, the whole search
# does better on its own (bench_dispatch, 50x10).
_PARTS_MIN_CREWS = 13
_PART_CREWS = 8
_PART_TIME_S = 0.05
# Once every crew has been in a part, each part first takes out this many routed jobs
# around a random one of them (see ``_ruin``) and is kept only if its search then beats
# the part's plan from before.
_RUIN_JOBS = 8
_WHOLE_SHARE = 0.05
# How long this process pauses after submitting work to the helper (see ``_hand_off``).
_HAND_OFF_S = 0.002
_FARTHEST_FIRST = (
    LocalCheapestInsertionParameters.SORTING_PROPERTY_HIGHEST_AVG_ARC_COST_TO_VEHICLE_START_ENDS
)

# Local-search operators switched off. The model has no pickup-delivery pairs and no
# visit types, so their operators only cost scanning time; the insertion-based path LNS,
# the shortest-path operators and Lin-Kernighan are the slowest of the rest. Without
# them one guided-local-search iteration on 200 jobs takes ~0.1 s instead of ~0.7 s,
# which is what lets the search move at all within a few seconds (bench_dispatch: 200x30
# at 5 s went from +9.1 % to +7.0 % over pyvroom's cost). The operators that make jobs
# active and inactive stay on: they decide which jobs to drop.
_OPERATORS_OFF = (
    "use_relocate_pair",
    "use_light_relocate_pair",
    "use_exchange_pair",
    "use_relocate_subtrip",
    "use_exchange_subtrip",
    "use_global_cheapest_insertion_visit_types_lns",
    "use_local_cheapest_insertion_visit_types_lns",
    "use_global_cheapest_insertion_path_lns",
    "use_local_cheapest_insertion_path_lns",
    "use_shortest_path_swap_active",
    "use_shortest_path_two_opt",
    "use_lin_kernighan",
)


def _enum_value(enum: Any, name: str, what: str) -> int:
    names = enum.Value.keys()
    if name.upper() not in names:
        raise ConfigError(f"unknown {what} {name!r}; one of {', '.join(names)}")
    return int(getattr(enum, name.upper()))


def _parameters(first_solution: str, metaheuristic: str, time_limit_s: float) -> Any:
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = _enum_value(
        routing_enums_pb2.FirstSolutionStrategy, first_solution, "first-solution strategy"
    )
    params.local_search_metaheuristic = _enum_value(
        routing_enums_pb2.LocalSearchMetaheuristic, metaheuristic, "metaheuristic"
    )
    for name in _OPERATORS_OFF:
        setattr(params.local_search_operators, name, optional_boolean_pb2.BOOL_FALSE)
    # Local cheapest insertion places the jobs far from every crew first, as a regret-style
    # construction would, instead of the most constrained or most penalised first: its
    # first plan on the bench's 500x60 instance costs +27 % over pyvroom's instead of +42 %,
    # and the search, which cannot finish its descent within a few seconds on that size,
    # keeps most of the head start (+18 % instead of +31 % at 2 s).
    params.local_cheapest_insertion_parameters.insertion_sorting_properties[:] = [_FARTHEST_FIRST]
    # Guided local search starts over from clean arc penalties whenever it finds a new best
    # plan, and the operators see the penalties too: short searches from a good plan (the
    # parts) then stay near it instead of being pushed away by penalties from before.
    # Paired runs at 2 s, travel over pyvroom's, eight runs each on 200x30 (two instances)
    # and 500x60: mean +2.07 % -> +1.42 % (200x30 +2.55/+0.70 -> +1.53/-0.60 %, 500x60
    # +2.98 -> +3.33 %, within its noise); an earlier batch of six, +1.98 -> +1.37 %.
    params.guided_local_search_reset_penalties_on_new_best_solution = True
    params.use_guided_local_search_penalties_in_local_search_operators = True
    params.time_limit.FromMilliseconds(max(1, int(time_limit_s * 1000)))
    return params


class _Model:
    """One OR-Tools routing model built from a ``Problem``."""

    def __init__(
        self,
        problem: Problem,
        elig: _schedule.Eligibility,
        settings: SolverSettings,
        crew_indices: Sequence[int] | None = None,
        job_ids: Sequence[str] | None = None,
    ) -> None:
        """The whole problem, or the part of it made of some crews and some jobs.

        A part keeps the whole problem's prices (drop penalties, lateness), so its
        objective is the whole objective restricted to those routes and jobs.
        """
        self.problem = problem
        every = range(len(problem.crews))
        self.crew_indices = list(every if crew_indices is None else crew_indices)
        local = {c: v for v, c in enumerate(self.crew_indices)}
        self.job_ids = list(elig.allowed if job_ids is None else job_ids)
        n_jobs = len(self.job_ids)
        crews = [problem.crews[c] for c in self.crew_indices]
        origins = [elig.origins[c] for c in self.crew_indices]
        n_crews = len(crews)
        self.n_jobs = n_jobs
        starts = [n_jobs + v for v in range(n_crews)]
        ends = [n_jobs + n_crews + v for v in range(n_crews)]
        self.manager = pywrapcp.RoutingIndexManager(n_jobs + 2 * n_crews, n_crews, starts, ends)
        self.routing = pywrapcp.RoutingModel(self.manager)
        routing, manager = self.routing, self.manager

        jobs = [problem.job(j) for j in self.job_ids]
        locs: list[int | None] = [j.location for j in jobs]
        locs += [o.location for o in origins]
        locs += [c.end for c in crews]
        service = np.array([j.service_s for j in jobs] + [0] * (2 * n_crews), dtype=np.int64)
        first_end = n_jobs + n_crews

        # Rows of end nodes and columns of open ends are zero: nothing leaves an end, and
        # reaching "wherever the last job is" takes no time.
        durations = problem.matrix
        idx = np.array([-1 if loc is None else loc for loc in locs], dtype=np.int64)
        travel = durations[np.ix_(np.maximum(idx, 0), np.maximum(idx, 0))]
        travel[:, idx < 0] = 0
        travel[first_end:, :] = 0
        time_m = travel + service[:, None]

        penalty = settings.reshuffle_penalty_s
        cost = travel.copy()
        # Job node -> index (in the problem) of the crew heading to it. A part prices a job
        # some crew is heading to the same way even when that crew is not in the part.
        self.heading: dict[int, int] = {}
        node_of = {jid: i for i, jid in enumerate(self.job_ids)}
        for c, crew in enumerate(problem.crews):
            if crew.heading_to is None or crew.heading_to not in node_of or not penalty:
                continue
            j = node_of[crew.heading_to]
            self.heading[j] = c
            own = cost[starts[local[c]], j] if c in local else 0
            cost[:, j] += penalty
            if c in local:
                cost[starts[local[c]], j] = own

        open_end = idx < 0
        if open_end.any():
            reachable = travel[:first_end][:, ~open_end]
            cost[:, open_end] = max(1, round(float(reachable.mean()))) if reachable.size else 1

        cost_cb = routing.RegisterTransitMatrix(cost.tolist())
        routing.SetArcCostEvaluatorOfAllVehicles(cost_cb)
        # An idle crew still travels from where it is to its end (``_schedule`` counts that
        # leg too): without this a route emptied in the field would look free to the search.
        for v, (crew, o) in enumerate(zip(crews, origins, strict=True)):
            if crew.end is None or crew.end != o.location:
                routing.SetVehicleUsedWhenEmpty(True, v)

        time_cb = routing.RegisterTransitMatrix(time_m.tolist())
        # A crew that cannot even drive from where it is to its end within its shift gets
        # no job (``eligibility``), but its empty route must stay feasible: with the shift
        # end as a hard bound on that drive the whole model had no solution.
        shift_ends = [
            max(o.shift_end_s, o.ready_s + int(travel[starts[v], ends[v]]))
            for v, o in enumerate(origins)
        ]
        horizon = max([*shift_ends, 0])
        routing.AddDimensionWithVehicleCapacity(time_cb, horizon, shift_ends, False, "time")
        self.time = routing.GetDimensionOrDie("time")
        for v, o in enumerate(origins):
            self.time.CumulVar(routing.Start(v)).SetRange(
                min(o.ready_s, o.shift_end_s), o.shift_end_s
            )

        latest_end = max((c.shift.end_s for c in problem.crews), default=0)
        for node, job in enumerate(jobs):
            index = manager.NodeToIndex(node)
            cumul = self.time.CumulVar(index)
            if job.windows:
                cumul.SetRange(job.windows[0].start_s, min(job.windows[-1].end_s, horizon))
                for w0, w1 in zip(job.windows, job.windows[1:], strict=False):
                    if w1.start_s - w0.end_s > 1:
                        cumul.RemoveInterval(w0.end_s + 1, w1.start_s - 1)
            if job.deadline_s is not None:
                coef = _schedule.lateness_coefficient(job, settings)
                if coef:
                    bound = max(0, job.deadline_s - job.service_s)
                    self.time.SetCumulVarSoftUpperBound(index, bound, coef)
            drop = _schedule.drop_penalty(job, len(problem.jobs), latest_end, settings)
            if node in self.heading:
                drop += penalty
            routing.AddDisjunction([index], drop)
            # -1 is the vehicle of an unperformed (dropped) job.
            routing.VehicleVar(index).SetValues(
                [-1, *(local[c] for c in elig.allowed[job.id] if c in local)]
            )

        materials = sorted({m for j in jobs for m in j.materials})
        for m in materials:
            demand = [j.materials.get(m, 0) for j in jobs] + [0] * (2 * n_crews)
            cb = routing.RegisterUnaryTransitVector(demand)
            caps = [o.capacity.get(m, 0) for o in origins]
            routing.AddDimensionWithVehicleCapacity(cb, 0, caps, True, f"material:{m}")

        for v in range(n_crews):
            routing.AddVariableMinimizedByFinalizer(self.time.CumulVar(routing.Start(v)))
            routing.AddVariableMinimizedByFinalizer(self.time.CumulVar(routing.End(v)))

    def indices(self, job_routes: Sequence[Sequence[str]]) -> list[list[int]]:
        """Job ids per crew of this model as routing indices, keeping what is still allowed."""
        node_of = {jid: i for i, jid in enumerate(self.job_ids)}
        seen: set[str] = set()
        routes: list[list[int]] = []
        for v, ids in enumerate(job_routes):
            indices: list[int] = []
            for jid in ids:
                node = node_of.get(jid)
                if node is None or jid in seen:
                    continue
                index = self.manager.NodeToIndex(node)
                if not self.routing.VehicleVar(index).Contains(v):
                    continue
                seen.add(jid)
                indices.append(index)
            routes.append(indices)
        return routes

    def previous_routes(self, previous: Plan) -> list[list[str]]:
        """The previous plan's unpinned job ids per crew of this model."""
        out = []
        for c in self.crew_indices:
            route = previous.route_of(self.problem.crews[c].id)
            out.append([s.job_id for s in route.stops if not s.pinned] if route else [])
        return out

    def routes_of(self, solution: Any) -> list[list[str]]:
        """Job ids per crew of this model, in visiting order."""
        out = []
        for v in range(len(self.crew_indices)):
            index = self.routing.Start(v)
            ids = []
            index = solution.Value(self.routing.NextVar(index))
            while not self.routing.IsEnd(index):
                ids.append(self.job_ids[self.manager.IndexToNode(index)])
                index = solution.Value(self.routing.NextVar(index))
            out.append(ids)
        return out


def _search(
    model: _Model,
    settings: SolverSettings,
    previous: Plan | None,
    deadline: float,
    first_by: float | None = None,
) -> tuple[Any, bool]:
    """The model's best solution by ``deadline`` and whether it started from ``previous``.

    From scratch, the first plan may take until ``first_by`` (default ``deadline``): a
    first-solution heuristic cut short by its time limit leaves jobs out that it never
    got to, and a search from such a plan rarely recovers within a few seconds.
    """
    routing = model.routing
    if previous is not None:
        remaining = max(0.05, deadline - time.monotonic())
        params = _parameters(settings.first_solution, settings.metaheuristic, remaining)
        routes = model.indices(model.previous_routes(previous))
        initial = routing.ReadAssignmentFromRoutes(routes, True)
        if initial is not None:
            solution = routing.SolveFromAssignmentWithParameters(initial, params)
            if solution is not None:
                return solution, True
        log.info("warm start unusable; solving from scratch")
    solution = _first_then_search(model, settings, deadline, first_by or deadline)
    if solution is None and settings.first_solution.upper() != _FALLBACK_FIRST_SOLUTION:
        log.warning(
            "no first solution",
            extra={"strategy": settings.first_solution, "retry": _FALLBACK_FIRST_SOLUTION},
        )
        remaining = max(0.05, deadline - time.monotonic())
        params = _parameters(_FALLBACK_FIRST_SOLUTION, settings.metaheuristic, remaining)
        solution = routing.SolveWithParameters(params)
    if solution is None:
        raise SolverError(f"no plan found (routing status {routing.status()})")
    return solution, False


def _first_then_search(
    model: _Model, settings: SolverSettings, deadline: float, first_by: float
) -> Any:
    """The first plan (given until ``first_by``), then the search from it until ``deadline``."""
    routing = model.routing
    params = _parameters(
        settings.first_solution, settings.metaheuristic, max(0.05, first_by - time.monotonic())
    )
    params.solution_limit = 1
    first = routing.SolveWithParameters(params)
    if first is None or (left := deadline - time.monotonic()) <= 0.01:
        return first
    params = _parameters(settings.first_solution, settings.metaheuristic, left)
    return routing.SolveFromAssignmentWithParameters(first, params) or first


def _route_distances(
    problem: Problem, elig: _schedule.Eligibility, job_routes: Sequence[Sequence[str]], seed: int
) -> np.ndarray:
    """How far every crew's route runs from crew ``seed``'s (one value per crew).

    The mean, over the places of one route (its origin and its stops), of the travel time
    to the nearest place of the other, averaged over both directions. Only the seed's rows
    and columns of the travel matrix are read: a part needs one crew's neighbours, and the
    whole crews x crews table cost 10 ms per part on 500 jobs.
    """
    nodes: list[int] = []
    owner: list[int] = []
    for v, ids in enumerate(job_routes):
        locs = [elig.origins[v].location, *(problem.job(j).location for j in ids)]
        nodes += locs
        owner += [v] * len(locs)
    at = np.asarray(nodes)
    mine = at[np.asarray(owner) == seed]
    m = problem.matrix
    sub = np.minimum(m[np.ix_(mine, at)], m[np.ix_(at, mine)].T)  # seed's places x all places
    bounds = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
    sizes = np.diff(np.r_[bounds, len(at)])
    outward = np.minimum.reduceat(sub, bounds, axis=1).mean(axis=0)
    inward = np.add.reduceat(sub.min(axis=0), bounds) / sizes
    out: np.ndarray = (outward + inward) / 2
    return out


def _solve_part(
    problem: Problem,
    elig: _schedule.Eligibility,
    settings: SolverSettings,
    group: list[int],
    jobs: list[str],
    before: list[list[str]],
    time_s: float,
    ruin_seed: int | None = None,
) -> list[list[str]] | None:
    """The part's routes after a search warm-started from ``before`` (None: nothing better).

    With a ``ruin_seed`` the search starts from ``before`` with ``_RUIN_JOBS`` jobs taken
    out (``_ruin``), and its routes are returned only if they cost less than ``before``.
    """
    part = _Model(problem, elig, settings, group, jobs)
    routes = part.indices(before)
    initial = part.routing.ReadAssignmentFromRoutes(routes, True)
    if initial is None:
        return None
    params = _parameters(settings.first_solution, settings.metaheuristic, time_s)
    if ruin_seed is None:
        solution = part.routing.SolveFromAssignmentWithParameters(initial, params)
        return None if solution is None else part.routes_of(solution)
    # The objective of ``before``: the first solution of a search from it is itself.
    first = _parameters(settings.first_solution, settings.metaheuristic, time_s)
    first.solution_limit = 1
    current = part.routing.SolveFromAssignmentWithParameters(initial, first)
    ruined = part.routing.ReadAssignmentFromRoutes(
        _ruin(part, routes, _RUIN_JOBS, random.Random(ruin_seed)), True
    )
    if current is None or ruined is None:
        return None
    solution = part.routing.SolveFromAssignmentWithParameters(ruined, params)
    if solution is None or solution.ObjectiveValue() >= current.ObjectiveValue():
        return None
    return part.routes_of(solution)


def _ruin(part: _Model, routes: list[list[int]], k: int, rng: random.Random) -> list[list[int]]:
    """``routes`` without a random routed job and the ``k - 1`` routed jobs nearest to it.

    The removed jobs are unperformed in the search's first solution; the search puts them
    back where they now fit best, or leaves them out if that is cheaper.
    """
    routed = [i for r in routes for i in r]
    if not routed:
        return routes
    at = np.array(
        [part.problem.job(part.job_ids[part.manager.IndexToNode(i)]).location for i in routed]
    )
    seed = at[rng.randrange(len(routed))]
    m = part.problem.matrix
    near = np.minimum(m[seed, at], m[at, seed])
    gone = {routed[i] for i in np.argsort(near, kind="stable")[:k]}
    return [[i for i in r if i not in gone] for r in routes]


# The helper process's copy of the problem being solved: (solve key, problem, elig, settings).
_held: tuple[str, Problem, _schedule.Eligibility, SolverSettings] | None = None


def _helper_part(
    key: str,
    load: bytes | None,
    group: list[int],
    jobs: list[str],
    before: list[list[str]],
    time_s: float,
    ruin_seed: int | None = None,
) -> list[list[str]] | None:
    """``_solve_part`` in the helper process on the problem of solve ``key``.

    The problem comes ahead of the parts (``_send_ahead``) or with the first one (``load``,
    from ``_packed``); ``LookupError`` if it did not come.
    """
    global _held
    if load is not None:
        _held = (key, *pickle.loads(load))  # noqa: S301  # from this solver's own process
    if _held is None or _held[0] != key:
        raise LookupError(f"the helper does not hold the problem of solve {key}")
    _, problem, elig, settings = _held
    return _solve_part(problem, elig, settings, group, jobs, before, time_s, ruin_seed)


def _helper_load(key: str, load: bytes) -> None:
    """Hold the problem of solve ``key`` (``_packed``) in the helper for the parts to come."""
    global _held
    _held = (key, *pickle.loads(load))  # noqa: S301  # from this solver's own process


def _packed(problem: Problem, elig: _schedule.Eligibility, settings: SolverSettings) -> bytes:
    """The problem as the helper gets it, pickled here and now.

    Handed to the pool as objects, it was pickled later by the pool's feeder thread while
    this thread went on and filled the problem's cached properties: the pickling failed
    ("dictionary changed size during iteration") and the helper had no problem for the
    whole solve, every part it was given came back empty. On the bench's 500x60 instance
    that happened in about one solve in three, each of them ending near +6 % over
    pyvroom's travel instead of +1 to +3 %. Pickling here takes about 6 ms on 500x60.
    """
    return pickle.dumps((problem, elig, settings), protocol=pickle.HIGHEST_PROTOCOL)


def _helper_ready() -> int:
    return os.getpid()


_helpers: ProcessPoolExecutor | None = None


def _helper() -> ProcessPoolExecutor:
    """The process that re-plans parts alongside this one (started on first use, kept).

    Started with ``spawn`` (no copy of a parent's threads or locks); ``solve`` asks for it
    before its whole search, so its start overlaps that search.
    """
    global _helpers
    if _helpers is None:
        _helpers = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )
        _helpers.submit(_helper_ready)
        # A process ending (a dispatcher's solve worker among them) joins its children
        # before the pool's own exit hook would stop the helper: stop it first.
        multiprocessing.util.Finalize(_helpers, _helpers.shutdown, exitpriority=100)
    return _helpers


def _send_ahead(
    helper: ProcessPoolExecutor | None,
    problem: Problem,
    elig: _schedule.Eligibility,
    settings: SolverSettings,
) -> str | None:
    """Send the problem to the helper now; the key it is held under (None: not sent).

    It travels while this process builds its model. Sent with the first part instead, it
    waited for OR-Tools to let go of the GIL after the first plan, and that part took 100
    to 160 ms instead of 60.
    """
    if helper is None:
        return None
    key = uuid.uuid4().hex
    try:
        helper.submit(_helper_load, key, _packed(problem, elig, settings))
    except Exception as exc:  # a broken pool, or a problem that does not pickle: parts
        # send it with the first one, and a helper that cannot take it is dropped then
        log.warning("part helper unavailable: %r", exc)
        return None
    _hand_off()
    return key


def _hand_off() -> None:
    """Give the pool's threads a moment to send what was just submitted to the helper.

    They need the GIL to pickle it, and OR-Tools holds the GIL for as long as it searches:
    a part submitted just before this process's own part often left only after it, and
    then came back too late for the wait in ``_improve_in_parts`` (one part in five took
    about 140 ms instead of 60 on 500x60). With this pause the helper re-plans 27 to 30
    parts in a 2 s solve instead of 24 to 26.
    """
    time.sleep(_HAND_OFF_S)


def _drop_helper(helper: ProcessPoolExecutor) -> None:
    """Shut a failed helper down; the next solve starts a new one."""
    global _helpers
    helper.shutdown(wait=False, cancel_futures=True)
    if _helpers is helper:
        _helpers = None


class _Parts:
    """Which crews and jobs the next part takes (see ``_improve_in_parts``)."""

    def __init__(
        self, problem: Problem, elig: _schedule.Eligibility, job_routes: list[list[str]]
    ) -> None:
        self.problem, self.elig, self.job_routes = problem, elig, job_routes
        n = len(problem.crews)
        self.seeds = list(range(n))
        random.Random(n).shuffle(self.seeds)  # the same order for the same problem size
        self.next_seed = 0
        self.busy: set[int] = set()  # crews of the part in the helper
        self.reserved: set[str] = set()  # unassigned jobs given to that part
        self.searched: set[int] = set()  # crews some part has taken

    def take(self) -> tuple[list[int], list[str], list[list[str]], int | None] | None:
        """The next part's crews, jobs, current routes and ruin seed, away from the busy crews.

        Until every crew has been in some part, parts only search; the later ones ruin
        first, with a seed of their own, so that they leave the optimum the first ones
        reached.
        """
        n = len(self.seeds)
        free = (self.seeds[(self.next_seed + i) % n] for i in range(n))
        seed = next((v for v in free if v not in self.busy), None)
        if seed is None:
            return None
        self.next_seed += 1
        ruin_seed = self.next_seed if len(self.searched) == n else None
        distances = _route_distances(self.problem, self.elig, self.job_routes, seed)
        near = [int(v) for v in np.argsort(distances, kind="stable") if int(v) not in self.busy]
        group = near[:_PART_CREWS]
        members = set(group)
        self.searched |= members
        assigned = {j for ids in self.job_routes for j in ids}
        jobs = [j for v in group for j in self.job_routes[v]]
        jobs += [
            j
            for j, allowed in self.elig.allowed.items()
            if j not in assigned and j not in self.reserved and members.intersection(allowed)
        ]
        return group, jobs, [self.job_routes[v] for v in group], ruin_seed

    def put(self, group: list[int], after: list[list[str]] | None) -> bool:
        """Take a part's new routes; True if they differ from the current ones."""
        if after is None:
            return False
        changed = any(self.job_routes[v] != ids for v, ids in zip(group, after, strict=True))
        for v, ids in zip(group, after, strict=True):
            self.job_routes[v] = ids
        return changed


def _improve_in_parts(
    problem: Problem,
    elig: _schedule.Eligibility,
    settings: SolverSettings,
    job_routes: list[list[str]],
    deadline: float,
    helper: ProcessPoolExecutor | None = None,
    loaded_as: str | None = None,
) -> list[list[str]]:
    """Re-plan ``_PART_CREWS`` neighbouring crews at a time until ``deadline``.

    Each part is a model of its crews, their jobs and the unassigned jobs one of them may
    do, at the whole problem's prices, warm-started from the current routes: its search
    only accepts a better plan for the part, so the whole plan never gets worse.

    With a ``helper`` process, one part at a time is searched there while this process
    searches others. The helper's part is kept apart: no other part takes its crews or
    the unassigned jobs it was given, so the two improvements add up when its routes come
    back. A helper that fails or answers after ``deadline`` only costs its part. The
    problem travels to the helper with its first part, unless it was sent ahead under the
    key ``loaded_as`` (``_helper_load``).
    """
    parts = _Parts(problem, elig, job_routes)
    key = loaded_as or uuid.uuid4().hex
    loaded = loaded_as is not None
    pending: tuple[Future[list[list[str]] | None], list[int]] | None = None
    tried = better = 0

    def collect(wait_s: float, last: bool = False) -> None:
        """Take the helper's part if it is back within ``wait_s`` (``last``: or drop it)."""
        nonlocal pending, better, helper, loaded
        if pending is None:
            return
        future, group = pending
        try:
            after = future.result(timeout=wait_s)
        except TimeoutError:
            if not last:
                return
            log.warning("part helper late; its part is dropped")
            future.cancel()
            after = None
        except LookupError as exc:  # the problem never reached it: send it with the next part
            log.warning("part helper without the problem: %r; sending it again", exc)
            loaded = False
            after = None
        except Exception as exc:  # a broken helper must not lose the plan
            log.warning("part helper failed: %r; parts go on here", exc)
            if helper is not None:
                _drop_helper(helper)
            helper = None
            after = None
        better += parts.put(group, after)
        pending = None
        parts.busy.clear()
        parts.reserved.clear()

    while (left := deadline - time.monotonic()) > _PART_TIME_S / 2:
        if helper is not None and pending is None:
            taken = parts.take()
            if taken is not None:
                group, jobs, before, ruin_seed = taken
                try:
                    load = None if loaded else _packed(problem, elig, settings)
                    future = helper.submit(
                        _helper_part,
                        key,
                        load,
                        group,
                        jobs,
                        before,
                        min(_PART_TIME_S, left),
                        ruin_seed,
                    )
                except Exception as exc:  # a broken or shut-down pool, or no pickle
                    log.warning("part helper unavailable: %r", exc)
                    _drop_helper(helper)
                    helper = None
                else:
                    _hand_off()
                    loaded = True
                    tried += 1
                    pending = (future, group)
                    parts.busy = set(group)
                    parts.reserved = set(jobs).difference(*before)
        taken = parts.take()
        if taken is None:  # every crew is in the helper's part
            collect(max(0.0, deadline - time.monotonic()))
            continue
        group, jobs, before, ruin_seed = taken
        tried += 1
        time_s = min(_PART_TIME_S, left)
        after = _solve_part(problem, elig, settings, group, jobs, before, time_s, ruin_seed)
        better += parts.put(group, after)
        # The helper's part started with this one and ends a little after it (its
        # arguments travel both ways): waiting for it keeps both processes searching.
        collect(max(0.0, min(_PART_TIME_S / 2, deadline - time.monotonic())))
    collect(max(0.0, deadline - time.monotonic()) + 0.01, last=True)
    log.debug("parts re-planned", extra={"parts": tried, "changed": better})
    return job_routes


def prepare(settings: SolverSettings, crews: int) -> None:
    """Start the part helper now if a solve for ``crews`` crews would use one (returns at once).

    The helper is a fresh interpreter that imports OR-Tools, about a second or two; left to
    the first parted solve, that solve re-plans parts in one process for most of its time.
    A dispatcher calls this once it knows its crews.
    """
    if crews >= _PARTS_MIN_CREWS and settings.search_processes > 1:
        _helper()


def solve(problem: Problem, settings: SolverSettings, previous: Plan | None = None) -> Plan:
    """Plan ``problem`` with OR-Tools within ``settings.time_limit_s``.

    Picklable in and out, so it can run in a worker process
    (``executor.submit(solve, problem, settings, previous)``). ``previous`` (the last plan,
    possibly for a slightly different problem) warm-starts the search. Raises
    ``SolverError`` if no plan comes out (it should not: every job is optional) and
    ``ConfigError`` for an unknown strategy name.
    """
    t0 = time.monotonic()
    deadline = t0 + settings.time_limit_s
    elig = _schedule.eligibility(problem)
    crews = problem.crews
    warm = False
    if elig.allowed and crews:
        parted = len(crews) >= _PARTS_MIN_CREWS
        helper = _helper() if parted and settings.search_processes > 1 else None
        key = _send_ahead(helper, problem, elig, settings)
        model = _Model(problem, elig, settings)
        try:
            whole = t0 + settings.time_limit_s * (_WHOLE_SHARE if parted else 1.0)
            solution, warm = _search(model, settings, previous, whole, first_by=deadline)
        except SolverError:
            if not parted:
                raise
            parted = False  # no first plan in the whole search's share: give it all
            solution, warm = _search(model, settings, previous, deadline)
        job_routes = model.routes_of(solution)
        if parted:
            job_routes = _improve_in_parts(
                problem, elig, settings, job_routes, deadline, helper, loaded_as=key
            )
    else:
        job_routes = [[] for _ in crews]

    routes: list[CrewRoute] = []
    for crew, ids, org in zip(crews, job_routes, elig.origins, strict=True):
        route = _schedule.schedule(problem, crew, ids, org)
        if route is None:
            raise SolverError(f"solver route for crew {crew.id} breaks a hard rule: {ids}")
        routes.append(route)
    assigned = {s.job_id for r in routes for s in r.stops}
    unassigned: list[Unassigned] = list(elig.rejected)
    for jid, allowed in elig.allowed.items():
        if jid not in assigned:
            unassigned.append(_schedule.dropped_reason(problem, problem.job(jid), allowed, routes))
    solve_ms = (time.monotonic() - t0) * 1000
    plan = Plan(
        routes=tuple(routes),
        unassigned=tuple(sorted(unassigned, key=lambda u: u.job_id)),
        travel_s=sum(r.travel_s for r in routes),
        late_s=sum(s.late_s for r in routes for s in r.stops),
        objective=_schedule.objective(problem, routes, unassigned, settings),
        solve_ms=solve_ms,
        method="or-tools",
        warm_started=warm,
    )
    dropped = any(u.kind is UnassignedKind.DROPPED for u in plan.unassigned)
    if dropped or len(elig.allowed) * len(crews) <= _BASELINE_CHECK_MAX_PAIRS:
        # A search cut short (a big instance, a busy machine) can stop at a plan that
        # leaves out work a greedy pass would do, and a local optimum of a small problem
        # can be a little worse than the greedy plan; never return worse than the baseline.
        baseline = greedy(problem, settings)
        if baseline.objective < plan.objective:
            log.warning(
                "solver plan worse than the greedy baseline; using the baseline",
                extra={"solver": plan.objective, "baseline": baseline.objective},
            )
            plan = replace(
                baseline,
                method="greedy (solver fallback)",
                solve_ms=(time.monotonic() - t0) * 1000,
            )
    log.info(
        "plan solved",
        extra={
            "jobs": len(problem.jobs),
            "crews": len(crews),
            "unassigned": len(plan.unassigned),
            "travel_s": plan.travel_s,
            "objective": plan.objective,
            "solve_ms": round(solve_ms, 1),
            "warm": warm,
        },
    )
    return plan
