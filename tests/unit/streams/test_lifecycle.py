"""Lifecycle: open -> assigned -> en_route -> on_site -> resolved -> closed, and the detours."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core import schemas
from core.clock import Clock
from core.schemas import CrewState, Incident, IncidentStatus, Priority
from streams import lifecycle
from streams.engine import Inline
from tests import factories
from tests.unit.streams.conftest import T0, later, point_along, report_raw

S = IncidentStatus


def _incident(**over) -> Incident:
    t = datetime(2025, 5, 1, 8, tzinfo=UTC)
    doc = dict(
        incident_id="road_surface.1.2.abc",
        status=S.OPEN,
        category="pothole",
        family="road_surface",
        priority=Priority.P3,
        score=30.0,
        score_breakdown={"severity": 30.0},
        lat=21.87,
        lon=-102.27,
        evidence=[],
        reporters=1,
        opened_at=t,
        updated_at=t,
        expected_at=t + timedelta(days=3),
    )
    doc.update(over)
    return Incident(**doc)


T = datetime(2025, 5, 1, 9, tzinfo=UTC)


def test_the_happy_path_keeps_every_transition_with_its_time():
    inc = _incident()
    inc = lifecycle.on_assigned(inc, "crew-1", T)
    inc = lifecycle.on_crew_status(inc, "crew-1", CrewState.EN_ROUTE, T + timedelta(minutes=1))
    inc = lifecycle.on_crew_status(inc, "crew-1", CrewState.ON_SITE, T + timedelta(minutes=20))
    inc = lifecycle.on_crew_status(inc, "crew-1", CrewState.COMPLETED, T + timedelta(minutes=50))
    assert inc.status == S.RESOLVED and inc.crew_id == "crew-1"
    assert not lifecycle.close_due(inc, T + timedelta(hours=1), close_after_s=3600)
    assert lifecycle.close_due(inc, T + timedelta(hours=2), close_after_s=3600)
    inc = lifecycle.on_close(inc, T + timedelta(hours=2), "grace period over")
    assert [t.status for t in inc.history] == [
        S.ASSIGNED,
        S.EN_ROUTE,
        S.ON_SITE,
        S.RESOLVED,
        S.CLOSED,
    ]
    assert [t.at for t in inc.history] == sorted(t.at for t in inc.history)


def test_dropped_from_the_plan_goes_back_to_open_but_not_when_moved_to_another_crew():
    inc = lifecycle.on_assigned(_incident(), "crew-1", T)
    moved = lifecycle.on_assigned(inc, "crew-2", T + timedelta(seconds=1))
    assert moved.crew_id == "crew-2"
    assert lifecycle.on_unassigned(moved, "crew-1", T + timedelta(seconds=2)) is moved
    dropped = lifecycle.on_unassigned(moved, "crew-2", T + timedelta(seconds=3))
    assert dropped.status == S.OPEN and dropped.crew_id is None


def test_crew_status_never_moves_backwards_and_ignores_unrelated_states():
    inc = lifecycle.on_crew_status(_incident(), "crew-1", CrewState.ON_SITE, T)
    assert inc.status == S.ON_SITE
    assert lifecycle.on_crew_status(inc, "crew-1", CrewState.EN_ROUTE, T) is inc
    assert lifecycle.on_crew_status(inc, "crew-1", CrewState.AVAILABLE, T) is inc


def test_evidence_reopens_within_the_window_only():
    inc = lifecycle.on_crew_status(_incident(), "crew-1", CrewState.COMPLETED, T)
    assert (
        lifecycle.on_evidence(inc, T + timedelta(hours=1), reopen_window_s=7200).status
        == S.REOPENED
    )
    assert lifecycle.on_evidence(inc, T + timedelta(hours=3), reopen_window_s=7200) is inc
    closed = lifecycle.on_close(inc, T + timedelta(minutes=5), "closed")
    assert (
        lifecycle.on_evidence(closed, T + timedelta(hours=1), reopen_window_s=7200).status
        == S.REOPENED
    )


def test_duplicate_and_reprioritise():
    dup = lifecycle.on_duplicate(_incident(), "road_surface.1.2.def", T, "marked by ana")
    assert dup.status == S.DUPLICATE and dup.merged_into == "road_surface.1.2.def"
    assert lifecycle.on_assigned(dup, "crew-1", T) is dup
    manual = lifecycle.on_reprioritise(_incident(), Priority.P1, T, "ana")
    assert manual.priority == Priority.P1 and manual.manual_priority == Priority.P1


# -- through the engine, as the worker runs it ------------------------------------------------


def _crew(inline: Inline, incident_id: str, state: str, at: datetime) -> None:
    doc = factories.crew_status("crew-7", status=state, incident_id=incident_id, at=at.isoformat())
    routed = inline.engine.route_crew_event(json.dumps(doc).encode())
    assert routed is not None
    inline.send(*routed)


def _command(inline: Inline, **doc) -> None:
    cmd = {"v": 1, "command_id": str(uuid.uuid4()), "at": T0.isoformat(), "issued_by": "ana", **doc}
    routed = inline.engine.route_command(json.dumps(cmd).encode())
    assert routed is not None
    inline.send(*routed)


@pytest.fixture
def quick(roads, streams_settings) -> Inline:
    return Inline(streams_settings.model_copy(update={"close_after_s": 0.0}), roads, Clock())


def test_an_incident_follows_its_crew_and_every_report_hears_about_it(ags, quick, sites):
    edge, mid = sites[6]

    def ago(s: float) -> datetime:  # the crew's day, finished before now
        return later(s - 7200)

    raws = [report_raw(*point_along(ags, edge, mid + d), at=ago(d)) for d in (0, 3)]
    quick.feed(raws)
    [inc] = quick.active()
    iid = inc.incident_id

    quick.assignment("crew-7", [iid], ago(60).timestamp())
    assert quick.incidents[iid].status == S.ASSIGNED and quick.incidents[iid].crew_id == "crew-7"
    quick.assignment("crew-7", [], ago(70).timestamp())
    assert quick.incidents[iid].status == S.OPEN
    quick.assignment("crew-7", [iid], ago(80).timestamp())
    for state, t in (("en_route", 90), ("on_site", 600), ("completed", 1800)):
        _crew(quick, iid, state, ago(t))
    assert quick.incidents[iid].status == S.RESOLVED
    quick.send(iid.rsplit(".", 1)[0], {"t": "tick", "incident_id": iid})
    final = quick.incidents[iid]
    assert final.status == S.CLOSED
    assert [t.status for t in final.history] == [
        S.OPEN,
        S.ASSIGNED,
        S.OPEN,
        S.ASSIGNED,
        S.EN_ROUTE,
        S.ON_SITE,
        S.RESOLVED,
        S.CLOSED,
    ]
    versions = [i.version for i in quick.published if i.incident_id == iid]
    assert versions == list(range(1, len(versions) + 1))

    latest = {s.request_id: s for s in quick.statuses}
    assert {latest[r].status for r in latest} == {S.CLOSED}
    assert {latest[r].incident_id for r in latest} == {iid}

    # a new report of the same pothole after the fix reopens it
    quick.feed([report_raw(*point_along(ags, edge, mid + 1), at=ago(2000))])
    assert quick.incidents[iid].status == S.REOPENED
    assert len(quick.incidents[iid].evidence) == 3


def test_a_crew_status_older_than_a_reopen_changes_nothing():
    inc = lifecycle.on_assigned(_incident(), "crew-1", T)
    done = T + timedelta(hours=1)
    inc = lifecycle.on_crew_status(inc, "crew-1", CrewState.COMPLETED, done)
    inc = lifecycle.on_evidence(inc, T + timedelta(hours=2), reopen_window_s=86400)
    assert inc.status == S.REOPENED
    # The same "completed", delivered again (or late), is about the work before the reopen.
    assert lifecycle.on_crew_status(inc, "crew-1", CrewState.COMPLETED, done) is inc
    again = lifecycle.on_crew_status(inc, "crew-1", CrewState.ON_SITE, T + timedelta(hours=3))
    assert again.status == S.ON_SITE


def test_reports_older_than_the_window_still_deduplicate(ags, inline, sites):
    # A worker working through a backlog (after an outage) sees reports whose own times
    # are days old: two of one leak, a minute apart, are still one incident.
    edge, mid = sites[4]
    days_ago = datetime.now(UTC) - timedelta(days=3)
    inline.feed(
        [
            report_raw(*point_along(ags, edge, mid), at=days_ago, category="water_leak"),
            report_raw(
                *point_along(ags, edge, mid + 3),
                at=days_ago + timedelta(minutes=1),
                category="water_leak",
            ),
        ]
    )
    [inc] = inline.active()
    assert len(inc.evidence) == 2


def test_a_report_after_a_fix_that_took_longer_than_the_window_reopens_it(ags, inline, sites):
    edge, mid = sites[5]
    now = datetime.now(UTC)

    def leak(along: float, at: datetime) -> tuple[str, bytes]:
        return report_raw(*point_along(ags, edge, along), at=at, category="water_leak")

    inline.feed([leak(mid, now - timedelta(days=3))])
    [inc] = inline.active()
    inline.assignment("crew-7", [inc.incident_id], (now - timedelta(days=3)).timestamp())
    _crew(inline, inc.incident_id, "completed", now - timedelta(days=1))  # two days' work
    assert inline.incidents[inc.incident_id].status == S.RESOLVED

    inline.feed([leak(mid + 2, now - timedelta(hours=2))])

    assert inline.incidents[inc.incident_id].status == S.REOPENED
    assert len(inline.incidents) == 1


def test_later_entries_do_not_move_the_time_of_the_fix():
    inc = lifecycle.on_assigned(_incident(), "crew-1", T)
    inc = lifecycle.on_crew_status(inc, "crew-1", CrewState.COMPLETED, T + timedelta(hours=1))
    inc = lifecycle.on_reprioritise(inc, Priority.P2, T + timedelta(hours=20), "ana")
    assert lifecycle.resolved_at(inc) == T + timedelta(hours=1)
    assert lifecycle.close_due(inc, T + timedelta(hours=26), close_after_s=24 * 3600)

    # Closed by a dispatcher without a fix: the reopen window runs from the close.
    closed = lifecycle.on_close(_incident(), T, "closed by ana")
    closed = lifecycle.on_reprioritise(closed, Priority.P1, T + timedelta(days=6), "ana")
    week = 7 * 24 * 3600
    late = lifecycle.on_evidence(closed, T + timedelta(days=12), reopen_window_s=week)
    assert late is closed, "a week after the close: a new incident, not a reopen"
    soon = lifecycle.on_evidence(closed, T + timedelta(days=2), reopen_window_s=week)
    assert soon.status == S.REOPENED


def test_mark_duplicate_moves_the_evidence_and_tells_the_reporters(ags, inline, sites):
    (ea, ma), (eb, mb) = sites[7], sites[8]
    inline.feed([report_raw(*point_along(ags, ea, ma), at=later(0))])
    inline.feed(
        [
            report_raw(*point_along(ags, eb, mb), at=later(1)),
            report_raw(*point_along(ags, eb, mb), at=later(2)),
        ]
    )
    target, dup = sorted(inline.active(), key=lambda i: len(i.evidence))
    _command(
        inline, kind="mark_duplicate", incident_id=dup.incident_id, duplicate_of=target.incident_id
    )

    assert inline.incidents[dup.incident_id].status == S.DUPLICATE
    assert inline.incidents[dup.incident_id].merged_into == target.incident_id
    assert len(inline.incidents[target.incident_id].evidence) == 3
    assert inline.incidents[target.incident_id].reporters == 3
    moved = {s.request_id: s for s in inline.statuses if s.merged_into == target.incident_id}
    assert set(moved) == {e.id for e in dup.evidence}


def test_two_incidents_marked_duplicates_of_each_other_do_not_pass_evidence_for_ever(
    ags, inline, sites
):
    (ea, ma), (eb, mb) = sites[7], sites[8]
    inline.feed([report_raw(*point_along(ags, ea, ma), at=later(0))])
    inline.feed([report_raw(*point_along(ags, eb, mb), at=later(1))])
    a, b = inline.active()
    evidence = {e.id for e in a.evidence} | {e.id for e in b.evidence}

    _command(inline, kind="mark_duplicate", incident_id=a.incident_id, duplicate_of=b.incident_id)
    _command(inline, kind="mark_duplicate", incident_id=b.incident_id, duplicate_of=a.incident_id)

    # It returns (no endless absorb), and no report is lost: one of the two keeps them all.
    kept = [inline.incidents[i].evidence for i in (a.incident_id, b.incident_id)]
    assert evidence <= {e.id for ev in kept for e in ev}


def test_reprioritise_and_close_commands(ags, inline, sites):
    edge, mid = sites[9]
    inline.feed([report_raw(*point_along(ags, edge, mid))])
    [inc] = inline.active()
    _command(inline, kind="reprioritise", incident_id=inc.incident_id, priority="P1")
    assert inline.incidents[inc.incident_id].priority == Priority.P1
    assert inline.incidents[inc.incident_id].manual_priority == Priority.P1
    urgent = inline.incidents[inc.incident_id]
    assert urgent.expected_at - urgent.opened_at <= timedelta(hours=4), "P1's deadline"
    _command(inline, kind="reprioritise", incident_id=inc.incident_id, priority=None)
    back = inline.incidents[inc.incident_id]
    assert (back.manual_priority, back.priority, back.expected_at) == (
        None,
        inc.priority,
        inc.expected_at,
    ), "cleared: the score's class and deadline again"
    _command(inline, kind="close", incident_id=inc.incident_id)
    assert inline.incidents[inc.incident_id].status == S.CLOSED


def test_a_replayed_first_report_does_not_reopen_its_merged_incident(ags, inline, sites):
    """After a crash the tables can come back partly: the incident merged, the ``seen``
    record and index entry of the report that opened it lost. Its replay must not open
    the incident again over the merge."""
    (ea, ma), (eb, mb) = sites[7], sites[8]
    inline.feed([report_raw(*point_along(ags, ea, ma), at=later(0))])
    first = report_raw(*point_along(ags, eb, mb), at=later(1))
    inline.feed([first])
    [dup] = [i for i in inline.active() if i.evidence[0].id in first[1].decode()]
    [target] = [i for i in inline.active() if i.incident_id != dup.incident_id]
    _command(
        inline, kind="mark_duplicate", incident_id=dup.incident_id, duplicate_of=target.incident_id
    )
    engine = inline.engine
    del engine.seen[dup.evidence[0].id]
    engine.cells.clear()

    inline.feed([first])

    assert inline.incidents[dup.incident_id].status == S.DUPLICATE
    assert inline.incidents[dup.incident_id].merged_into == target.incident_id
    assert {e.id for e in inline.incidents[target.incident_id].evidence} >= {dup.evidence[0].id}


def test_a_replayed_merge_publishes_both_incidents_and_the_merged_statuses_again(
    ags, inline, sites
):
    """The records and statuses of a merge can be lost in a crash after the tables kept it:
    replaying the merge must publish the duplicate and the survivor again, unchanged, and
    tell the merged reports again."""
    (ea, ma), (eb, mb) = sites[7], sites[8]
    inline.feed([report_raw(*point_along(ags, ea, ma), at=later(0))])
    inline.feed([report_raw(*point_along(ags, eb, mb), at=later(1))])
    target, dup = inline.active()
    _command(
        inline, kind="mark_duplicate", incident_id=dup.incident_id, duplicate_of=target.incident_id
    )
    merged = dict(inline.incidents)
    told = {s.request_id: s for s in inline.statuses if s.merged_into}
    assert set(told) == {e.id for e in dup.evidence}
    inline.published.clear()
    inline.statuses.clear()

    _command(
        inline, kind="mark_duplicate", incident_id=dup.incident_id, duplicate_of=target.incident_id
    )

    again = {i.incident_id: i for i in inline.published}
    assert again[dup.incident_id] == merged[dup.incident_id]
    assert again[target.incident_id] == merged[target.incident_id]
    # ... and tells the merged reports again, as the first time did.
    retold = {s.request_id: s for s in inline.statuses}
    assert set(retold) == set(told)
    for rid, st in retold.items():
        assert (st.status, st.incident_id, st.merged_into) == (
            told[rid].status,
            dup.incident_id,
            target.incident_id,
        )


def test_aging_ticks_due_incidents_and_passes_over_finished_ones(ags, quick, sites):
    edge, mid = sites[9]
    quick.feed([report_raw(*point_along(ags, edge, mid), at=later(-7200))])
    [inc] = quick.active()
    iid = inc.incident_id
    quick.assignment("crew-9", [iid], later(-7100).timestamp())
    _crew(quick, iid, "completed", later(-7000))
    resolved = quick.incidents[iid]
    assert resolved.status == S.RESOLVED

    def ticks(state) -> list:
        return quick.engine.due_ticks([(iid, schemas.dumps(state))])

    # resolved and past close_after_s (0 here): due to close
    assert ticks(resolved) == [(iid.rsplit(".", 1)[0], {"t": "tick", "incident_id": iid})]
    quick.send(iid.rsplit(".", 1)[0], {"t": "tick", "incident_id": iid})
    closed = quick.incidents[iid]
    assert closed.status == S.CLOSED
    assert ticks(closed) == []
    for finished in (S.MERGED, S.DUPLICATE):
        assert ticks(closed.model_copy(update={"status": finished})) == []


def test_a_late_report_does_not_take_back_the_time_open_points_aging_gave(ags, quick, sites):
    edge, mid = sites[8]
    quick.feed([report_raw(*point_along(ags, edge, mid), at=later(-48 * 3600))])
    [inc] = quick.active()
    cell = inc.incident_id.rsplit(".", 1)[0]
    quick.send(cell, {"t": "tick", "incident_id": inc.incident_id})  # aged to now: 48 h open
    aged = quick.incidents[inc.incident_id].score_breakdown["time_open"]
    assert aged > 5
    # A second reporter's report, sent now but made 47 h ago (no signal on the street).
    quick.feed([report_raw(*point_along(ags, edge, mid + 2), at=later(-47 * 3600))])
    joined = quick.incidents[inc.incident_id]
    assert joined.reporters == 2
    assert joined.score_breakdown["time_open"] >= aged


def test_a_replayed_crew_status_publishes_the_state_again(ags, quick, sites):
    # After a crash the local table may hold the change while its record never left: the
    # replay finds nothing to change and must still publish what it holds.
    edge, mid = sites[7]
    quick.feed([report_raw(*point_along(ags, edge, mid), at=later(-3600))])
    [inc] = quick.active()
    quick.assignment("crew-7", [inc.incident_id], later(-3500).timestamp())
    _crew(quick, inc.incident_id, "en_route", later(-3400))
    first = quick.published[-1]
    assert first.status == S.EN_ROUTE
    n_published, n_statuses = len(quick.published), len(quick.statuses)
    _crew(quick, inc.incident_id, "en_route", later(-3400))
    assert len(quick.published) == n_published + 1 and len(quick.statuses) > n_statuses
    again = quick.published[-1]
    assert again.status == S.EN_ROUTE and again.version == first.version


def test_a_replayed_report_that_reopened_its_incident_tells_every_report_again(
    ags, inline, sites
):
    # After a crash the table can hold the reopen while the statuses it caused never left:
    # the replay of the report that reopened it must tell the first reporter too.
    edge, mid = sites[5]
    now = datetime.now(UTC)
    first = report_raw(*point_along(ags, edge, mid), at=now - timedelta(days=1))
    inline.feed([first])
    [inc] = inline.active()
    inline.assignment("crew-7", [inc.incident_id], (now - timedelta(hours=20)).timestamp())
    _crew(inline, inc.incident_id, "completed", now - timedelta(hours=10))
    second = report_raw(*point_along(ags, edge, mid + 2), at=now - timedelta(hours=1))
    inline.feed([second])
    assert inline.incidents[inc.incident_id].status == S.REOPENED
    inline.statuses.clear()

    inline.feed([second])

    told = {s.request_id: s for s in inline.statuses}
    assert set(told) == {e.id for e in inline.incidents[inc.incident_id].evidence}
    assert len(told) == 2 and {s.status for s in told.values()} == {S.REOPENED}
