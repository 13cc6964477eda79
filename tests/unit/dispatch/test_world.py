"""The dispatcher's world: incidents and crew events in, a Problem out, a plan back to wire."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

import geo
from core.schemas import Command, CommandKind, CrewPosition, CrewStatus, Incident
from core.settings import DispatchSettings
from dispatch import _worker, world
from dispatch.model import TimeWindow
from dispatch.solver import solve
from dispatch.world import World
from tests import factories

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SETTINGS = DispatchSettings(time_limit_s=0.3)

# Points inside the aguascalientes service area (lat, lon).
WEST = (21.863, -102.280)
SOUTH = (21.865, -102.275)
CENTRE = (21.869, -102.270)
EAST = (21.872, -102.265)
FAR_AWAY = (41.15, -8.61)  # Porto


def incident(incident_id: str, at: tuple[float, float] = CENTRE, **over: Any) -> Incident:
    times = {
        "opened_at": NOW - timedelta(hours=1),
        "updated_at": NOW - timedelta(minutes=30),
        "expected_at": NOW + timedelta(hours=4),
    }
    doc = factories.incident(incident_id, lat=at[0], lon=at[1], **{**times, **over})
    return Incident.model_validate(doc)


def status(crew_id: str, state: str = "available", **over: Any) -> CrewStatus:
    doc: dict[str, Any] = {
        "crew_id": crew_id,
        "status": state,
        "at": NOW - timedelta(minutes=5),
        "skills": ["roads", "electrical"],
        "shift_end": NOW + timedelta(hours=8),
    }
    doc.update(over)
    return CrewStatus.model_validate(doc)


def position(crew_id: str, place: tuple[float, float], **over: Any) -> CrewPosition:
    doc: dict[str, Any] = {
        "crew_id": crew_id,
        "lat": place[0],
        "lon": place[1],
        "at": NOW - timedelta(minutes=1),
    }
    doc.update(over)
    return CrewPosition.model_validate(doc)


def command(kind: CommandKind, **over: Any) -> Command:
    doc: dict[str, Any] = {
        "command_id": uuid.uuid4(),
        "kind": kind,
        "at": NOW - timedelta(minutes=2),
        "issued_by": "dispatcher-1",
    }
    doc.update(over)
    return Command.model_validate(doc)


def crew(
    w: World, crew_id: str, place: tuple[float, float], state: str = "available", **over: Any
) -> None:
    w.apply_crew_status(status(crew_id, state, **over))
    w.apply_crew_position(position(crew_id, place))


def problem_of(w: World, graph: geo.RoadGraph):
    draft = w.draft(NOW, SETTINGS)
    where = world.sites(draft, graph)
    durations = graph.travel_time_matrix(list(where.nodes), list(where.nodes))
    return draft, where, world.build_problem(draft, where, durations)


# -- incidents and crews -> Problem ---------------------------------------------------------


def test_active_incidents_are_jobs_and_finished_ones_leave(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("open-1"))
    w.apply_incident(incident("reopened-1", EAST, status="reopened"))
    w.apply_incident(incident("resolved-1", status="resolved"))
    w.apply_incident(incident("merged-1", status="merged", merged_into="open-1"))
    w.apply_incident(incident("going-1", SOUTH))
    w.apply_incident(incident("going-1", SOUTH, version=2, status="closed"))
    crew(w, "c1", WEST)

    _, _, problem = problem_of(w, ags)

    assert sorted(j.id for j in problem.jobs) == ["open-1", "reopened-1"]


def test_job_takes_skill_service_priority_and_deadline_from_the_incident(
    ags: geo.RoadGraph,
) -> None:
    w = World()
    w.apply_incident(
        incident(
            "sig",
            category="traffic_signal_fault",
            family="traffic_signal",
            priority="P1",
            score=90.0,
            skill="signals",
            service_s=1200.0,
        )
    )
    w.apply_incident(
        incident("fam", category="fallen_tree", family="fallen_tree", priority="P4", score=5.0)
    )
    crew(w, "c1", WEST)

    _, _, problem = problem_of(w, ags)

    sig, fam = problem.job("sig"), problem.job("fam")
    assert sig.skills == {"signals"} and sig.service_s == 1200
    assert fam.skills == {"arborist"}, "family fallback when the incident names no skill"
    assert fam.service_s == SETTINGS.default_service_s
    assert sig.priority > fam.priority
    assert sig.deadline_s == 4 * 3600


def test_manual_priority_outranks_the_score() -> None:
    low = incident("a", priority="P4", score=10.0, manual_priority="P1")
    high = incident("b", priority="P2", score=60.0)
    assert world.priority_of(low) > world.priority_of(high)


def test_crews_on_shift_with_their_skills_and_shift_end(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("pothole-1"))
    w.apply_incident(incident("leak-1", EAST, category="water_leak", family="water"))
    crew(w, "roads", WEST, skills=["roads"], shift_end=NOW + timedelta(hours=2))
    crew(w, "anything", SOUTH, skills=None)
    crew(w, "no-end", EAST, shift_end=None)
    crew(w, "broken", CENTRE, "unavailable")
    crew(w, "home", CENTRE, "off_shift")
    crew(w, "ended", CENTRE, shift_end=NOW - timedelta(minutes=1))
    w.apply_crew_status(status("nowhere"))  # no position yet: cannot be planned

    draft, _, problem = problem_of(w, ags)

    assert sorted(c.id for c in problem.crews) == ["anything", "no-end", "roads"]
    roads = problem.crew("roads")
    assert roads.shift == TimeWindow(0, 2 * 3600)
    assert roads.skills == {"roads"}
    assert problem.crew("anything").skills == {"roads", "water"}, "no skills means all"
    # No shift end given: default_shift_s from when it was last heard of (a minute ago).
    assert problem.crew("no-end").shift.end_s == SETTINGS.default_shift_s - 60
    assert any("nowhere" in n for n in draft.notes)


def test_matrix_is_over_unique_graph_nodes(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("a", CENTRE))
    w.apply_incident(incident("b", (CENTRE[0] + 0.00001, CENTRE[1])))  # same corner
    crew(w, "c1", CENTRE)
    crew(w, "c2", EAST)

    _, where, problem = problem_of(w, ags)

    assert len(where.nodes) == len(set(where.nodes)) == 2
    assert problem.job("a").location == problem.job("b").location == problem.crew("c1").start
    east = problem.crew("c2").start
    assert problem.durations[east][problem.job("a").location] > 0


def test_points_outside_the_city_are_left_out_with_a_note(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("here"))
    w.apply_incident(incident("porto", FAR_AWAY))
    crew(w, "c1", WEST)
    crew(w, "c-porto", FAR_AWAY)

    _, where, problem = problem_of(w, ags)

    assert [j.id for j in problem.jobs] == ["here"]
    assert [c.id for c in problem.crews] == ["c1"]
    assert any("porto" in n and "outside the service area" in n for n in where.notes)


def test_on_site_work_is_pinned_and_en_route_work_is_heading(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("fixing", SOUTH, status="on_site", crew_id="c1", service_s=1800.0))
    w.apply_incident(incident("driving-to", EAST, status="en_route", crew_id="c2"))
    w.apply_incident(incident("waiting", CENTRE))
    crew(w, "c1", SOUTH, "on_site", incident_id="fixing", at=NOW - timedelta(minutes=10))
    crew(w, "c2", CENTRE, "en_route", incident_id="driving-to")

    _, _, problem = problem_of(w, ags)

    assert problem.crew("c1").pinned_job == "fixing"
    assert problem.crew("c2").heading_to == "driving-to"
    assert problem.job("fixing").service_s == 1800 - 600, "only the time left on site"


def test_a_crew_on_site_past_its_shift_end_finishes_its_job_and_gets_nothing_more(
    ags: geo.RoadGraph,
) -> None:
    w = World()
    w.apply_incident(incident("fixing", SOUTH, status="on_site", crew_id="c1", service_s=2700.0))
    w.apply_incident(incident("waiting", CENTRE))
    crew(w, "c1", SOUTH, "on_site", incident_id="fixing", at=NOW - timedelta(minutes=11),
         shift_end=NOW - timedelta(minutes=1))
    crew(w, "c2", WEST)

    _, _, problem = problem_of(w, ags)

    assert problem.crew("c1").pinned_job == "fixing", "the crew on it keeps it"
    assert problem.crew("c1").shift == TimeWindow(0, 0)
    assert problem.job("fixing").service_s == 2700 - 660
    plan = solve(problem, SETTINGS)
    stops = {r.crew_id: [s.job_id for s in r.stops] for r in plan.routes}
    assert stops["c1"] == ["fixing"] and stops["c2"] == ["waiting"]


def test_time_on_site_counts_once_and_only_for_the_crew_doing_the_job(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("fixing", SOUTH, status="on_site", crew_id="c1", service_s=2700.0))
    for crew_id in ("c1", "c2"):
        crew(w, crew_id, SOUTH, "on_site", incident_id="fixing", at=NOW - timedelta(minutes=10))

    _, _, problem = problem_of(w, ags)
    assert problem.job("fixing").service_s == 2700 - 600, "two crews on site: counted once"

    stood_down = World()
    stood_down.apply_incident(
        incident("fixing", SOUTH, status="on_site", crew_id="c1", service_s=2700.0)
    )
    crew(stood_down, "c1", SOUTH, "on_site", incident_id="fixing", at=NOW - timedelta(minutes=10))
    crew(stood_down, "c2", WEST)
    stood_down.apply_command(command(CommandKind.CREW_UNAVAILABLE, crew_id="c1"))
    _, _, problem = problem_of(stood_down, ags)
    job = problem.job("fixing")
    assert job.service_s == 2700 and job.materials, "nobody is on it: the whole job, with material"


def test_incident_crew_fills_in_when_the_crew_said_nothing_newer(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(
        incident(
            "fixing", SOUTH, status="on_site", crew_id="c1", updated_at=NOW - timedelta(minutes=1)
        )
    )
    w.apply_incident(
        incident(
            "old-news",
            EAST,
            status="en_route",
            crew_id="c2",
            updated_at=NOW - timedelta(minutes=20),
        )
    )
    crew(w, "c1", SOUTH, at=NOW - timedelta(minutes=10))  # older than the incident
    crew(w, "c2", CENTRE, at=NOW - timedelta(minutes=5))  # newer: it says available

    _, _, problem = problem_of(w, ags)

    assert problem.crew("c1").pinned_job == "fixing"
    assert problem.crew("c2").heading_to is None


def test_work_a_crew_completed_is_not_planned_again(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("done", SOUTH, status="on_site", crew_id="c1"))
    w.apply_incident(incident("next", EAST))
    crew(w, "c1", SOUTH, "completed", incident_id="done", at=NOW - timedelta(minutes=2))
    w.apply_crew_status(status("c1", at=NOW - timedelta(minutes=2)))

    _, _, problem = problem_of(w, ags)

    assert [j.id for j in problem.jobs] == ["next"]


def test_a_pin_command_forces_the_incident_onto_that_crew(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("near-c1", WEST))
    crew(w, "c1", WEST)
    crew(w, "c2", EAST)
    w.apply_command(command(CommandKind.PIN, incident_id="near-c1", crew_id="c2"))

    draft, _, problem = problem_of(w, ags)
    outcome = _worker.plan_draft(draft, ags, SETTINGS, None, "p1")

    assert problem.job("near-c1").skills == {"roads", "pin:c2"}
    assert outcome.plan.crew_of("near-c1") == "c2", "the pinned crew, though c1 is nearer"
    assert [s.incident_id for s in outcome.assignments["c2"].stops] == ["near-c1"]


def test_a_pin_to_a_crew_off_shift_is_ignored(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("a", WEST))
    crew(w, "c1", WEST)
    crew(w, "gone", EAST, "off_shift")
    w.apply_command(command(CommandKind.PIN, incident_id="a", crew_id="gone"))

    draft, _, problem = problem_of(w, ags)

    assert problem.job("a").skills == {"roads"}
    assert any("gone" in n for n in draft.notes)


def test_a_stood_down_crew_stays_out_until_it_comes_back_on_duty(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("a"))
    crew(w, "c1", WEST)

    assert w.apply_command(command(CommandKind.CREW_UNAVAILABLE, crew_id="c1")) == "crew"
    assert problem_of(w, ags)[2].crews == ()
    # Its app answers the empty plan with "available": that is not coming back.
    assert w.apply_crew_status(status("c1", at=NOW - timedelta(minutes=1))) is None
    assert problem_of(w, ags)[2].crews == ()
    # Off duty (the truck in the garage), then on duty again: back.
    w.apply_crew_status(status("c1", "unavailable", at=NOW - timedelta(seconds=50)))
    assert w.apply_crew_status(status("c1", at=NOW - timedelta(seconds=40))) == "crew"
    assert [c.id for c in problem_of(w, ags)[2].crews] == ["c1"]


def test_a_crew_available_command_ends_a_stand_down_in_any_replay_order(
    ags: geo.RoadGraph,
) -> None:
    down = command(CommandKind.CREW_UNAVAILABLE, crew_id="c1", at=NOW - timedelta(minutes=3))
    up = command(CommandKind.CREW_AVAILABLE, crew_id="c1", at=NOW - timedelta(minutes=2))
    off = status("c1", "unavailable", at=NOW - timedelta(minutes=4))  # before the stand-down
    for order in ([down, up], [up, down]):
        w = World()
        w.apply_incident(incident("a"))
        crew(w, "c1", WEST)
        w.apply_crew_status(off)
        w.apply_crew_status(status("c1", at=NOW - timedelta(minutes=1)))
        for c in order:
            w.apply_command(c)
        assert [c.id for c in problem_of(w, ags)[2].crews] == ["c1"], order
    w = World()
    crew(w, "c1", WEST)
    w.apply_command(down)  # an off-duty spell before the stand-down does not end it
    w.apply_crew_status(off)
    assert w.crews["c1"].stood_down


def test_a_crew_gone_silent_leaves_the_plan_after_a_default_shift(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("a"))
    long_ago = NOW - timedelta(seconds=SETTINGS.default_shift_s + 60)
    w.apply_crew_status(status("quiet", shift_end=None, at=long_ago))
    w.apply_crew_position(position("quiet", WEST, at=long_ago))
    crew(w, "talking", EAST, shift_end=None)

    assert [c.id for c in problem_of(w, ags)[2].crews] == ["talking"]


def test_an_old_crew_link_is_not_applied_after_the_crew_moved_on(ags: geo.RoadGraph) -> None:
    # c1 set off for "a" at 08:30, broke down, came back available at 08:50; "a" was
    # rescored at 08:55 (updated_at moves), but it entered en_route at 08:30.
    w = World()
    t = NOW - timedelta(minutes=30)
    w.apply_incident(
        incident(
            "a",
            status="en_route",
            crew_id="c1",
            updated_at=NOW - timedelta(minutes=5),
            history=[
                {"status": "open", "at": (NOW - timedelta(hours=1)).isoformat()},
                {"status": "en_route", "at": t.isoformat()},
            ],
        )
    )
    crew(w, "c1", WEST, at=NOW - timedelta(minutes=10))

    assert problem_of(w, ags)[2].crew("c1").heading_to is None


def test_a_pin_older_than_a_reopening_is_ignored(ags: geo.RoadGraph) -> None:
    w = World()
    crew(w, "c1", WEST)
    crew(w, "c2", EAST)
    reopened = incident(
        "a",
        status="reopened",
        history=[
            {"status": "open", "at": (NOW - timedelta(hours=3)).isoformat()},
            {"status": "resolved", "at": (NOW - timedelta(hours=2)).isoformat()},
            {"status": "reopened", "at": (NOW - timedelta(hours=1)).isoformat()},
        ],
    )
    # Replayed after the restart in this order: the reopened state, then the old pin.
    w.apply_incident(reopened)
    w.apply_command(
        command(CommandKind.PIN, incident_id="a", crew_id="c2", at=NOW - timedelta(hours=2.5))
    )
    draft, _, problem = problem_of(w, ags)

    assert problem.job("a").skills == {"roads"}
    assert any("older than its reopening" in n for n in draft.notes)


def test_a_backlog_beyond_what_crews_can_reach_this_shift_waits() -> None:
    w = World()
    for i in range(20):
        w.apply_incident(incident(f"p{i:02}", service_s=2700.0, score=5.0 * i))
    w.apply_incident(incident("fixing", SOUTH, status="on_site", crew_id="c1", score=0.0))
    w.apply_incident(incident("pinned", EAST, priority="P4", score=0.0))
    w.apply_incident(incident("tree", EAST, category="fallen_tree", family="fallen_tree"))
    w.apply_command(command(CommandKind.PIN, incident_id="pinned", crew_id="c1"))
    crew(w, "c1", SOUTH, "on_site", incident_id="fixing", shift_end=NOW + timedelta(hours=1))

    draft = w.draft(NOW, SETTINGS)

    # One hour holds one or two 45-minute jobs: the crew shortlists twice that, most urgent.
    planned = {j.incident_id for j in draft.jobs}
    assert planned == {"fixing", "pinned", "tree", "p19", "p18", "p17", "p16"}
    assert len(draft.deferred) == 16 and "p00" in draft.deferred


# -- what asks for a re-plan --------------------------------------------------------------


def test_what_triggers_a_replan() -> None:
    w = World()
    assert w.apply_incident(incident("a")) == "incident"
    # The dispatcher's own plan echoed back (open -> assigned) is not news.
    assert w.apply_incident(incident("a", version=2, status="assigned", crew_id="c1")) is None
    assert w.apply_incident(incident("a", version=3, status="assigned", score=33.0)) is None
    assert w.apply_incident(incident("a", version=4, priority="P1")) == "incident"
    assert w.apply_incident(incident("a", version=3)) is None, "an older version"
    sooner = NOW + timedelta(hours=1)
    assert w.apply_incident(incident("a", version=5, priority="P1", expected_at=sooner)) == (
        "incident"
    ), "a new deadline"
    assert w.apply_incident(
        incident("a", version=6, priority="P1", expected_at=sooner, materials={"asphalt_bags": 2})
    ) == "incident", "new material needs"
    assert w.apply_incident(incident("a", version=7, status="resolved")) == "incident"
    assert w.apply_incident(incident("b", status="closed")) is None

    assert w.apply_crew_status(status("c1")) == "crew"
    assert w.apply_crew_position(position("c1", WEST)) == "crew", "first position: plannable"
    assert w.apply_crew_position(position("c1", EAST, at=NOW)) is None
    assert w.apply_crew_status(status("c1", at=NOW - timedelta(minutes=4))) is None
    assert w.apply_crew_status(status("c1", "en_route", incident_id="a", at=NOW)) == "crew"
    assert w.apply_command(command(CommandKind.PIN, incident_id="a", crew_id="c1")) == "pin"
    assert w.apply_command(command(CommandKind.CLOSE, incident_id="a")) is None


# -- plan -> assignments ---------------------------------------------------------------------


def test_plan_becomes_assignments_with_etas_and_road_geometry(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("east", EAST, service_s=600.0))
    w.apply_incident(incident("centre", CENTRE, service_s=600.0))
    crew(w, "worker", WEST)
    crew(w, "idle", SOUTH, skills=["water"])

    draft = w.draft(NOW, SETTINGS)
    outcome = _worker.plan_draft(draft, ags, SETTINGS, None, "plan-1")

    work = outcome.assignments["worker"]
    assert work.plan_id == "plan-1" and work.created_at == NOW
    assert [s.incident_id for s in work.stops] == ["centre", "east"]
    first, second = work.stops
    assert NOW < first.eta < second.eta
    assert second.eta >= first.eta + timedelta(seconds=600), "service before driving on"
    assert (first.lat, first.lon) == CENTRE
    assert len(work.leg_eta_s) == 2 and all(x > 0 for x in work.leg_eta_s)
    # The first leg drives from the crew's node to the stop: the ETA says as much.
    assert abs((first.eta - NOW).total_seconds() - work.leg_eta_s[0]) <= 1
    line = np.array(work.route.coordinates)
    assert work.route.type == "LineString" and len(line) > 3
    assert tuple(line[0]) == (WEST[1], WEST[0]), "starts where the crew is"
    lon0, lat0, lon1, lat1 = ags.bounds
    assert (line[:, 0] >= lon0 - 0.01).all() and (line[:, 0] <= lon1 + 0.01).all()
    assert (line[:, 1] >= lat0 - 0.01).all() and (line[:, 1] <= lat1 + 0.01).all()
    # The line passes (nearly) through each stop.
    for stop in work.stops:
        d = np.hypot(line[:, 0] - stop.lon, line[:, 1] - stop.lat).min()
        assert d < 0.002

    idle = outcome.assignments["idle"]
    assert idle.stops == [] and idle.leg_eta_s == []
    assert idle.route.coordinates == [(SOUTH[1], SOUTH[0])] * 2


def test_a_crew_carries_only_the_material_it_reports(ags: geo.RoadGraph) -> None:
    w = World()
    # A pothole uses its family's asphalt; a lamp names its own need.
    w.apply_incident(incident("hole-1", EAST, service_s=300.0))
    w.apply_incident(incident("hole-2", CENTRE, service_s=300.0, priority="P2"))
    w.apply_incident(
        incident(
            "lamp",
            SOUTH,
            category="streetlight_out",
            family="lighting",
            service_s=300.0,
            skill="roads",
            materials={"lamps": 2},
        )
    )
    crew(w, "short", WEST, skills=["roads"], materials={"asphalt_bags": 2})

    draft = w.draft(NOW, SETTINGS)
    assert {j.incident_id: dict(j.materials) for j in draft.jobs} == {
        "hole-1": {"asphalt_bags": 2},
        "hole-2": {"asphalt_bags": 2},
        "lamp": {"lamps": 2},
    }
    outcome = _worker.plan_draft(draft, ags, SETTINGS, None, "plan-m")

    [stop] = outcome.assignments["short"].stops
    assert stop.incident_id == "hole-2", "the higher priority gets the one load of asphalt"
    assert stop.materials == {"asphalt_bags": 2}
    reasons = {u.job_id: u.reason for u in outcome.plan.unassigned}
    assert reasons == {"hole-1": "capacity", "lamp": "capacity"}

    # A crew that does not report its stock is not limited by it.
    crew(w, "short", WEST, skills=["roads"])
    outcome = _worker.plan_draft(w.draft(NOW, SETTINGS), ags, SETTINGS, None, "plan-n")
    assert len(outcome.assignments["short"].stops) == 3 and not outcome.plan.unassigned


def test_pinned_stop_comes_first_and_says_so(ags: geo.RoadGraph) -> None:
    w = World()
    w.apply_incident(incident("fixing", SOUTH, status="on_site", crew_id="c1", service_s=900.0))
    w.apply_incident(incident("next", EAST))
    crew(w, "c1", SOUTH, "on_site", incident_id="fixing", at=NOW)

    outcome = _worker.plan_draft(w.draft(NOW, SETTINGS), ags, SETTINGS, None, "p")

    stops = outcome.assignments["c1"].stops
    assert [(s.incident_id, s.pinned) for s in stops] == [("fixing", True), ("next", False)]
    assert stops[1].eta >= NOW + timedelta(seconds=900)


def test_published_plans_warm_start_the_next_and_compare_by_stops(ags: geo.RoadGraph) -> None:
    w = World()
    for i, at in enumerate((EAST, CENTRE, SOUTH)):
        w.apply_incident(incident(f"i{i}", at))
    crew(w, "c1", WEST)
    crew(w, "c2", EAST)
    first = _worker.plan_draft(w.draft(NOW, SETTINGS), ags, SETTINGS, None, "p1")

    previous = world.plan_from_assignments(first.assignments.values())
    later = NOW + timedelta(minutes=1)
    again = _worker.plan_draft(w.draft(later, SETTINGS), ags, SETTINGS, previous, "p2")

    assert again.plan.warm_started
    assert again.moved == 0
    for crew_id, a in again.assignments.items():
        assert world.same_stops(first.assignments[crew_id], a)
        assert a.plan_id == "p2"
    assert not world.same_stops(None, again.assignments["c1"])


def test_no_crews_and_no_jobs_is_a_plan_too(ags: geo.RoadGraph) -> None:
    outcome = _worker.plan_draft(World().draft(NOW, SETTINGS), ags, SETTINGS, None, "p")
    assert outcome.assignments == {} and outcome.plan.routes == ()


def test_unreachable_legs_become_a_time_no_shift_covers() -> None:
    draft = world.Draft(
        NOW,
        (world.JobDraft("j", 0, 0, 60, frozenset(), 10, None),),
        (world.CrewDraft("c", 0, 0, 3600, None),),
    )
    where = world.Sites((5, 6), {"j": 0}, {"c": 1})
    durations = np.array([[0.0, np.inf], [np.inf, 0.0]])
    problem = world.build_problem(draft, where, durations)
    assert problem.durations[1][0] == world.UNREACHABLE_S


def test_road_cache_answers_like_the_graph(ags: geo.RoadGraph) -> None:
    cache = _worker.RoadCache(ags)
    nodes = [int(n) for n in ags.snap(*zip(WEST, SOUTH, CENTRE, EAST, strict=True)).node]
    targets = nodes[1:]

    first = cache.matrix(nodes, targets)
    again = cache.matrix([*nodes, 7], targets)  # a new place: one more search, same answers

    exact = ags.travel_time_matrix(nodes, targets)
    np.testing.assert_allclose(first[:, 1:], exact)
    assert np.isinf(first[:, 0]).all(), "nothing drives to a crew's start"
    np.testing.assert_allclose(again[:4, 1:4], exact)
    np.testing.assert_allclose(again[4, 1:4], ags.travel_time_matrix([7], targets)[0])

    route, exact_route = cache.route(nodes), ags.route(nodes)
    assert route.coordinates == exact_route.coordinates
    assert route.leg_travel_time_s == pytest.approx(exact_route.leg_travel_time_s)
    assert cache.route(nodes).coordinates == exact_route.coordinates  # from cached legs
