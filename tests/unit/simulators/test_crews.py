from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from core.schemas import Assignment, CrewPosition, CrewStatus
from simulators.crews import Crew, CrewSpec, Phase
from simulators.driving import distance_m

T0 = 1_800_000_000.0
A = (-8.6100, 41.1500)
B = (-8.6100, 41.1500 + 300 / 110_574)
C = (B[0] + 400 / (111_320 * 0.75305), B[1])


def at(s: float) -> datetime:
    return datetime.fromtimestamp(T0 + s, tz=UTC)


def plan(stops=("i-1", "i-2"), created: float = 0.0, etas=(60.0, 80.0)) -> Assignment:
    points = {"i-1": B, "i-2": C}
    return Assignment.model_validate(
        {
            "crew_id": "roads-01",
            "plan_id": f"p-{created}",
            "stops": [
                {
                    "incident_id": s,
                    "eta": at(60),
                    "lat": points[s][1],
                    "lon": points[s][0],
                    "service_s": 600.0,
                }
                for s in stops
            ],
            "route": {"type": "LineString", "coordinates": [A, B, C][: len(stops) + 1]},
            "created_at": at(created),
            "leg_eta_s": list(etas[: len(stops)]),
        }
    )


def crew(**over) -> Crew:
    spec = CrewSpec("roads-01", ("roads",), T0, T0 + 8 * 3600, (A[1], A[0]))
    kw = {"rng": np.random.default_rng(0), "position_interval_s": 5.0}
    kw.update(over)
    return Crew(spec, **kw)


def statuses(msgs) -> list[tuple[str, str | None]]:
    return [(m.status.value, m.incident_id) for m in msgs if isinstance(m, CrewStatus)]


def run(c: Crew, start: float, end: float, step: float = 1.0):
    out = []
    t = start
    while t <= end:
        out += c.tick(T0 + t)
        t += step
    return out


def test_a_crew_starts_available_with_skills_and_shift_end() -> None:
    c = crew()
    msgs = c.tick(T0)
    first = msgs[0]
    assert isinstance(first, CrewStatus) and first.status.value == "available"
    assert first.skills == ["roads"] and first.shift_end == at(8 * 3600)
    assert any(isinstance(m, CrewPosition) for m in msgs)


def test_a_crew_drives_its_plan_stop_by_stop() -> None:
    c = crew()
    c.tick(T0)
    c.on_assignment(plan(), T0)
    msgs = run(c, 1, 60 + 600 + 80 + 600 + 5)
    assert statuses(msgs) == [
        ("en_route", "i-1"),
        ("on_site", "i-1"),
        ("completed", "i-1"),
        ("en_route", "i-2"),
        ("on_site", "i-2"),
        ("completed", "i-2"),
        ("available", None),
    ]
    assert c.completed == ["i-1", "i-2"]
    assert (c.lat, c.lon) == pytest.approx((C[1], C[0]))


def test_a_crew_reports_its_stock_and_uses_what_each_fix_needs() -> None:
    spec = CrewSpec("roads-01", ("roads",), T0, T0 + 8 * 3600, (A[1], A[0]),
                    materials={"asphalt_bags": 5, "signs": 1})
    c = Crew(spec, rng=np.random.default_rng(0), position_interval_s=5.0)
    first = c.tick(T0)[0]
    assert first.materials == {"asphalt_bags": 5, "signs": 1}
    p = plan()
    p = p.model_copy(update={"stops": [
        p.stops[0].model_copy(update={"materials": {"asphalt_bags": 2}}), p.stops[1]]})
    c.on_assignment(p, T0)
    msgs = run(c, 1, 60 + 600 + 80 + 600 + 5)
    stock = [(m.status.value, m.materials) for m in msgs if isinstance(m, CrewStatus)]
    assert stock[0] == ("en_route", {"asphalt_bags": 5, "signs": 1})
    assert ("completed", {"asphalt_bags": 3, "signs": 1}) in stock
    assert stock[-1] == ("available", {"asphalt_bags": 3, "signs": 1})
    assert crew().tick(T0)[0].materials is None, "no stock, nothing tracked"


def test_positions_follow_the_route_by_time() -> None:
    c = crew()
    c.tick(T0)
    c.on_assignment(plan(etas=(60.0, 80.0)), T0)
    c.tick(T0 + 1)  # departs at t=1
    msgs = c.tick(T0 + 31)  # half the first leg's ETA
    pos = [m for m in msgs if isinstance(m, CrewPosition)][-1]
    assert distance_m(A, (pos.lon, pos.lat)) == pytest.approx(150, abs=3)
    assert pos.speed_kph == pytest.approx(300 / 60 * 3.6, rel=0.02)


def test_a_newer_plan_replaces_the_rest_of_the_route() -> None:
    c = crew()
    c.tick(T0)
    c.on_assignment(plan(), T0)
    run(c, 1, 10)
    c.on_assignment(plan(stops=("i-2",), created=10.0, etas=(120.0,)), T0 + 10)
    msgs = run(c, 11, 200)
    assert statuses(msgs)[:2] == [("en_route", "i-2"), ("on_site", "i-2")]
    c.on_assignment(plan(created=0.0), T0 + 200)  # an older plan arriving late is ignored
    assert c.plan is not None and c.plan.plan_id == "p-10.0"


def test_a_crew_goes_off_shift_after_finishing_the_job_on_site() -> None:
    spec = CrewSpec("roads-01", ("roads",), T0, T0 + 100, (A[1], A[0]))
    c = Crew(spec, rng=np.random.default_rng(0), position_interval_s=5.0)
    c.tick(T0)
    c.on_assignment(plan(), T0)
    msgs = run(c, 1, 1000)
    assert statuses(msgs)[-3:] == [("on_site", "i-1"), ("completed", "i-1"), ("off_shift", None)]
    assert c.phase is Phase.OFF_SHIFT
    assert c.tick(T0 + 2000) == []


def test_breakdowns_make_a_crew_unavailable_for_a_while() -> None:
    c = crew(breakdowns_per_shift=50.0, breakdown_s=300.0)
    msgs = run(c, 0, 3 * 3600, step=5.0)
    seq = statuses(msgs)
    assert ("unavailable", None) in seq
    i = seq.index(("unavailable", None))
    assert seq[i + 1] == ("available", None)
    assert c.breakdowns >= 1


def test_crews_are_reproducible_with_the_same_seed() -> None:
    def trace(seed: int) -> list:
        c = crew(rng=np.random.default_rng(seed), breakdowns_per_shift=20.0, breakdown_s=200.0)
        return statuses(run(c, 0, 4 * 3600, step=10.0))

    assert trace(1) == trace(1)


def test_a_reopened_incident_assigned_again_is_driven_to_again() -> None:
    c = crew()
    c.tick(T0)
    c.on_assignment(plan(stops=("i-1",), etas=(60.0,)), T0)
    first = run(c, 1, 60 + 600 + 5)  # completed at t=661
    assert statuses(first)[-2:] == [("completed", "i-1"), ("available", None)]
    # Made just after the completion, before the dispatcher could have heard of it.
    c.on_assignment(plan(stops=("i-1",), created=700.0, etas=(60.0,)), T0 + 700)
    assert statuses(run(c, 700, 800)) == []
    # New evidence reopened it and the dispatcher sends the same crew back.
    c.on_assignment(plan(stops=("i-1",), created=3000.0, etas=(60.0,)), T0 + 3000)
    again = run(c, 3000, 3000 + 60 + 600 + 5)
    assert statuses(again) == [
        ("en_route", "i-1"),
        ("on_site", "i-1"),
        ("completed", "i-1"),
        ("available", None),
    ]
    assert c.completed == ["i-1", "i-1"]


def test_plans_left_on_the_broker_by_other_runs_are_ignored() -> None:
    c = crew(run_start_s=T0)
    c.tick(T0)
    # A demo ran the city's clock days ahead; an earlier run planned before this one began.
    assert not c.on_assignment(plan(created=3 * 86400.0), T0 + 5)
    assert not c.on_assignment(plan(created=-3600.0), T0 + 5)
    assert c.plan is None
    # A plan of this run, even one stamped a minute ahead of the crew's clock, is taken.
    assert c.on_assignment(plan(stops=("i-1",), created=65.0, etas=(60.0,)), T0 + 5)
    assert statuses(run(c, 6, 70)) == [("en_route", "i-1"), ("on_site", "i-1")]
