"""VROOM input/output formats: round trip, agreement with pyvroom, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InvalidMessage
from dispatch.model import UnassignedKind
from dispatch.solver import solve
from dispatch.vroom import plan_to_vroom, problem_from_vroom, problem_to_vroom
from tests.unit.dispatch.factories import fast_settings

SAMPLE = Path(__file__).parent / "data" / "sample_vroom.json"


@pytest.fixture
def doc():
    return json.loads(SAMPLE.read_text())


def test_sample_reads_into_the_model(doc):
    p = problem_from_vroom(doc)
    assert [c.id for c in p.crews] == ["1", "2"]
    crew = p.crew("2")
    assert crew.end is None and crew.shift.start_s == 600 and crew.capacity == {"0": 2}
    job = p.job("104")
    assert job.skills == {"1"} and job.materials == {"0": 1}
    assert [(w.start_s, w.end_s) for w in job.windows] == [(900, 1500), (2400, 3000)]


def test_problem_round_trips_through_the_vroom_format(doc):
    p = problem_from_vroom(doc)
    again = problem_to_vroom(p)
    assert problem_from_vroom(json.loads(json.dumps(again))) == p
    assert again["vehicles"] == doc["vehicles"]
    assert again["matrices"] == doc["matrices"]
    by_id = {j["id"]: j for j in again["jobs"]}
    for job in doc["jobs"]:
        assert by_id[job["id"]] == job


def test_model_extensions_ride_along():
    doc = {
        "vehicles": [{"id": 1, "start_index": 0, "cityfix": {"pinned_job": 5, "heading_to": 6}}],
        "jobs": [
            {"id": 5, "location_index": 0, "cityfix": {"deadline": 600}},
            {"id": 6, "location_index": 1},
        ],
        "matrix": [[0, 10], [10, 0]],
    }
    p = problem_from_vroom(doc)
    assert p.crew("1").pinned_job == "5" and p.job("5").deadline_s == 600
    assert problem_from_vroom(problem_to_vroom(p)) == p


def test_solution_is_in_vroom_output_format(doc):
    p = problem_from_vroom(doc)
    plan = solve(p, fast_settings())
    out = json.loads(json.dumps(plan_to_vroom(p, plan)))
    assert out["code"] == 0
    summary = out["summary"]
    assert summary["cost"] == sum(r["cost"] for r in out["routes"]) == plan.travel_s
    assert summary["routes"] == len(out["routes"])
    assert summary["unassigned"] == len(out["unassigned"])
    assert summary["service"] == sum(r["service"] for r in out["routes"])
    for route in out["routes"]:
        steps = route["steps"]
        assert [s["type"] for s in steps] == ["start"] + ["job"] * (len(steps) - 2) + ["end"]
        assert steps[-1]["duration"] == route["duration"] == route["cost"]
        arrivals = [s["arrival"] for s in steps]
        assert arrivals == sorted(arrivals)
        for s in steps[1:-1]:
            assert s["id"] == s["job"] and s["service"] >= 0 and s["waiting_time"] >= 0
        assert steps[0]["load"] == route["delivery"]
    reasons = {u["id"]: u["reason"] for u in out["unassigned"]}
    assert reasons == {105: "no crew with skill 4", 107: "capacity"}
    assert {u.kind for u in plan.unassigned} == {UnassignedKind.SKILL, UnassignedKind.CAPACITY}


def test_an_idle_crew_is_not_listed_and_its_drive_home_is_not_in_the_cost():
    doc = {
        "vehicles": [
            {"id": 1, "start_index": 0, "end_index": 0},
            {"id": 2, "start_index": 1, "end_index": 2},  # idle: no job is near it
        ],
        "jobs": [{"id": 7, "location_index": 3}],
        "matrices": {
            "car": {
                "durations": [
                    [0, 500, 500, 10],
                    [500, 0, 300, 500],
                    [500, 300, 0, 500],
                    [10, 500, 500, 0],
                ]
            }
        },
    }
    p = problem_from_vroom(doc)
    plan = solve(p, fast_settings())
    out = plan_to_vroom(p, plan)
    assert [r["vehicle"] for r in out["routes"]] == [1]
    assert out["summary"]["cost"] == out["routes"][0]["cost"] == 20
    assert plan.travel_s == 320  # the plan itself still counts crew 2's way to its end


def test_a_vehicle_without_time_window_reaches_windows_in_unix_time():
    at = 1_790_000_000  # 2026, in seconds since 1970
    doc = {
        "vehicles": [{"id": 1, "start_index": 0}],
        "jobs": [
            {"id": 7, "location_index": 1, "service": 600, "time_windows": [[at, at + 3600]]},
            {"id": 8, "location_index": 0, "time_windows": [[at + 7200, at + 9000]]},
        ],
        "matrices": {"car": {"durations": [[0, 120], [120, 0]]}},
    }
    p = problem_from_vroom(doc)
    out = plan_to_vroom(p, solve(p, fast_settings()))
    assert out["unassigned"] == []
    arrivals = {s["job"]: s["arrival"] for s in out["routes"][0]["steps"] if s["type"] == "job"}
    assert arrivals[7] <= at + 3600 and arrivals[8] <= at + 9000
    assert "time_window" not in problem_to_vroom(p)["vehicles"][0]  # still "none given"


def test_same_cost_and_unassigned_as_pyvroom_on_the_sample(doc, tmp_path):
    vroom = pytest.importorskip("vroom")
    path = tmp_path / "in.json"
    path.write_text(json.dumps(doc))
    theirs = vroom.Input.from_json(path).solve(exploration_level=5, nb_threads=1).to_dict()
    p = problem_from_vroom(doc)
    ours = plan_to_vroom(p, solve(p, fast_settings()))
    assert ours["summary"]["cost"] == theirs["summary"]["cost"]
    assert {u["id"] for u in ours["unassigned"]} == {u["id"] for u in theirs["unassigned"]}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"shipments": [{"pickup": {}, "delivery": {}}]}, "$.shipments"),
        ({"jobs": [{"id": 1, "location": [1.0, 2.0]}]}, "jobs[0].location_index"),
        ({"jobs": [{"id": 1, "location_index": 0, "pickup": [1]}]}, "jobs[0].pickup"),
        ({"jobs": [{"id": 1, "location_index": 99}]}, "jobs[0].location_index"),
        ({"jobs": [{"id": 1, "location_index": 0, "priority": 101}]}, "jobs[0].priority"),
        ({"matrices": {"car": {"durations": [[0, 1]]}}}, "matrices.car.durations"),
        ({"matrices": {"car": {"durations": [[0, True], [1, 0]]}}}, "matrices.car.durations[0][1]"),
        ({"matrices": {"car": {"durations": [[0, 1], [-1, 0]]}}}, "matrices.car.durations[1][0]"),
        ({"matrices": {"car": {"durations": [[0, 1], [1]]}}}, "matrices.car.durations"),
        (
            {"matrices": {"car": {"durations": [[0, 5], [5, 0]], "costs": [[0, 9], [9, 0]]}}},
            "matrices.car.costs",
        ),
    ],
)
def test_unsupported_or_bad_input_names_the_field(doc, patch, field):
    doc.update(patch)
    with pytest.raises(InvalidMessage) as err:
        problem_from_vroom(doc)
    assert err.value.field == field


def test_a_big_integer_matrix_reads_exactly():
    n = 300
    matrix = [[(i * 7919 + j * 104729) % 5000 for j in range(n)] for i in range(n)]
    doc = {"vehicles": [{"id": 1, "start_index": 0}], "jobs": [], "matrix": matrix}
    problem = problem_from_vroom(doc)
    assert [list(row) for row in problem.durations] == matrix
    assert all(type(x) is int for x in problem.durations[5])
    floats = {**doc, "matrix": [[float(x) for x in row] for row in matrix]}
    assert problem_from_vroom(floats).durations == problem.durations
