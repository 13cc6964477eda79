"""The greedy baseline: priority order, nearest able crew, appended."""

from __future__ import annotations

from dispatch.baseline import greedy
from dispatch.model import Crew, Job, TimeWindow
from tests.unit.dispatch.factories import DAY, fast_settings, problem


def test_highest_priority_first_to_the_nearest_able_crew():
    points = [(0, 0), (1000, 0), (100, 0), (900, 0), (500, 0)]
    jobs = [
        Job("low-near-A", 2, priority=10),
        Job("high-near-B", 3, priority=90, skills={"electric"}),
        Job("mid", 4, priority=50),
    ]
    crews = [Crew("A", 0, DAY), Crew("B", 1, DAY, skills={"electric"})]
    plan = greedy(problem(points, jobs, crews), fast_settings())
    assert plan.route_of("B").job_ids == ("high-near-B", "mid")
    assert plan.route_of("A").job_ids == ("low-near-A",)
    assert plan.method == "greedy"


def test_a_job_that_fits_no_shift_is_left_out():
    points = [(0, 0), (100, 0), (200, 0)]
    jobs = [Job("a", 1, service_s=1000, priority=90), Job("b", 2, service_s=1000, priority=10)]
    plan = greedy(problem(points, jobs, [Crew("A", 0, TimeWindow(0, 1500))]), fast_settings())
    assert plan.route_of("A").job_ids == ("a",)
    assert [(u.job_id, u.reason) for u in plan.unassigned] == [
        ("b", "dropped: lower priority than the jobs kept")
    ]


def test_two_crews_heading_to_one_job_do_not_both_get_it():
    points = [(0, 0), (100, 0), (500, 0), (900, 0)]
    jobs = [Job("j0", 2), Job("j1", 3)]
    crews = [Crew("A", 0, DAY, heading_to="j0"), Crew("B", 1, DAY, heading_to="j0")]
    plan = greedy(problem(points, jobs, crews), fast_settings())
    planned = [jid for r in plan.routes for jid in r.job_ids]
    assert sorted(planned) == ["j0", "j1"]
    assert plan.route_of("A").job_ids[0] == "j0"
