from __future__ import annotations

import pytest

from geo.speeds import MPH_TO_KPH, SpeedTable, parse_maxspeed, travel_time_s


@pytest.mark.parametrize(
    ("tag", "kph"),
    [
        ("50", 50.0),
        ("50.5", 50.5),
        (" 60 ", 60.0),
        ("50 km/h", 50.0),
        ("50kmh", 50.0),
        ("30 mph", 30 * MPH_TO_KPH),
        ("30mph", 30 * MPH_TO_KPH),
        ("10 knots", 18.52),
        ("PT:urban", 50.0),
        ("PT:rural", 90.0),
        ("DE:motorway", 130.0),
        ("FR:zone30", 30.0),
        ("GB:nsl_single", 60 * MPH_TO_KPH),
        ("walk", 7.0),
        ("50;30", 40.0),
        ("50|70", 60.0),
        (["50", "30 mph"], (50 + 30 * MPH_TO_KPH) / 2),
        (["none", "40"], 40.0),
    ],
)
def test_maxspeed_values_a_mapper_would_write_are_understood(tag: str, kph: float) -> None:
    assert parse_maxspeed(tag) == pytest.approx(kph)


@pytest.mark.parametrize(
    "tag", [None, "", "none", "signals", "variable", "fast", "0", "XX:nowhere"]
)
def test_maxspeed_values_without_a_number_fall_back(tag: str | None) -> None:
    assert parse_maxspeed(tag) is None


def test_speed_table_prefers_the_tagged_limit_then_the_highway_class() -> None:
    table = SpeedTable()
    assert table.speed_kph("residential", "50") == 50.0
    assert table.speed_kph("residential", None) == table.by_highway_kph["residential"]
    assert table.speed_kph("residential", "signals") == table.by_highway_kph["residential"]
    assert table.speed_kph("bogus_class", None) == table.fallback_kph
    assert table.speed_kph(["primary", "secondary"], None) == pytest.approx(
        (table.by_highway_kph["primary"] + table.by_highway_kph["secondary"]) / 2
    )
    # absurd tags are clamped, not trusted
    assert table.speed_kph("motorway", "900") == table.max_kph
    assert table.speed_kph("residential", "1") == table.min_kph


def test_speed_table_is_configurable_and_part_of_the_cache_key() -> None:
    slow = SpeedTable(by_highway_kph={"residential": 15.0}, use_maxspeed=False)
    assert slow.speed_kph("residential", "50") == 15.0
    assert slow.fingerprint() != SpeedTable().fingerprint()
    assert SpeedTable().fingerprint() == SpeedTable().fingerprint()


def test_travel_time() -> None:
    assert travel_time_s(1000.0, 36.0) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="positive"):
        travel_time_s(1.0, 0.0)
