"""Road-aware dedup and fusion on the real aguascalientes graph, run in-process."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.schemas import IncidentStatus
from streams import dedup
from streams.engine import Inline
from streams.families import BY_NAME
from tests.unit.streams.conftest import (
    Border,
    Parallel,
    alert_raw,
    ids_of,
    later,
    point_along,
    report_raw,
)


def _evidence_sets(inline: Inline) -> set[frozenset[str]]:
    return {frozenset(e.id for e in i.evidence) for i in inline.active()}


def test_three_reports_and_a_sensor_alert_on_one_road_make_one_incident(ags, inline, sites):
    edge, mid = sites[0]
    raws = [
        report_raw(*point_along(ags, edge, mid + d), at=later(i)) for i, d in enumerate((-5, 0, 5))
    ]
    raws.append(alert_raw(*point_along(ags, edge, mid + 2), at=later(10), value=7.0))
    inline.feed(raws)

    [incident] = inline.active()
    assert {e.id for e in incident.evidence} == set(ids_of(raws))
    assert incident.reporters == 3
    assert incident.sensor_corroborated
    assert incident.family == "road_surface"
    assert incident.category == "pothole"
    assert incident.score_breakdown["sensor_corroboration"] > 0
    assert incident.version == 4  # opened, then one change per further piece of evidence


def test_same_reports_on_a_parallel_street_are_a_different_incident(
    ags, inline, parallel: Parallel
):
    assert 20.0 <= parallel.gap_m <= 60.0
    raws = [report_raw(*parallel.a, at=later(0)), report_raw(*parallel.b, at=later(1))]
    raws += [report_raw(*parallel.a, at=later(2)), report_raw(*parallel.b, at=later(3))]
    inline.feed(raws)

    incidents = inline.active()
    assert len(incidents) == 2
    ids = ids_of(raws)
    assert _evidence_sets(inline) == {frozenset(ids[0::2]), frozenset(ids[1::2])}


@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "same-batch"])
def test_two_reports_straddling_a_cell_border_make_one_incident(
    inline, roads, streams_settings, border: Border, together
):
    grid = dedup.Grid(streams_settings.cell_size_m, roads.ref_lat)
    sa, sb = roads.snap_many([border.a[0], border.b[0]], [border.a[1], border.b[1]])
    assert grid.cell_of(sa.snap_lat, sa.snap_lon) != grid.cell_of(sb.snap_lat, sb.snap_lon)

    raws = [report_raw(*border.a, at=later(0)), report_raw(*border.b, at=later(1))]
    if together:
        # Both reach their cells before either cell hears of the other's incident: the race
        # is settled by merging, and exactly one incident is left standing.
        inline.feed(raws)
    else:
        inline.feed(raws[:1])
        inline.feed(raws[1:])

    [incident] = inline.active()
    assert {e.id for e in incident.evidence} == set(ids_of(raws))


def test_a_redelivered_report_changes_nothing(ags, inline, sites):
    edge, mid = sites[1]
    raw = report_raw(*point_along(ags, edge, mid))
    inline.feed([raw])
    [before] = inline.active()
    inline.feed([raw])
    inline.feed([raw])
    [after] = inline.active()
    assert after == before  # re-published at most, never changed
    assert {i.version for i in inline.published} == {1}
    assert len(after.evidence) == 1


def test_reports_of_different_families_at_one_place_stay_apart(ags, inline, sites):
    edge, mid = sites[2]
    p = point_along(ags, edge, mid)
    inline.feed(
        [
            report_raw(*p),
            report_raw(*p, category="streetlight_out"),
            report_raw(*p, category="graffiti"),
        ]
    )
    assert sorted(i.family for i in inline.active()) == ["graffiti", "lighting", "road_surface"]


def test_a_report_outside_the_window_opens_a_new_incident(ags, inline, sites):
    edge, mid = sites[3]
    p = point_along(ags, edge, mid)
    window_s = BY_NAME["road_surface"].window_s
    inline.feed([report_raw(*p, at=later(0)), report_raw(*p, at=later(window_s + 3600))])
    assert len(inline.active()) == 2


def test_reports_naming_the_same_lamp_join_although_further_apart_than_the_radius(
    ags, inline, sites
):
    edge, mid = sites[4]
    radius = BY_NAME["lighting"].radius_m
    a = point_along(ags, edge, mid - radius)
    b = point_along(ags, edge, mid + radius)
    inline.feed(
        [
            report_raw(*a, category="streetlight_out", asset_id="lamp-17"),
            report_raw(*b, category="streetlight_out", asset_id="lamp-17"),
            alert_raw(*b, kind="lamp_failure", value=1.0, unit="flag", asset_id="lamp-17"),
        ]
    )
    [incident] = inline.active()
    assert len(incident.evidence) == 3
    assert incident.sensor_corroborated


def test_two_lamps_next_to_each_other_are_two_incidents(ags, inline, sites):
    edge, mid = sites[5]
    p = point_along(ags, edge, mid)
    inline.feed(
        [
            report_raw(*p, category="streetlight_out", asset_id="lamp-1"),
            report_raw(*p, category="streetlight_out", asset_id="lamp-2"),
        ]
    )
    assert len(inline.active()) == 2


def test_cells_within_radius_cover_every_point_within_radius():
    grid = dedup.Grid(250.0, 21.87)
    for lat, lon in [(21.87, -102.27), (21.8712, -102.2653), (21.8644, -102.2701)]:
        cells = set(grid.cells_within(lat, lon, 75.0))
        assert grid.cell_of(lat, lon) == grid.cells_within(lat, lon, 75.0)[0]
        for k in range(36):
            ang = math.radians(k * 10)
            dlat = 74.9 * math.sin(ang) / 111_195.0
            dlon = 74.9 * math.cos(ang) / (111_195.0 * math.cos(math.radians(21.87)))
            assert grid.cell_of(lat + dlat, lon + dlon) in cells


def test_cells_narrower_than_two_radii_are_refused():
    with pytest.raises(ValueError, match="twice the largest radius"):
        dedup.Grid(100.0, 21.87)


def test_incident_ids_name_their_home_cell():
    key = dedup.cell_key("road_surface", (-12, 345))
    inc = dedup.incident_id_for(key, "0b5e7c1a-0000-4000-8000-000000000000")
    assert dedup.cell_of_incident(inc) == key
    assert inc == dedup.incident_id_for(key, "0b5e7c1a-0000-4000-8000-000000000000")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_incidents_do_not_depend_on_arrival_order(
    ags, roads, streams_settings, sites, border, data
):
    from core.clock import Clock

    raws = []
    for n, (edge, mid) in enumerate(sites[:6]):
        for k in range(4):
            noise = data.draw(st.floats(-6.0, 6.0), label=f"noise{n}.{k}")
            raws.append(report_raw(*point_along(ags, edge, mid + noise), at=later(n * 10 + k)))
    raws += [report_raw(*border.a, at=later(100)), report_raw(*border.b, at=later(101))]
    edge, mid = sites[0]
    raws.append(alert_raw(*point_along(ags, edge, mid), at=later(5)))

    baseline = Inline(streams_settings, roads, Clock())
    baseline.feed(raws)
    expected = _evidence_sets(baseline)
    assert len(expected) == 7

    order = data.draw(st.permutations(raws), label="order")
    batch = data.draw(st.integers(1, len(raws)), label="batch")
    shuffled = Inline(streams_settings, roads, Clock())
    for i in range(0, len(order), batch):
        shuffled.feed(list(order[i : i + batch]))
    assert _evidence_sets(shuffled) == expected
    assert all(i.status == IncidentStatus.OPEN for i in shuffled.active())


def test_both_cells_of_a_border_race_pick_the_same_survivor():
    a = dedup.Entry("water.1.1.a", "water", 1, 5.0, 21.87, -102.27, 100.0, 100.0, opened_at_s=100.0)
    b = dedup.Entry("water.1.2.b", "water", 1, 9.0, 21.87, -102.27, 101.0, 101.0, opened_at_s=101.0)
    # each cell's copy of the other's entry may have seen other evidence since
    kept_here, _ = dedup.survivor(a.seen_at(50.0), b)
    kept_there, _ = dedup.survivor(b.seen_at(10.0), a)
    assert kept_here.incident_id == kept_there.incident_id == "water.1.1.a"


def test_a_replayed_first_report_puts_back_a_lost_index_entry(ags, inline, sites):
    """After a crash a cell's entries can come back older than its incidents (the changelog
    replayed over a store that was ahead). The replay of the report that opened an
    incident restores its entry, so the next report of the fault still joins it."""
    edge, mid = sites[1]
    first = report_raw(*point_along(ags, edge, mid))
    inline.feed([first])
    inline.engine.cells.clear()

    inline.feed([first])
    inline.feed([report_raw(*point_along(ags, edge, mid + 2))])

    [incident] = inline.active()
    assert len(incident.evidence) == 2


def test_a_border_merge_lost_in_a_crash_is_made_again_on_replay(inline, border: Border):
    """A crash can roll the loser of a border race and both cells back to just before the
    merge (each cell holding both entries) while the survivor keeps what it absorbed.
    Replaying the loser's first report re-sends an index put the other cell already
    holds; that put must still find the overlap and merge again."""
    raws = [report_raw(*border.a, at=later(0)), report_raw(*border.b, at=later(1))]
    engine = inline.engine
    merges: list[dict] = []
    engine._on_merge = lambda key, msg, out: merges.append(msg)  # hold the merge back
    inline.feed(raws)
    assert merges, "no border race to replay"
    cells, incidents, loser = dict(engine.cells), dict(engine.incidents), merges[0]["loser"]
    del engine._on_merge
    for msg in merges:
        inline.send(dedup.cell_of_incident(msg["loser"]), msg)
    assert inline.incidents[loser].status == IncidentStatus.DUPLICATE

    engine.cells.clear()
    engine.cells.update(cells)
    engine.incidents[loser] = incidents[loser]
    opener = next(r for r in raws if inline.incidents[loser].evidence[0].id in r[1].decode())
    inline.feed([opener])

    assert inline.incidents[loser].status == IncidentStatus.DUPLICATE
    assert len(inline.active()) == 1
