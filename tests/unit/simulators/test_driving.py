from __future__ import annotations

import pytest

from simulators.driving import Leg, distance_m, split_legs, straight_leg

# An L-shaped route: 300 m north, then 400 m east (in Porto).
A = (-8.6100, 41.1500)
B = (-8.6100, 41.1500 + 300 / 110_574)
C = (B[0] + 400 / (111_320 * 0.75305), B[1])


def test_half_the_eta_is_half_way_along_the_line() -> None:
    leg = Leg("i-1", (A, B, C), travel_s=120.0)
    total = leg.length_m
    assert total == pytest.approx(700, rel=0.01)
    half = leg.position(60.0)
    # Half of 700 m is 50 m past the corner B, heading east.
    assert distance_m(B, (half.lon, half.lat)) == pytest.approx(total / 2 - 300, abs=2)
    assert half.heading_deg == pytest.approx(90, abs=1)
    assert half.speed_kph == pytest.approx(total / 120 * 3.6, rel=0.01)


def test_position_is_clamped_to_the_leg() -> None:
    leg = Leg("i-1", (A, B, C), travel_s=100.0)
    start, end = leg.position(-5), leg.position(1000)
    assert (start.lon, start.lat) == pytest.approx(A)
    assert (end.lon, end.lat) == pytest.approx(C)
    assert end.speed_kph == 0


def test_position_moves_monotonically_along_the_route() -> None:
    leg = Leg("i-1", (A, B, C), travel_s=100.0)
    done = [distance_m(A, (p.lon, p.lat)) for p in (leg.position(t) for t in range(0, 40, 5))]
    assert done == sorted(done)


def test_a_plan_route_is_cut_at_its_stops_with_the_leg_etas() -> None:
    coords = [A, B, C]
    stops = [("i-1", B[1], B[0]), ("i-2", C[1], C[0])]
    legs = split_legs(coords, stops, [50.0, 70.0])
    assert [leg.incident_id for leg in legs] == ["i-1", "i-2"]
    assert legs[0].coordinates[0] == A and legs[0].coordinates[-1] == B
    assert legs[1].coordinates[0] == B and legs[1].coordinates[-1] == C
    assert [leg.travel_s for leg in legs] == [50.0, 70.0]
    assert legs[0].length_m == pytest.approx(300, rel=0.01)


def test_without_etas_legs_take_their_length_at_a_default_speed() -> None:
    legs = split_legs([A, B], [("i-1", B[1], B[0])], [], speed_kph=36.0)
    assert legs[0].travel_s == pytest.approx(30.0, rel=0.01)


def test_a_straight_leg_when_there_is_no_route() -> None:
    leg = straight_leg("i-9", (A[1], A[0]), (B[1], B[0]), speed_kph=36.0)
    assert leg.travel_s == pytest.approx(30.0, rel=0.01)
    mid = leg.position(15.0)
    assert distance_m(A, (mid.lon, mid.lat)) == pytest.approx(150, abs=1)
