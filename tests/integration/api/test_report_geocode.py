"""``GET /report/geocode``: the citizen page's address lookup, with the city's offline index.

The city is Porto (the default). The corner of "Rua de Santa Catarina" and "Rua Formosa"
is the one node their ways share (n129553665), as in ``test_open311_address``.
"""

from __future__ import annotations

import math
import warnings

from api.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PATH = "/report/geocode"
CORNER = (41.1483136, -8.6063284)


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = (a[0] - b[0]) * 111_195.0
    dx = (a[1] - b[1]) * 111_195.0 * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy)


def test_an_intersection_is_placed_on_the_node_the_streets_share(client):
    resp = client.get(PATH, params={"q": "Rua de Santa Catarina / Rua Formosa"})
    assert resp.status_code == 200, resp.text
    found = resp.json()
    assert set(found) == {"lat", "lon", "precision", "matched", "note"}
    assert found["precision"] == "intersection" and found["note"] == ""
    assert "Santa Catarina" in found["matched"] and "Formosa" in found["matched"]
    assert metres((found["lat"], found["lon"]), CORNER) < 1.0


def test_a_house_number_the_map_lacks_is_said_in_the_note(client):
    resp = client.get(PATH, params={"q": "Praça D. João I 999"})
    assert resp.status_code == 200, resp.text
    found = resp.json()
    assert (found["precision"], found["matched"]) == ("street", "Praça Dom João I")
    assert "house number 999 is not on the map" in found["note"]


def test_an_unknown_street_is_a_400_saying_why(client):
    resp = client.get(PATH, params={"q": "Rua Que Não Existe 7"})
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["reason"] == "unknown_street"
    assert "no street on the map matches" in body["description"]


def test_a_street_too_long_to_place_is_refused_with_the_geocoders_reason(client):
    resp = client.get(PATH, params={"q": "Rua do Almada"})
    assert resp.status_code == 400, resp.text
    assert "give a house number on the map or a cross street" in resp.json()["description"]


def test_a_missing_empty_or_oversized_query_is_an_error(client):
    for params in ({}, {"q": ""}, {"q": "Rua Formosa " * 20}):
        resp = client.get(PATH, params=params)
        assert resp.status_code in (400, 422), (params, resp.text)
        assert resp.json()["detail"]


def test_lookups_share_the_per_address_limit_of_the_page_s_reports(api_settings):
    api = api_settings.api.model_copy(update={"post_rate_per_address_per_min": 3})
    app = create_app(api_settings.model_copy(update={"api": api}))
    q = {"q": "Rua de Santa Catarina / Rua Formosa"}
    form = {"service_code": "pothole", "address_string": q["q"]}
    with TestClient(app, client=("198.51.100.21", 1)) as one:
        assert one.get(PATH, params=q).status_code == 200
        assert one.get(PATH, params=q).status_code == 200
        assert one.post("/report/submit", data=form).status_code == 200
        limited = one.get(PATH, params=q)
        assert limited.status_code == 429 and "Retry-After" in limited.headers
        assert "address" in limited.json()["detail"]
        assert one.post("/report/submit", data=form).status_code == 429
    with TestClient(app, client=("198.51.100.22", 1)) as other:
        assert other.get(PATH, params=q).status_code == 200


def test_a_place_a_report_would_be_refused_at_is_refused_with_the_posts_reason(client):
    # A mapped viewpoint footway about 460 m from the nearest drivable road.
    resp = client.get(PATH, params={"q": "Miradouro da Rom"})
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["reason"] == "not_served" and "from the nearest road" in body["description"]
