"""The OR-Tools model: optimal on tiny instances, hard rules always hold."""

from __future__ import annotations

import pickle
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import pytest

from core.errors import ConfigError
from dispatch import _schedule, solver
from dispatch.model import Crew, Job, TimeWindow, UnassignedKind, jobs_moved
from dispatch.solver import solve
from tests.unit.dispatch.factories import DAY, brute_force, fast_settings, problem


def _random_tiny(seed: int):
    rng = random.Random(seed)
    n_jobs = rng.randint(3, 5)
    n_crews = rng.randint(1, 2)
    points = [(rng.uniform(0, 1000), rng.uniform(0, 1000)) for _ in range(n_jobs + n_crews)]
    skills = ["asphalt", "electric"]
    jobs = []
    for i in range(n_jobs):
        window = ()
        if rng.random() < 0.3:
            start = rng.randint(0, 2000)
            window = (TimeWindow(start, start + rng.randint(300, 1500)),)
        jobs.append(
            Job(
                f"j{i}",
                location=i,
                service_s=rng.choice([0, 120, 300]),
                skills=frozenset(rng.sample(skills, rng.randint(0, 1))),
                materials={"asphalt": rng.randint(0, 2)},
                priority=rng.randint(0, 100),
                deadline_s=rng.choice([None, rng.randint(300, 3000)]),
                windows=window,
            )
        )
    crews = [
        Crew(
            f"c{v}",
            start=n_jobs + v,
            shift=TimeWindow(0, rng.randint(1500, 4000)),
            skills=frozenset(rng.sample(skills, rng.randint(1, 2))),
            capacity={"asphalt": rng.randint(1, 4)},
            heading_to=rng.choice([None, f"j{rng.randrange(n_jobs)}"]) if v == 0 else None,
            # Open, back where it starts, or somewhere else (a depot across town).
            end=rng.choice([None, n_jobs + v, rng.randrange(n_jobs + n_crews)]),
            # The last crew may be at work on the last job (no skills: any crew may do it).
            pinned_job=f"j{n_jobs - 1}" if v == 1 and rng.random() < 0.5 else None,
        )
        for v in range(n_crews)
    ]
    if crews[-1].pinned_job:
        jobs[-1] = replace(jobs[-1], skills=frozenset(), materials={}, windows=())
    return problem(points, jobs, crews)


@pytest.mark.parametrize("seed", range(16))
def test_finds_the_brute_force_optimum_on_tiny_instances(seed):
    settings = fast_settings(time_limit_s=0.4)
    p = _random_tiny(seed)
    plan = solve(p, settings)
    assert plan.objective == brute_force(p, settings), plan


def test_a_crew_that_cannot_reach_its_end_within_its_shift_does_not_sink_the_plan():
    # "far" would need 500 s to reach its end and has a 100 s shift: it can do nothing,
    # and the plan of everyone else must still come out.
    points = [(0, 0), (10, 0), (500, 0)]
    jobs = [Job("x", location=1, service_s=10)]
    crews = [
        Crew("c", start=0, shift=TimeWindow(0, 1000)),
        Crew("far", start=0, shift=TimeWindow(0, 100), end=2),
    ]
    plan = solve(problem(points, jobs, crews), fast_settings(time_limit_s=0.2))
    routes = {r.crew_id: [s.job_id for s in r.stops] for r in plan.routes}
    assert routes == {"c": ["x"], "far": []} and not plan.unassigned


def test_a_job_outranked_with_material_to_spare_is_not_called_a_capacity_problem():
    # On site at p (1 of its 2 bags); x (1 bag) and the more urgent y compete for the
    # rest of the shift: x is left out for y, not for want of material.
    points = [(0, 0), (100, 0), (0, 100)]
    jobs = [
        Job("p", location=0, service_s=10, materials={"asphalt": 1}),
        Job("x", location=1, service_s=50, materials={"asphalt": 1}),
        Job("y", location=2, service_s=50, priority=5),
    ]
    crews = [
        Crew("c", start=0, shift=TimeWindow(0, 200), capacity={"asphalt": 2}, pinned_job="p")
    ]
    plan = solve(problem(points, jobs, crews), fast_settings(time_limit_s=0.2))
    [left] = plan.unassigned
    assert (left.job_id, left.kind) == ("x", UnassignedKind.DROPPED)


def test_overlapping_windows_are_their_union():
    # A long window holding a short one: service may start any time in the long one.
    a = Job("a", location=1, windows=(TimeWindow(100, 200), TimeWindow(0, 5000)))
    assert a.windows == (TimeWindow(0, 5000),)
    touching = Job("b", location=1, windows=(TimeWindow(0, 10), TimeWindow(11, 20)))
    assert touching.windows == (TimeWindow(0, 20),)
    apart = Job("c", location=1, windows=(TimeWindow(50, 60), TimeWindow(0, 10)))
    assert apart.windows == (TimeWindow(0, 10), TimeWindow(50, 60))

    points = [(0, 0), (400, 0), (10, 0), (0, 10)]
    jobs = [a, Job("x", location=2, priority=5), Job("y", location=3, priority=1,
                                                      windows=(TimeWindow(0, 15),))]
    crews = [Crew("c", start=0, shift=TimeWindow(0, 10_000))]
    plan = solve(problem(points, jobs, crews), fast_settings(time_limit_s=0.3))
    assert not plan.unassigned, "a fits after x and y, inside its long window"


def test_too_few_crews_leave_the_lowest_priorities_out():
    # One crew, a 1-hour shift, six 15-minute jobs next to each other: four fit.
    points = [(0, 0)] + [(10 * i, 0) for i in range(1, 7)]
    prios = [5, 90, 40, 70, 10, 60]
    jobs = [Job(f"j{i}", i + 1, service_s=900, priority=p) for i, p in enumerate(prios)]
    crews = [Crew("c", 0, TimeWindow(0, 3700))]
    plan = solve(problem(points, jobs, crews), fast_settings())
    assert plan.unassigned_ids() == {"j0", "j4"}
    assert all(u.reason == "dropped: lower priority than the jobs kept" for u in plan.unassigned)


def test_reasons_for_skill_shift_and_capacity():
    points = [(0, 0), (10, 0), (50_000, 0), (20, 0), (30, 0)]
    jobs = [
        Job("needs-crane", 1, skills={"crane"}),
        Job("too-far", 2),
        Job("needs-lamps", 3, materials={"lamp": 1}),
        Job("ok", 4),
    ]
    crews = [Crew("c", 0, TimeWindow(0, 3600), skills={"asphalt"}, capacity={"asphalt": 5})]
    plan = solve(problem(points, jobs, crews), fast_settings())
    reasons = {u.job_id: (u.kind, u.reason) for u in plan.unassigned}
    assert reasons == {
        "needs-crane": (UnassignedKind.SKILL, "no crew with skill crane"),
        "too-far": (UnassignedKind.SHIFT, "no crew shift covers it"),
        "needs-lamps": (UnassignedKind.CAPACITY, "capacity"),
    }
    assert plan.route_of("c").job_ids == ("ok",)


def test_capacity_is_respected():
    points = [(0, 0)] + [(10 * i, 5) for i in range(1, 5)]
    jobs = [Job(f"j{i}", i + 1, materials={"asphalt": 1}, priority=10 * i) for i in range(4)]
    crews = [Crew("c", 0, DAY, capacity={"asphalt": 2})]
    plan = solve(problem(points, jobs, crews), fast_settings())
    route = plan.route_of("c")
    assert set(route.job_ids) == {"j2", "j3"}
    assert route.load == {"asphalt": 2}
    assert {u.kind for u in plan.unassigned} == {UnassignedKind.CAPACITY}


def test_pinned_job_is_the_first_stop_even_when_far_and_unimportant():
    points = [(0, 0), (5000, 0), (10, 0), (20, 0)]
    jobs = [
        Job("far", 1, service_s=600, priority=0),
        Job("a", 2, priority=90),
        Job("b", 3, priority=90),
    ]
    crews = [Crew("c", 0, DAY, pinned_job="far"), Crew("d", 0, DAY)]
    plan = solve(problem(points, jobs, crews), fast_settings())
    route = plan.route_of("c")
    assert route.stops[0].job_id == "far" and route.stops[0].pinned
    assert route.stops[0].end_s == 5000 + 600


def test_shift_end_is_never_exceeded():
    points = [(0, 0), (1000, 0), (2000, 0), (3000, 0)]
    jobs = [Job(f"j{i}", i + 1, service_s=500, priority=100) for i in range(3)]
    crews = [Crew("c", 0, TimeWindow(0, 3000), end=0)]
    plan = solve(problem(points, jobs, crews), fast_settings())
    route = plan.route_of("c")
    assert route.end_s <= 3000
    assert route.job_ids == (
        "j0",
    )  # 1000 there, 500 work, 1000 back; a second job breaks the shift


def test_parts_ruin_once_every_crew_has_been_in_one():
    rng = random.Random(3)
    n = 20
    points = [(rng.uniform(0, 5000), rng.uniform(0, 5000)) for _ in range(2 * n)]
    jobs = [Job(f"j{i}", i, priority=10) for i in range(n)]
    crews = [Crew(f"c{v}", n + v, DAY) for v in range(n)]
    p = problem(points, jobs, crews)
    parts = solver._Parts(p, _schedule.eligibility(p), [[f"j{v}"] for v in range(n)])
    plain: list[list[int]] = []
    while (taken := parts.take()) is not None and taken[3] is None:
        plain.append(taken[0])
    assert taken is not None
    assert {v for group in plain for v in group} == set(range(n))
    assert len(plain) < n  # parts of several crews: fewer than one seeded by each crew
    seeds = {parts.take()[3] for _ in range(5)}
    assert None not in seeds and len(seeds) == 5  # each ruins with a seed of its own


def test_route_distances_are_the_mean_nearest_place_both_ways():
    rng = random.Random(5)
    n_jobs, n_crews = 30, 6
    points = [(rng.uniform(0, 5000), rng.uniform(0, 5000)) for _ in range(n_jobs + n_crews)]
    jobs = [Job(f"j{i}", i) for i in range(n_jobs)]
    crews = [Crew(f"c{v}", n_jobs + v, DAY) for v in range(n_crews)]
    p = problem(points, jobs, crews)
    elig = _schedule.eligibility(p)
    routes: list[list[str]] = [[] for _ in crews]
    for j in jobs[:-4]:  # crew 5 keeps an empty route: its origin is its only place
        routes[rng.randrange(n_crews - 1)].append(j.id)
    places = [[n_jobs + v, *(int(j[1:]) for j in routes[v])] for v in range(n_crews)]

    def one_way(a: int, b: int) -> float:
        m = p.matrix
        return sum(min(min(m[x, y], m[y, x]) for y in places[b]) for x in places[a]) / len(
            places[a]
        )

    for seed in (0, 3, 5):
        got = solver._route_distances(p, elig, routes, seed)
        want = [(one_way(seed, u) + one_way(u, seed)) / 2 for u in range(n_crews)]
        assert got == pytest.approx(want)
        assert got[seed] == 0


def test_an_idle_crew_in_the_field_still_drives_to_its_end():
    # Crew "home" is out at 1000 and ends at the depot (0); the job lies on its way back,
    # so it costs that crew nothing extra. Crew "near" sits 10 s from the job.
    points = [(0, 0), (500, 0), (1000, 0), (510, 0)]
    jobs = [Job("j", 1, priority=50)]
    crews = [Crew("home", 2, DAY, end=0), Crew("near", 3, DAY)]
    p = problem(points, jobs, crews)
    plan = solve(p, fast_settings())
    assert plan.crew_of("j") == "home"
    assert plan.objective == brute_force(p, fast_settings())


def _en_route(b_distance: int, a_distance: int = 300):
    # Crew A drives to J (a_distance away); crew B is idle b_distance away from J.
    points = [(0, 0), (a_distance, 0), (0, b_distance)]
    jobs = [Job("J", 0, service_s=300, priority=50)]
    crews = [Crew("A", 1, DAY, heading_to="J"), Crew("B", 2, DAY)]
    return problem(points, jobs, crews)


def test_reshuffle_penalty_keeps_an_en_route_crew_on_its_job():
    settings = fast_settings(reshuffle_penalty_s=600)
    plan = solve(_en_route(b_distance=250), settings)  # B is 50 s closer: not worth a change
    assert plan.crew_of("J") == "A"


def test_a_much_better_alternative_does_move_the_job():
    settings = fast_settings(reshuffle_penalty_s=600)
    kept = solve(_en_route(b_distance=250), settings)
    p = _en_route(b_distance=10, a_distance=2000)  # saves 1990 s > the 600 s penalty
    moved = solve(p, settings)
    assert moved.crew_of("J") == "B"
    assert jobs_moved(kept, moved) == {"J"}


def test_without_the_penalty_the_nearest_crew_wins():
    plan = solve(_en_route(b_distance=250), fast_settings(reshuffle_penalty_s=0))
    assert plan.crew_of("J") == "B"


def test_warm_start_from_the_previous_plan():
    p = _random_tiny(3)
    settings = fast_settings(time_limit_s=0.3)
    first = solve(p, settings)
    again = solve(p, settings, previous=first)
    assert again.warm_started
    assert again.objective <= first.objective


def test_warm_start_with_stale_routes_falls_back():
    p = _random_tiny(4)
    first = solve(p, fast_settings())
    fewer = type(p)(p.jobs[:2], p.crews, p.durations)
    plan = solve(fewer, fast_settings(), previous=first)
    assert set(plan.assignments()) | plan.unassigned_ids() == {"j0", "j1"}


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="first-solution"):
        solve(_random_tiny(1), fast_settings(first_solution="FASTEST_PLEASE"))


def test_problem_and_plan_survive_pickling_and_a_worker_process():
    p = _random_tiny(5)
    settings = fast_settings(time_limit_s=0.2)
    assert pickle.loads(pickle.dumps(p)) == p
    with ProcessPoolExecutor(max_workers=1) as pool:
        plan = pool.submit(solve, p, settings).result(timeout=60)
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert set(plan.assignments()) | plan.unassigned_ids() == {j.id for j in p.jobs}


def test_no_crews_at_all_leaves_every_job_out_with_a_reason():
    plan = solve(problem([(0, 0)], [Job("a", 0)], []), fast_settings())
    assert plan.routes == ()
    assert [(u.job_id, u.reason) for u in plan.unassigned] == [("a", "no crew shift covers it")]


def test_the_first_plan_may_overrun_the_search_share():
    """A first-solution heuristic cut short leaves jobs out; it gets until ``first_by``."""
    rng = random.Random(3)
    points = [(rng.uniform(0, 3000), rng.uniform(0, 3000)) for _ in range(440)]
    starts = [rng.randrange(0, 20_000) for _ in range(400)]
    jobs = [Job(f"j{i}", i, 60, windows=(TimeWindow(t, t + 7200),)) for i, t in enumerate(starts)]
    crews = [Crew(f"c{v}", 400 + v, DAY) for v in range(40)]
    p = problem(points, jobs, crews)
    settings = fast_settings()
    model = solver._Model(p, _schedule.eligibility(p), settings)
    now = time.monotonic()
    solution, warm = solver._search(model, settings, None, now + 0.01, first_by=now + 60)
    assert not warm
    assert sum(len(ids) for ids in model.routes_of(solution)) == len(jobs)
