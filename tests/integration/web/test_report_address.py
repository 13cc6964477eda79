"""The citizen page places its pin at a typed address (``/report/geocode``), in the browser.

The stack serves Aguascalientes; the address is one of a few intersections of its extract,
checked with the city's geocoder before the page is asked, so the test knows where the pin
must land.
"""

from __future__ import annotations

import math
import re

import pytest

from geo.geocode import Placed, load_geocoder
from tests.integration.web.stack import Stack

#: Crossings of the Aguascalientes extract (each street name once in the city).
CANDIDATES = (
    "Avenida Arqueros / Avenida Misioneros",
    "Avenida Antares / Calle Libra",
    "Calle Nadir y Avenida Arqueros",
)
COORDS = re.compile(r"(-?\d+\.\d+), (-?\d+\.\d+)")


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = (a[0] - b[0]) * 111_195.0
    dx = (a[1] - b[1]) * 111_195.0 * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy)


@pytest.fixture(scope="module")
def crossing(stack: Stack) -> tuple[str, Placed]:
    """An address of the city the geocoder places at an intersection, and where."""
    geocoder = load_geocoder(stack.settings.geo, "aguascalientes")
    radius_m = stack.settings.geo.geocode_street_radius_m
    for text in CANDIDATES:
        found = geocoder.geocode(text, max_street_radius_m=radius_m)
        if isinstance(found, Placed) and found.precision == "intersection":
            return text, found
    pytest.fail(f"none of {CANDIDATES} is an intersection of the Aguascalientes extract")


def _open(page, stack: Stack) -> None:
    page.goto(f"{stack.base_url}/report")
    page.wait_for_function("window.cityfix && window.cityfix.ready === true", timeout=30_000)


def _pin_text(page) -> tuple[str, tuple[float, float]]:
    text = page.locator("#where").inner_text()
    m = COORDS.search(text)
    assert m, text
    return text, (float(m.group(1)), float(m.group(2)))


def test_find_puts_the_pin_at_the_typed_crossing(stack: Stack, page, crossing) -> None:
    text, expected = crossing
    _open(page, stack)
    page.get_by_label("Address or cross streets").fill(text)
    with page.expect_response("**/report/geocode?*") as answer:
        page.get_by_role("button", name="Find").click()
    assert answer.value.ok, answer.value.text()

    where = page.locator("#where")
    where.filter(has_text=expected.matched).wait_for(timeout=10_000)
    said, at = _pin_text(page)
    assert "(intersection)" in said
    assert metres(at, (expected.lat, expected.lon)) < 3.0
    assert page.locator(".pin").count() == 1
    # The map eases to the pin.
    page.wait_for_function("!window.cityfix.map.isMoving()", timeout=10_000)
    centre = page.evaluate(
        "(() => { const c = window.cityfix.map.getCenter(); return [c.lat, c.lng]; })()"
    )
    assert metres(tuple(centre), (expected.lat, expected.lon)) < 3.0
    assert round(page.evaluate("window.cityfix.map.getZoom()")) == 17
    assert page.locator("#find-status").inner_text() == ""

    # The pin can still be dragged from there.
    box = page.locator(".pin").bounding_box()
    assert box
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] - 4
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 30, y + 10, steps=5)
    page.mouse.move(x + 60, y + 20, steps=5)
    page.mouse.up()
    where.filter(has_not_text=expected.matched).wait_for(timeout=5_000)
    _, dragged = _pin_text(page)
    assert metres(dragged, (expected.lat, expected.lon)) > 5.0
    assert page.errors == []


def test_an_unknown_street_is_refused_aloud_and_the_pin_stays(stack: Stack, page) -> None:
    _open(page, stack)
    page.get_by_role("button", name="Pin the map centre").click()
    before = page.locator("#where").inner_text()
    assert before.startswith("Pin at ")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/report/submit" in r.url else None)

    field = page.get_by_label("Address or cross streets")
    field.fill("Calle Que No Existe / Calle Tampoco")
    with page.expect_response("**/report/geocode?*") as answer:
        field.press("Enter")  # looks it up; does not send the form
    assert answer.value.status == 400

    status = page.get_by_role("status").filter(has_text="no street on the map matches")
    status.wait_for(timeout=10_000)
    assert status.get_attribute("id") == "find-status"
    assert page.locator("#where").inner_text() == before
    assert page.locator(".pin").count() == 1
    assert sent == [] and page.locator("#report-error").inner_text() == ""
    assert page.errors == []
