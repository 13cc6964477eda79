"""Placing a POST by its address string (pure parsing) and loading the address index."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from api import open311 as o311
from api.service import LazyLoad
from core.errors import ServiceUnavailable
from geo.geocode import GeocodeResult, Placed, Refused

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def parse(pairs: list[tuple[str, str]], geocode: o311.Geocode | None) -> o311.NewRequest:
    f: dict[str, list[str]] = {}
    for k, v in pairs:
        f.setdefault(k, []).append(v)
    return o311.parse_new_request(f, pairs, now=NOW, geocode=geocode)


class Recorder:
    """A geocoder stand-in answering one result and remembering what it was asked."""

    def __init__(self, result: GeocodeResult) -> None:
        self.result = result
        self.asked: list[str] = []

    def __call__(self, text: str) -> GeocodeResult:
        self.asked.append(text)
        return self.result


CORNER = Placed(41.1483, -8.6063, "intersection", "Rua de Santa Catarina / Rua Formosa")


def test_an_address_string_alone_is_placed_by_the_geocoder():
    geocode = Recorder(CORNER)
    new = parse(
        [("service_code", "pothole"), ("address_string", "Rua de Santa Catarina / Rua Formosa")],
        geocode,
    )
    assert geocode.asked == ["Rua de Santa Catarina / Rua Formosa"]
    assert (new.lat, new.lon) == (41.1483, -8.6063)
    assert new.address_string == "Rua de Santa Catarina / Rua Formosa"
    assert (new.precision, new.matched) == ("intersection", CORNER.matched)


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("unknown_street", "no street on the map matches 'rua inventada'"),
        ("ambiguous", "27 different streets match 'Rua da Igreja': give a cross street"),
        ("too_vague", "'Rua do Almada' is too long to place a crew"),
    ],
)
def test_a_refusal_is_a_400_saying_why(reason, text):
    with pytest.raises(o311.Open311Error) as err:
        parse(
            [("service_code", "pothole"), ("address_string", "x")], Recorder(Refused(reason, text))
        )
    assert err.value.code == 400
    assert err.value.description == f"address_string: {text}"


def test_coordinates_win_over_the_address_and_lat_long_strings_stay():
    geocode = Recorder(CORNER)
    given = parse(
        [("service_code", "pothole"), ("lat", "41.15"), ("long", "-8.61"),
         ("address_string", "Rua de Santa Catarina 1")],
        geocode,
    )  # fmt: skip
    pair = parse([("service_code", "pothole"), ("address_string", "41.2, -8.6")], geocode)
    assert geocode.asked == []
    assert (given.lat, given.lon, given.precision, given.matched) == (
        41.15,
        -8.61,
        "coordinates",
        None,
    )
    assert (pair.lat, pair.lon, pair.precision) == (41.2, -8.6, "coordinates")


def test_an_address_id_alone_still_cannot_be_placed():
    with pytest.raises(o311.Open311Error, match="address_id cannot be placed"):
        parse([("service_code", "pothole"), ("address_id", "A-12")], Recorder(CORNER))


def test_needs_geocoder_only_for_an_address_without_coordinates():
    assert o311.needs_geocoder({"address_string": ["Rua X 1"]})
    assert not o311.needs_geocoder({"address_string": ["41.1, -8.6"]})
    assert not o311.needs_geocoder({"address_string": ["Rua X 1"], "lat": ["41"], "long": ["-8"]})
    assert not o311.needs_geocoder({"address_string": ["  "]})
    assert not o311.needs_geocoder({"address_id": ["A-12"]})


def test_locate_address_without_a_geocoder_places_only_coordinates():
    assert o311.locate_address("Rua X 1") is None
    assert o311.locate_address("41.1,-8.6") == o311.Located(41.1, -8.6, "coordinates")


# --- loading ---------------------------------------------------------------------------------


def test_the_index_loads_on_first_use_and_callers_wait_on_the_loop():
    release = threading.Event()
    calls: list[int] = []
    built = object()

    def make():
        calls.append(1)
        release.wait(10)
        return built

    lazy = LazyLoad(make, "address index")
    assert calls == []  # nothing happens before the first caller

    async def run():
        with pytest.raises(ServiceUnavailable, match="still loading"):
            await lazy.ready(0.1)
        threading.Timer(0.1, release.set).start()
        both = await asyncio.gather(lazy.ready(5), lazy.ready(5))
        return both

    assert asyncio.run(run()) == [built, built]
    assert calls == [1]


def test_a_failed_load_is_a_503_naming_the_error():
    def make():
        raise OSError("no extract")

    lazy = LazyLoad(make, "address index")
    with pytest.raises(ServiceUnavailable, match="address index unavailable: no extract"):
        asyncio.run(lazy.ready(5))


def test_blank_lat_and_long_are_absent_and_the_address_is_placed():
    form = {"lat": [""], "long": [" "], "address_string": ["Rua de Santa Catarina / Rua Formosa"]}
    assert o311.needs_geocoder(form)
    geocode = Recorder(CORNER)
    new = parse(
        [("service_code", "pothole"), ("lat", ""), ("long", " "),
         ("address_string", "Rua de Santa Catarina / Rua Formosa")],
        geocode,
    )  # fmt: skip
    assert geocode.asked == ["Rua de Santa Catarina / Rua Formosa"]
    assert (new.lat, new.lon, new.precision) == (41.1483, -8.6063, "intersection")


MIDDLE = Placed(
    41.15, -8.61, "street", "Rua Formosa", 100.0,
    "house number 999 is not on the map; placed at the street's middle",
)  # fmt: skip


def test_a_house_number_the_map_lacks_is_said_in_the_service_notice():
    pairs = [("service_code", "pothole"), ("address_string", "Rua Formosa 999")]
    new = parse(pairs, Recorder(MIDDLE))
    assert new.note == MIDDLE.note
    notice = o311.service_notice(new)
    assert "Placed by its address at Rua Formosa (street)." in notice
    assert "house number 999 is not on the map; placed at the street's middle" in notice
    given = parse([("service_code", "pothole"), ("lat", "41"), ("long", "-8")], None)
    plain = o311.service_notice(given)
    assert "Placed" not in plain and "Note" not in plain


def test_a_failed_load_is_tried_again_after_the_backoff():
    calls: list[int] = []
    built = object()

    def make():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("index unreadable")
        return built

    lazy = LazyLoad(make, "address index", retry_s=0.2)

    async def run():
        with pytest.raises(ServiceUnavailable, match="index unreadable"):
            await lazy.ready(5)
        with pytest.raises(ServiceUnavailable, match="index unreadable"):
            await lazy.ready(5)  # within the backoff: the failure, not a new try
        assert calls == [1]
        await asyncio.sleep(0.3)
        return await lazy.ready(5)

    assert asyncio.run(run()) is built
    assert calls == [1, 1]
