"""Open311 POST with only an address_string: placed by the city's offline address index.

The city is Porto (the default). Expected points were read from the extract with
pyosmium: the node of "Rua Machado dos Santos" 455 (n3283277267), and the one node the
ways of "Rua de Santa Catarina" and "Rua Formosa" share (n129553665).
"""

from __future__ import annotations

import math

import pytest
from lxml import etree

V2 = "/open311/v2"
HOUSE = (41.3867372, -8.5436333)
CORNER = (41.1483136, -8.6063284)


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = (a[0] - b[0]) * 111_195.0
    dx = (a[1] - b[1]) * 111_195.0 * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy)


def post_address(client, api_key, address: str, fmt: str = "json"):
    return client.post(
        f"{V2}/requests.{fmt}",
        data={"api_key": api_key, "service_code": "pothole", "address_string": address},
    )


@pytest.mark.parametrize(
    ("address", "expected", "precision"),
    [
        ("Rua Machado dos Santos 455, Porto", HOUSE, "address"),
        ("R. Machado dos Santos, nº 455, 4000-123 Porto", HOUSE, "address"),
        ("Rua de Santa Catarina / Rua Formosa", CORNER, "intersection"),
        ("esquina da R. Formosa com a R. de Sta. Catarina", CORNER, "intersection"),
    ],
)
def test_an_address_alone_creates_a_request_at_its_place(
    client, api_key, address, expected, precision
):
    resp = post_address(client, api_key, address)
    assert resp.status_code == 200, resp.text
    created = resp.json()[0]
    assert f"({precision})" in created["service_notice"]
    got = client.get(f"{V2}/requests/{created['service_request_id']}.json").json()[0]
    assert got["address"] == address
    assert metres((got["lat"], got["long"]), expected) < 1.0


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("Rua Que Não Existe 7", "no street on the map matches"),
        ("Rua da Igreja", "different streets match 'Rua da Igreja'"),
        ("Rua do Almada", "give a house number on the map or a cross street"),
        ("Rua de Santa Catarina / Rua da Restauração", "do not meet on the map"),
    ],
)
def test_an_address_that_cannot_be_placed_is_a_400_saying_why(client, api_key, address, fragment):
    resp = post_address(client, api_key, address)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert isinstance(body, list) and set(body[0]) == {"code", "description"}
    assert body[0]["code"] == 400
    assert body[0]["description"].startswith("address_string: ")
    assert fragment in body[0]["description"]


def test_the_refusal_in_xml(client, api_key):
    resp = post_address(client, api_key, "Rua da Igreja", fmt="xml")
    assert resp.status_code == 400 and resp.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(resp.content)
    assert root.tag == "errors" and root.findtext("error/code") == "400"
    assert "different streets match" in root.findtext("error/description")


def test_blank_lat_and_long_with_an_address_are_placed_by_the_address(client, api_key):
    resp = client.post(
        f"{V2}/requests.json",
        data={"api_key": api_key, "service_code": "pothole", "lat": "", "long": "",
              "address_string": "Rua de Santa Catarina / Rua Formosa"},
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    created = resp.json()[0]
    assert "(intersection)" in created["service_notice"]
    got = client.get(f"{V2}/requests/{created['service_request_id']}.json").json()[0]
    assert metres((got["lat"], got["long"]), CORNER) < 1.0
