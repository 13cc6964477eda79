"""Explainable priority: the breakdown adds up, and more evidence never lowers priority."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from core.schemas import Priority
from streams import scoring
from streams.families import BY_NAME, FAMILIES

families = st.sampled_from(FAMILIES)
factors = st.builds(
    scoring.Factors,
    family=families,
    magnitude=st.floats(0.0, 1.0),
    reporters=st.integers(0, 500),
    corroborated=st.booleans(),
    road_class=st.sampled_from(
        [None, "primary", "secondary_link", "tertiary", "residential", "track"]
    ),
    poi_kinds=st.lists(
        st.sampled_from(["school", "hospital", "clinic", "kindergarten", "university"]), max_size=4
    ).map(tuple),
    open_s=st.floats(0.0, 30 * 24 * 3600.0),
)
_RANK = {Priority.P1: 1, Priority.P2: 2, Priority.P3: 3, Priority.P4: 4}


@given(factors)
def test_breakdown_sums_to_score(f):
    s = scoring.score(f)
    assert abs(sum(s.breakdown.values()) - s.total) < 1e-6
    assert set(s.breakdown) == {
        "severity",
        "sensor_magnitude",
        "reporters",
        "sensor_corroboration",
        "road_class",
        "nearby_poi",
        "time_open",
    }
    assert all(v >= 0 for v in s.breakdown.values())


@given(factors, st.integers(1, 50), st.floats(0.0, 1.0), st.floats(0.0, 10 * 24 * 3600.0))
def test_more_reporters_corroboration_magnitude_or_time_never_lower_priority(f, more, mag, older):
    base = scoring.score(f)
    richer = scoring.Factors(
        family=f.family,
        magnitude=max(f.magnitude, mag),
        reporters=f.reporters + more,
        corroborated=True,
        road_class=f.road_class,
        poi_kinds=f.poi_kinds,
        open_s=f.open_s + older,
    )
    s = scoring.score(richer)
    assert s.total >= base.total
    assert _RANK[s.priority] <= _RANK[base.priority]


def test_a_traffic_signal_on_a_primary_road_by_a_school_with_a_sensor_is_p1():
    s = scoring.score(
        scoring.Factors(
            BY_NAME["traffic_signal"],
            magnitude=1.0,
            reporters=2,
            corroborated=True,
            road_class="primary",
            poi_kinds=("school",),
        )
    )
    assert s.priority == Priority.P1
    assert s.breakdown["road_class"] == 12 and s.breakdown["nearby_poi"] == 8


def test_one_graffiti_report_on_a_residential_street_is_p4():
    s = scoring.score(scoring.Factors(BY_NAME["graffiti"], reporters=1, road_class="residential"))
    assert s.priority == Priority.P4


def test_classes_follow_the_documented_thresholds():
    t = scoring.Thresholds(70, 45, 25)
    assert [t.classify(x) for x in (70, 69.9, 45, 44.9, 25, 24.9, 0)] == [
        Priority.P1,
        Priority.P2,
        Priority.P2,
        Priority.P3,
        Priority.P3,
        Priority.P4,
        Priority.P4,
    ]


def test_sla_deadline_is_shorter_for_urgent_classes():
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    fam = BY_NAME["road_surface"]
    assert (scoring.sla_deadline(fam, Priority.P4, t0) - t0).total_seconds() == fam.sla_s
    assert (scoring.sla_deadline(fam, Priority.P1, t0) - t0).total_seconds() == 4 * 3600


def test_changed_needs_a_new_class_or_more_than_epsilon():
    assert not scoring.changed(50.0, Priority.P2, 50.4, Priority.P2, 0.5)
    assert scoring.changed(50.0, Priority.P2, 50.6, Priority.P2, 0.5)
    assert scoring.changed(69.9, Priority.P2, 70.0, Priority.P1, 0.5)
