from __future__ import annotations

import numpy as np
import pytest

from core.schemas import Category
from simulators.faults import Submission, plan_city, poisson_times
from simulators.runner import salted
from simulators.scenario import Scenario
from tests.unit.simulators.factories import grid_city


def scenario(**over) -> Scenario:
    doc = {"city": "grid", "duration_s": 6 * 3600.0, "seed": 3}
    doc.update(over)
    return Scenario.model_validate(doc)


def test_same_seed_gives_the_same_faults_reports_and_alerts() -> None:
    city = grid_city()
    a = plan_city(scenario(), city, seed=11)
    b = plan_city(scenario(), city, seed=11)
    assert a.faults == b.faults
    assert a.reports == b.reports
    assert a.alerts == b.alerts
    assert a.devices == b.devices
    assert len(a.reports) > 20


def test_another_seed_gives_another_city_day() -> None:
    city = grid_city()
    a = plan_city(scenario(), city, seed=11)
    b = plan_city(scenario(), city, seed=12)
    assert [f.at_s for f in a.faults] != [f.at_s for f in b.faults]


def test_run_salt_changes_ids_but_not_events() -> None:
    plan = plan_city(scenario(), grid_city(), seed=1)
    one, again, other = salted(plan, "run-1"), salted(plan, "run-1"), salted(plan, "run-2")
    assert [r.report_id for r in one.reports] == [r.report_id for r in again.reports]
    assert {r.report_id for r in one.reports}.isdisjoint(r.report_id for r in other.reports)
    assert [(r.at_s, r.lat, r.category) for r in one.reports] == [
        (r.at_s, r.lat, r.category) for r in other.reports
    ]


@pytest.mark.parametrize("rate_per_hour", [0.5, 4.0, 30.0])
def test_poisson_arrivals_match_the_rate_over_a_long_horizon(rate_per_hour: float) -> None:
    rng = np.random.default_rng(5)
    horizon_s = 2000 * 3600.0
    times = poisson_times(rng, rate_per_hour, horizon_s)
    expected = rate_per_hour * horizon_s / 3600.0
    assert abs(len(times) - expected) < 4 * np.sqrt(expected)
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(3600.0 / rate_per_hour, rel=0.1)
    assert times == sorted(times) and times[-1] < horizon_s


def test_fault_rates_per_category_are_respected() -> None:
    rates = {Category.POTHOLE: 6.0, Category.GRAFFITI: 1.0}
    sc = scenario(duration_s=500 * 3600.0, citizens={"faults_per_hour": rates})
    plan = plan_city(sc, grid_city(), seed=2)
    potholes = sum(f.category is Category.POTHOLE for f in plan.faults)
    graffiti = sum(f.category is Category.GRAFFITI for f in plan.faults)
    assert potholes == pytest.approx(3000, rel=0.1)
    assert graffiti == pytest.approx(500, rel=0.2)
    assert {f.category for f in plan.faults} == set(rates)


def test_a_fault_draws_several_reporters_near_it_minutes_apart() -> None:
    sc = scenario(
        citizens={
            "reporters_mean": 3.0,
            "gps_noise_m": 5.0,
            "malformed_share": 0,
            "out_of_area_share": 0,
        }
    )
    plan = plan_city(sc, grid_city(), seed=4)
    by_fault: dict[str, list] = {}
    for r in plan.reports:
        by_fault.setdefault(r.fault_id, []).append(r)
    faults = {f.fault_id: f for f in plan.faults}
    assert np.mean([len(v) for v in by_fault.values()]) > 2.0
    for fid, reports in by_fault.items():
        f = faults[fid]
        assert all(r.at_s >= f.at_s for r in reports)
        assert all(r.category is f.category for r in reports)
        for r in reports:  # a few metres of GPS noise, never hundreds
            dy = (r.lat - f.lat) * 110_574
            dx = (r.lon - f.lon) * 111_320 * np.cos(np.radians(f.lat))
            assert np.hypot(dx, dy) < 40
        if len(reports) > 1:  # distinct phones
            assert len({r.app for r in reports}) == len(reports) or len(reports) > sc.citizens.apps


def test_some_submissions_are_malformed_or_out_of_area() -> None:
    sc = scenario(
        duration_s=100 * 3600.0, citizens={"malformed_share": 0.05, "out_of_area_share": 0.05}
    )
    city = grid_city()
    plan = plan_city(sc, city, seed=9)
    kinds = [r.kind for r in plan.reports]
    share_bad = sum(k is Submission.MALFORMED for k in kinds) / len(kinds)
    share_out = sum(k is Submission.OUT_OF_AREA for k in kinds) / len(kinds)
    assert 0.02 < share_bad < 0.09 and 0.02 < share_out < 0.09
    min_lon, min_lat, max_lon, max_lat = city.bounds
    margin = 0.001  # GPS noise may put a phone a few metres past the last street
    for r in plan.reports:
        inside = (
            min_lat - margin <= r.lat <= max_lat + margin
            and min_lon - margin <= r.lon <= max_lon + margin
        )
        assert inside == (r.kind is not Submission.OUT_OF_AREA)


def test_sensor_alerts_describe_the_same_fault_as_the_citizens() -> None:
    sc = scenario(
        duration_s=24 * 3600.0,
        sensors={"detect_share": {"pothole": 1.0, "streetlight_out": 1.0, "water_leak": 1.0}},
    )
    plan = plan_city(sc, grid_city(), seed=8)
    faults = {f.fault_id: f for f in plan.faults}
    assert plan.alerts
    kinds = {
        "pothole": "road_impact",
        "streetlight_out": "lamp_failure",
        "water_leak": "pressure_drop",
    }
    for a in plan.alerts:
        f = faults[a.fault_id]
        assert a.kind == kinds[f.category.value]
        assert (a.lat, a.lon) == (f.lat, f.lon) and a.device_id == f.detector
        assert f.at_s <= a.at_s <= f.at_s + sc.sensors.detect_delay_max_s
        if f.category is Category.STREETLIGHT_OUT:
            assert a.asset_id and a.asset_id.startswith("LAMP-")
    detected = [f for f in plan.faults if f.category.value in kinds]
    assert all(f.detector for f in detected)
