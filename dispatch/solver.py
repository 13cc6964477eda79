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
A previous plan warm-starts the search (``ReadAssignmentFromRoutes`` +
``SolveFromAssignmentWithParameters``); if its routes no longer fit the problem the search
starts cold. ETAs are recomputed from the route order by
the earliest-schedule pass the baseline uses, so both report times the same way.
"""

from __future__ import annotations

import logging
import time
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

__all__ = ["solve"]

log = logging.getLogger(__name__)

_FALLBACK_FIRST_SOLUTION = "PARALLEL_CHEAPEST_INSERTION"
# Up to this many (job, crew) pairs the greedy baseline takes milliseconds, so every
# plan is checked against it; above, only plans that leave jobs out are.
_BASELINE_CHECK_MAX_PAIRS = 1000
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
    params.time_limit.FromMilliseconds(max(1, int(time_limit_s * 1000)))
    return params


class _Model:
    """One OR-Tools routing model built from a ``Problem``."""

    def __init__(
        self, problem: Problem, elig: _schedule.Eligibility, settings: SolverSettings
    ) -> None:
        self.problem = problem
        self.job_ids = list(elig.allowed)
        n_jobs = len(self.job_ids)
        crews = problem.crews
        n_crews = len(crews)
        self.n_jobs = n_jobs
        starts = [n_jobs + v for v in range(n_crews)]
        ends = [n_jobs + n_crews + v for v in range(n_crews)]
        self.manager = pywrapcp.RoutingIndexManager(n_jobs + 2 * n_crews, n_crews, starts, ends)
        self.routing = pywrapcp.RoutingModel(self.manager)
        routing, manager = self.routing, self.manager

        jobs = [problem.job(j) for j in self.job_ids]
        locs: list[int | None] = [j.location for j in jobs]
        locs += [o.location for o in elig.origins]
        locs += [c.end for c in crews]
        service = np.array([j.service_s for j in jobs] + [0] * (2 * n_crews), dtype=np.int64)
        first_end = n_jobs + n_crews

        # Rows of end nodes and columns of open ends are zero: nothing leaves an end, and
        # reaching "wherever the last job is" takes no time.
        durations = np.asarray(problem.durations, dtype=np.int64)
        idx = np.array([-1 if loc is None else loc for loc in locs], dtype=np.int64)
        travel = durations[np.ix_(np.maximum(idx, 0), np.maximum(idx, 0))]
        travel[:, idx < 0] = 0
        travel[first_end:, :] = 0
        time_m = travel + service[:, None]

        penalty = settings.reshuffle_penalty_s
        cost = travel.copy()
        self.heading: dict[int, int] = {}
        node_of = {jid: i for i, jid in enumerate(self.job_ids)}
        for v, crew in enumerate(crews):
            if crew.heading_to is None or crew.heading_to not in node_of or not penalty:
                continue
            j = node_of[crew.heading_to]
            self.heading[j] = v
            own = cost[starts[v], j]
            cost[:, j] += penalty
            cost[starts[v], j] = own

        open_end = idx < 0
        if open_end.any():
            reachable = travel[:first_end][:, ~open_end]
            cost[:, open_end] = max(1, round(float(reachable.mean()))) if reachable.size else 1

        cost_cb = routing.RegisterTransitMatrix(cost.tolist())
        routing.SetArcCostEvaluatorOfAllVehicles(cost_cb)
        for v, crew in enumerate(crews):
            if crew.end is None:
                routing.SetVehicleUsedWhenEmpty(True, v)

        time_cb = routing.RegisterTransitMatrix(time_m.tolist())
        shift_ends = [o.shift_end_s for o in elig.origins]
        horizon = max([*shift_ends, 0])
        routing.AddDimensionWithVehicleCapacity(time_cb, horizon, shift_ends, False, "time")
        self.time = routing.GetDimensionOrDie("time")
        for v, o in enumerate(elig.origins):
            self.time.CumulVar(routing.Start(v)).SetRange(
                min(o.ready_s, o.shift_end_s), o.shift_end_s
            )

        latest_end = max((c.shift.end_s for c in crews), default=0)
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
            routing.VehicleVar(index).SetValues([-1, *elig.allowed[job.id]])

        materials = sorted({m for j in jobs for m in j.materials})
        for m in materials:
            demand = [j.materials.get(m, 0) for j in jobs] + [0] * (2 * n_crews)
            cb = routing.RegisterUnaryTransitVector(demand)
            caps = [o.capacity.get(m, 0) for o in elig.origins]
            routing.AddDimensionWithVehicleCapacity(cb, 0, caps, True, f"material:{m}")

        for v in range(n_crews):
            routing.AddVariableMinimizedByFinalizer(self.time.CumulVar(routing.Start(v)))
            routing.AddVariableMinimizedByFinalizer(self.time.CumulVar(routing.End(v)))

    def initial_routes(self, previous: Plan) -> list[list[int]]:
        """The previous plan's routes as index lists, keeping only what is still allowed."""
        node_of = {jid: i for i, jid in enumerate(self.job_ids)}
        seen: set[str] = set()
        routes: list[list[int]] = []
        for v, crew in enumerate(self.problem.crews):
            route = previous.route_of(crew.id)
            indices: list[int] = []
            for stop in route.stops if route else ():
                node = node_of.get(stop.job_id)
                if stop.pinned or node is None or stop.job_id in seen:
                    continue
                index = self.manager.NodeToIndex(node)
                if not self.routing.VehicleVar(index).Contains(v):
                    continue
                seen.add(stop.job_id)
                indices.append(index)
            routes.append(indices)
        return routes

    def routes_of(self, solution: Any) -> list[list[str]]:
        """Job ids per crew, in visiting order."""
        out = []
        for v in range(len(self.problem.crews)):
            index = self.routing.Start(v)
            ids = []
            index = solution.Value(self.routing.NextVar(index))
            while not self.routing.IsEnd(index):
                ids.append(self.job_ids[self.manager.IndexToNode(index)])
                index = solution.Value(self.routing.NextVar(index))
            out.append(ids)
        return out


def _search(
    model: _Model, settings: SolverSettings, previous: Plan | None, deadline: float
) -> tuple[Any, bool]:
    routing = model.routing
    remaining = max(0.05, deadline - time.monotonic())
    params = _parameters(settings.first_solution, settings.metaheuristic, remaining)
    if previous is not None:
        initial = routing.ReadAssignmentFromRoutes(model.initial_routes(previous), True)
        if initial is not None:
            solution = routing.SolveFromAssignmentWithParameters(initial, params)
            if solution is not None:
                return solution, True
        log.info("warm start unusable; solving from scratch")
        remaining = max(0.05, deadline - time.monotonic())
        params = _parameters(settings.first_solution, settings.metaheuristic, remaining)
    solution = routing.SolveWithParameters(params)
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
        model = _Model(problem, elig, settings)
        solution, warm = _search(model, settings, previous, deadline)
        job_routes = model.routes_of(solution)
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
