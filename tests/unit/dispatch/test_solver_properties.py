"""Hard rules hold on random small instances, for the solver and the greedy baseline."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch import _schedule, solver
from dispatch.baseline import greedy
from dispatch.model import Crew, Job, Plan, Problem, TimeWindow, Unassigned, UnassignedKind
from dispatch.solver import _PARTS_MIN_CREWS, _improve_in_parts, solve
from tests.unit.dispatch.factories import DAY, fast_settings, matrix
from tests.unit.dispatch.factories import problem as make_problem

SKILLS = ["asphalt", "electric", "water"]


@st.composite
def problems(draw, jobs: tuple[int, int] = (1, 7), crews: tuple[int, int] = (1, 3)):
    n_jobs = draw(st.integers(*jobs))
    n_crews = draw(st.integers(*crews))
    coords = st.tuples(st.integers(0, 2000), st.integers(0, 2000))
    points = draw(st.lists(coords, min_size=n_jobs + n_crews, max_size=n_jobs + n_crews))
    jobs = []
    for i in range(n_jobs):
        windows = ()
        if draw(st.booleans()):
            start = draw(st.integers(0, 4000))
            windows = (TimeWindow(start, start + draw(st.integers(0, 2000))),)
            if draw(st.booleans()):  # a second window some time after the first
                later = windows[0].end_s + draw(st.integers(1, 3000))
                windows += (TimeWindow(later, later + draw(st.integers(0, 2000))),)
        jobs.append(
            Job(
                f"j{i}",
                location=i,
                service_s=draw(st.integers(0, 900)),
                skills=frozenset(draw(st.lists(st.sampled_from(SKILLS), max_size=2))),
                materials={"asphalt": draw(st.integers(0, 2))},
                priority=draw(st.integers(0, 100)),
                deadline_s=draw(st.none() | st.integers(0, 5000)),
                windows=windows,
            )
        )
    crews = []
    pinned_taken: set[str] = set()
    for v in range(n_crews):
        start = draw(st.integers(0, 1000))
        skills = frozenset(draw(st.lists(st.sampled_from(SKILLS), min_size=1, max_size=3)))
        location = n_jobs + v
        pinned = None
        pin = draw(st.none() | st.integers(0, n_jobs - 1))
        if pin is not None and f"j{pin}" not in pinned_taken and jobs[pin].skills <= skills:
            pinned = f"j{pin}"
            pinned_taken.add(pinned)
            location = jobs[pin].location  # on site
        heading = draw(st.none() | st.integers(0, n_jobs - 1))
        crews.append(
            Crew(
                f"c{v}",
                start=location,
                shift=TimeWindow(start, start + draw(st.integers(600, 6000))),
                skills=skills,
                capacity={"asphalt": draw(st.integers(0, 4))},
                end=draw(st.none() | st.just(n_jobs + v)),
                pinned_job=pinned,
                heading_to=None if heading is None else f"j{heading}",
            )
        )
    return Problem.build(jobs, crews, matrix(points))


def check_hard_rules(problem: Problem, plan: Plan) -> None:
    seen = [s.job_id for r in plan.routes for s in r.stops] + [u.job_id for u in plan.unassigned]
    assert sorted(seen) == sorted(j.id for j in problem.jobs), "every job exactly once"
    assert [r.crew_id for r in plan.routes] == [c.id for c in problem.crews]
    for route in plan.routes:
        crew = problem.crew(route.crew_id)
        free = [s for s in route.stops if not s.pinned]
        if crew.pinned_job is not None:
            assert route.stops[0].job_id == crew.pinned_job and route.stops[0].pinned
        assert len(free) == len(route.stops) - (crew.pinned_job is not None)
        t = crew.shift.start_s
        here = crew.start
        for stop in route.stops:
            job = problem.job(stop.job_id)
            assert job.skills <= crew.skills, "skills"
            assert stop.arrival_s == t + problem.travel_s(here, job.location), "ETA"
            assert stop.start_s >= stop.arrival_s
            if job.windows and not stop.pinned:
                assert any(w.contains(stop.start_s) for w in job.windows), "job window"
            assert stop.end_s == stop.start_s + job.service_s
            t, here = stop.end_s, job.location
        if free:
            assert route.end_s <= max(
                crew.shift.end_s, route.stops[0].end_s if crew.pinned_job else 0
            )
            assert route.end_s <= crew.shift.end_s or crew.pinned_job is not None
            assert free[-1].end_s <= crew.shift.end_s, "shift end"
        # A pinned job's material is already in use; the rest must fit what is left.
        left = dict(crew.capacity)
        if crew.pinned_job is not None:
            for material, amount in problem.job(crew.pinned_job).materials.items():
                left[material] = max(0, left.get(material, 0) - amount)
        for material in {m for s in free for m in problem.job(s.job_id).materials}:
            used = sum(problem.job(s.job_id).materials.get(material, 0) for s in free)
            assert used <= left.get(material, 0), "capacity"


FAST = fast_settings(time_limit_s=0.1, metaheuristic="GREEDY_DESCENT")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_solver_never_breaks_a_hard_rule(problem):
    check_hard_rules(problem, solve(problem, FAST))


@settings(max_examples=60, deadline=None)
@given(problems())
def test_baseline_never_breaks_a_hard_rule(problem):
    check_hard_rules(problem, greedy(problem, FAST))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_solver_is_no_worse_than_the_baseline(problem):
    assert solve(problem, FAST).objective <= greedy(problem, FAST).objective


@settings(max_examples=200, deadline=None)
@given(problems(jobs=(1, 10), crews=(1, 6)))
def test_eligibility_allows_exactly_the_crews_a_one_stop_schedule_fits(problem):
    elig = _schedule.eligibility(problem)
    for job in problem.jobs:
        if job.id in problem.pinned_to:
            continue
        fits = tuple(
            i
            for i, crew in enumerate(problem.crews)
            if _schedule.schedule(problem, crew, [job.id], elig.origins[i]) is not None
        )
        assert elig.allowed.get(job.id, ()) == fits


# Enough crews that the solver re-plans parts of neighbouring crews.
PARTED = problems(jobs=(8, 30), crews=(_PARTS_MIN_CREWS, _PARTS_MIN_CREWS + 3))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PARTED)
def test_solver_with_parts_never_breaks_a_hard_rule(problem):
    check_hard_rules(problem, solve(problem, fast_settings(time_limit_s=0.4)))


@pytest.fixture(scope="module")
def helper():
    """The solver's helper process, started once for the module."""
    pool = solver._helper()
    pool.submit(solver._helper_ready).result(timeout=60)
    return pool


@pytest.mark.parametrize("with_helper", [False, True], ids=["alone", "with-helper"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=PARTED)
def test_re_planning_parts_never_makes_the_plan_worse(problem, with_helper, request):
    s = fast_settings()
    elig = _schedule.eligibility(problem)
    routes = greedy_routes(problem, s)
    before = cost(problem, elig, routes, s)
    pool = request.getfixturevalue("helper") if with_helper else None
    improved = _improve_in_parts(
        problem, elig, s, [list(r) for r in routes], time.monotonic() + 0.35, pool
    )
    assert after_is_valid(problem, elig, improved)
    assert cost(problem, elig, improved, s) <= before


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=PARTED, ruin_seed=st.integers(0, 10_000))
def test_a_ruined_part_comes_back_only_if_it_costs_less(problem, ruin_seed):
    """Jobs taken out and a search too short to put them all back: never a worse plan."""
    s = fast_settings()
    elig = _schedule.eligibility(problem)
    routes = greedy_routes(problem, s)
    crews = list(range(len(problem.crews)))
    after = solver._solve_part(
        problem, elig, s, crews, list(elig.allowed), routes, 0.001, ruin_seed
    )
    if after is not None:
        assert after_is_valid(problem, elig, after)
        assert cost(problem, elig, after, s) < cost(problem, elig, routes, s)


def greedy_routes(problem: Problem, s) -> list[list[str]]:
    """The greedy baseline's unpinned job ids per crew: a plan to start parts from."""
    return [[st.job_id for st in r.stops if not st.pinned] for r in greedy(problem, s).routes]


def cost(problem: Problem, elig, job_routes: list[list[str]], s) -> int:
    """The objective of a plan given as job ids per crew (hard rules checked on the way)."""
    scheduled = [
        _schedule.schedule(problem, crew, ids, org)
        for crew, ids, org in zip(problem.crews, job_routes, elig.origins, strict=True)
    ]
    assert all(r is not None for r in scheduled), "a part broke a hard rule"
    done = {st.job_id for r in scheduled for st in r.stops}
    left = [Unassigned(j.id, UnassignedKind.DROPPED, "") for j in problem.jobs if j.id not in done]
    return _schedule.objective(problem, scheduled, left, s)


def after_is_valid(problem, elig, job_routes) -> bool:
    """Every job is on at most one route, and only on a crew allowed to do it."""
    placed = [j for ids in job_routes for j in ids]
    return len(placed) == len(set(placed)) and all(
        v in elig.allowed[j] for v, ids in enumerate(job_routes) for j in ids
    )


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=PARTED)
def test_a_failed_helper_costs_only_its_part(problem):
    """A helper pool that is shut down: the parts go on in this process."""
    s = fast_settings()
    elig = _schedule.eligibility(problem)
    routes = greedy_routes(problem, s)
    dead = ProcessPoolExecutor(max_workers=1)
    dead.shutdown()
    improved = _improve_in_parts(problem, elig, s, routes, time.monotonic() + 0.2, dead)
    assert after_is_valid(problem, elig, improved)


@pytest.mark.parametrize("ruin_seed", range(5))
def test_a_ruined_part_can_beat_the_plan_it_started_from(ruin_seed):
    """Ten jobs on a line, two crews zigzagging over them: rebuilt around any job, it is better."""
    points = [(100.0 * i, 0.0) for i in range(10)] + [(0.0, 0.0), (1000.0, 0.0)]
    jobs = [Job(f"j{i}", location=i, service_s=60) for i in range(10)]
    crews = [Crew("west", 10, DAY), Crew("east", 11, DAY)]
    zigzag = [f"j{i}" for pair in zip(range(10), range(9, 4, -1)) for i in pair]
    problem = make_problem(points, jobs, crews)
    s = fast_settings()
    elig = _schedule.eligibility(problem)
    before = [zigzag[:5], zigzag[5:]]
    after = solver._solve_part(
        problem, elig, s, [0, 1], list(elig.allowed), before, 0.05, ruin_seed
    )
    assert after is not None
    assert after_is_valid(problem, elig, after)
    assert cost(problem, elig, after, s) < cost(problem, elig, before, s)
