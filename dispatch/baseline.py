"""The greedy baseline the solver is measured against.

Jobs in order of priority (highest first), then deadline (earliest first, none last); each
goes to the end of the route of the nearest crew (travel from where that route currently
ends) that has the skills, the material and the shift time for it. No look-back, no
reordering: what a dispatcher with a list and a map would do.
"""

from __future__ import annotations

import time

from dispatch import _schedule
from dispatch.model import CrewRoute, Plan, Problem, SolverSettings, Unassigned

__all__ = ["greedy"]


def greedy(problem: Problem, settings: SolverSettings) -> Plan:
    """Plan ``problem`` greedily (see the module docstring); ``settings`` price the plan."""
    t0 = time.monotonic()
    elig = _schedule.eligibility(problem)
    crews = problem.crews
    routes: list[CrewRoute] = []
    ids: list[list[str]] = []
    for crew, org in zip(crews, elig.origins, strict=True):
        route = _schedule.schedule(problem, crew, [], org)
        assert route is not None  # an empty route always fits
        routes.append(route)
        ids.append([])

    # A crew heading somewhere keeps going there first, as a human dispatcher would; when
    # two crews head to one job, the first one keeps it.
    heading: set[str] = set()
    for v, crew in enumerate(crews):
        target = crew.heading_to
        if target is not None and target not in heading and v in elig.allowed.get(target, ()):
            heading.add(target)
            ids[v].append(target)
            route = _schedule.schedule(problem, crew, ids[v], elig.origins[v])
            assert route is not None
            routes[v] = route

    def order(jid: str) -> tuple[int, int, str]:
        job = problem.job(jid)
        deadline = job.deadline_s if job.deadline_s is not None else 2**62
        return (-job.priority, deadline, jid)

    taken = {jid for route_ids in ids for jid in route_ids}
    dropped: list[str] = []
    for jid in sorted(elig.allowed, key=order):
        if jid in taken:
            continue
        job = problem.job(jid)
        best: tuple[int, int, CrewRoute] | None = None
        for v in elig.allowed[jid]:
            here = routes[v].stops[-1].location if routes[v].stops else elig.origins[v].location
            leg = problem.travel_s(here, job.location)
            if best is not None and leg >= best[0]:
                continue
            candidate = _schedule.schedule(problem, crews[v], [*ids[v], jid], elig.origins[v])
            if candidate is not None:
                best = (leg, v, candidate)
        if best is None:
            dropped.append(jid)
            continue
        _, v, candidate = best
        ids[v].append(jid)
        routes[v] = candidate
    unassigned: list[Unassigned] = list(elig.rejected)
    for jid in dropped:
        reason = _schedule.dropped_reason(problem, problem.job(jid), elig.allowed[jid], routes)
        unassigned.append(reason)
    return Plan(
        routes=tuple(routes),
        unassigned=tuple(sorted(unassigned, key=lambda u: u.job_id)),
        travel_s=sum(r.travel_s for r in routes),
        late_s=sum(s.late_s for r in routes for s in r.stops),
        objective=_schedule.objective(problem, routes, unassigned, settings),
        solve_ms=(time.monotonic() - t0) * 1000,
        method="greedy",
    )
