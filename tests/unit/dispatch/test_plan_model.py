"""Value objects: validation, readable reprs, comparing plans."""

from __future__ import annotations

import pytest

from dispatch.model import Crew, CrewRoute, Job, Plan, PlannedStop, Problem, TimeWindow, jobs_moved


def _route(crew, *jobs):
    stops = tuple(PlannedStop(j, 0, 0, 0, 0) for j in jobs)
    return CrewRoute(crew, stops, 0, 0, 0)


def _plan(routes, unassigned=()):
    from dispatch.model import Unassigned, UnassignedKind

    return Plan(
        tuple(routes),
        tuple(Unassigned(j, UnassignedKind.DROPPED, "") for j in unassigned),
        0,
        0,
        0,
    )


def test_reprs_are_readable():
    job = Job("J1", 3, service_s=600, skills={"asphalt"}, materials={"asphalt": 1}, priority=80)
    assert repr(job) == (
        "Job('J1', @3, service=600s, skills=['asphalt'], materials={'asphalt': 1}, priority=80)"
    )
    crew = Crew("C1", 0, TimeWindow(0, 3600), skills={"asphalt"}, heading_to="J1")
    assert repr(crew) == "Crew('C1', @0, TimeWindow(0..3600), skills=['asphalt'], heading_to='J1')"
    assert (
        repr(Problem.build([job], [crew], [[0] * 4] * 4)) == "Problem(jobs=1, crews=1, locations=4)"
    )


@pytest.mark.parametrize(
    ("jobs", "crews", "message"),
    [
        ([Job("a", 0), Job("a", 0)], [], "duplicate job"),
        ([Job("a", 5)], [], "outside the matrix"),
        ([Job("a", 0)], [Crew("c", 0, TimeWindow(0, 1), pinned_job="b")], "unknown job"),
        (
            [Job("a", 0)],
            [
                Crew("c", 0, TimeWindow(0, 1), pinned_job="a"),
                Crew("d", 0, TimeWindow(0, 1), pinned_job="a"),
            ],
            "pinned to both",
        ),
    ],
)
def test_inconsistent_problems_are_refused(jobs, crews, message):
    with pytest.raises(ValueError, match=message):
        Problem.build(jobs, crews, [[0, 1], [1, 0]])


def test_bad_values_are_refused():
    with pytest.raises(ValueError):
        TimeWindow(10, 5)
    with pytest.raises(ValueError):
        Job("a", 0, priority=101)
    with pytest.raises(ValueError):
        Job("a", 0, materials={"asphalt": -1})


def test_jobs_moved_between_plans():
    before = _plan([_route("A", "j1", "j2"), _route("B", "j3")], unassigned=["j4"])
    after = _plan([_route("A", "j2"), _route("B", "j3", "j1", "j4")], unassigned=["j5"])
    assert jobs_moved(before, after) == {"j1"}
    dropped = _plan([_route("A"), _route("B", "j3")], unassigned=["j1"])  # j2 was finished
    assert jobs_moved(before, dropped) == {"j1"}
