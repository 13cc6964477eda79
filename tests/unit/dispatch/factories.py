"""Builders for dispatch problems: points on a plane, travel time = distance."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from core.settings import DispatchSettings
from dispatch import _schedule
from dispatch.model import Crew, CrewRoute, Job, Problem, TimeWindow, Unassigned, UnassignedKind

DAY = TimeWindow(0, 8 * 3600)


def fast_settings(**overrides: object) -> DispatchSettings:
    """Settings for unit tests: short limit, real strategies."""
    base: dict[str, object] = {"time_limit_s": 0.3}
    base.update(overrides)
    return DispatchSettings(**base)


def matrix(points: Sequence[tuple[float, float]]) -> list[list[int]]:
    """Travel seconds between points (one unit = one second)."""
    return [[round(math.dist(a, b)) for b in points] for a in points]


def problem(
    points: Sequence[tuple[float, float]], jobs: Sequence[Job], crews: Sequence[Crew]
) -> Problem:
    return Problem.build(jobs, crews, matrix(points))


def brute_force(problem: Problem, settings: DispatchSettings) -> int:
    """The optimal objective, by trying every assignment and every order (tiny only)."""
    crews = problem.crews
    free = [j.id for j in problem.jobs if j.id not in problem.pinned_to]
    best = None
    for choice in itertools.product(range(len(crews) + 1), repeat=len(free)):
        per_crew = [
            [jid for jid, c in zip(free, choice, strict=True) if c == v] for v in range(len(crews))
        ]
        dropped = [jid for jid, c in zip(free, choice, strict=True) if c == len(crews)]
        options = []
        for crew, ids in zip(crews, per_crew, strict=True):
            routes = [
                r
                for perm in itertools.permutations(ids)
                if (r := _schedule.schedule(problem, crew, list(perm))) is not None
            ]
            options.append(routes)
        if any(not o for o in options):
            continue
        unassigned = [Unassigned(j, UnassignedKind.DROPPED, "") for j in dropped]
        for combo in itertools.product(*options):
            routes: list[CrewRoute] = list(combo)
            cost = _schedule.objective(problem, routes, unassigned, settings)
            if best is None or cost < best:
                best = cost
    assert best is not None
    return best
