"""Open311 GeoReport v2 conformance: every endpoint in JSON and XML, every error case."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from lxml import etree

from core.schemas import Category

from .helpers import check_against_schema, incident, now, write

V2 = "/open311/v2"
FORMATS = ("json", "xml")


def xml(resp) -> etree._Element:
    assert resp.headers["content-type"].startswith("text/xml")
    assert resp.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return etree.fromstring(resp.content)


def assert_error(resp, code: int, fmt: str = "json", fragment: str = "") -> None:
    assert resp.status_code == code, resp.text
    if fmt == "xml":
        root = xml(resp)
        assert root.tag == "errors"
        errs = root.findall("error")
        assert len(errs) == 1 and errs[0].findtext("code") == str(code)
        assert fragment in errs[0].findtext("description")
    else:
        body = resp.json()
        assert isinstance(body, list) and body[0]["code"] == code
        assert set(body[0]) == {"code", "description"} and fragment in body[0]["description"]


def post(client, api_key, fmt="json", **fields):
    data = {
        "api_key": api_key,
        "service_code": "pothole",
        "lat": "41.1496",
        "long": "-8.6109",
        "description": "deep hole in the right lane",
    }
    data.update({k: v for k, v in fields.items() if v is not None})
    for k in [k for k, v in fields.items() if v is None]:
        data.pop(k, None)
    return client.post(f"{V2}/requests.{fmt}", data=data)


# --- discovery, services, definitions ------------------------------------------------------


def test_discovery(client):
    doc = client.get(f"{V2}/discovery.json").json()
    assert doc["endpoints"][0]["formats"] == ["text/xml", "application/json"]
    assert doc["endpoints"][0]["url"].endswith("/open311/v2")
    root = xml(client.get(f"{V2}/discovery.xml"))
    assert root.tag == "discovery"
    assert (
        root.findtext("endpoints/endpoint/specification") == "http://wiki.open311.org/GeoReport_v2"
    )


def test_services_json_is_a_top_level_array_matching_the_schema(client):
    resp = client.get(f"{V2}/services.json")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert [s["service_code"] for s in body] == [c.value for c in Category]
    for s in body:
        check_against_schema(s, "service.json")


def test_services_xml_field_by_field(client):
    root = xml(client.get(f"{V2}/services.xml"))
    assert root.tag == "services"
    first = root.find("service")
    assert [c.tag for c in first] == [
        "service_code",
        "service_name",
        "description",
        "metadata",
        "type",
        "keywords",
        "group",
    ]
    assert first.findtext("service_code") == "pothole"
    assert first.findtext("service_name") == "Pothole"
    assert first.findtext("metadata") == "true" and first.findtext("type") == "realtime"
    assert len(root.findall("service")) == len(Category)


@pytest.mark.parametrize("fmt", FORMATS)
def test_jurisdiction_id(client, fmt):
    assert (
        client.get(f"{V2}/services.{fmt}", params={"jurisdiction_id": "porto.test"}).status_code
        == 200
    )
    assert_error(
        client.get(f"{V2}/services.{fmt}", params={"jurisdiction_id": "lisboa"}),
        404,
        fmt,
        "jurisdiction_id",
    )


def test_service_definition_json_and_xml(client):
    doc = client.get(f"{V2}/services/streetlight_out.json").json()
    assert doc["service_code"] == "streetlight_out"
    for a in doc["attributes"]:
        assert {"variable", "code", "datatype", "required", "order", "description"} <= set(a)
    fault = next(a for a in doc["attributes"] if a["code"] == "fault")
    assert fault["datatype"] == "singlevaluelist" and isinstance(fault["values"], list)
    root = xml(client.get(f"{V2}/services/streetlight_out.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "streetlight_out"
    attrs = root.findall("attributes/attribute")
    assert [a.findtext("code") for a in attrs] == ["lamp_id", "fault"]
    assert attrs[0].findtext("datatype") == "string" and attrs[0].findtext("required") == "false"
    assert attrs[0].findtext("variable") == "true" and attrs[0].findtext("order") == "1"
    assert [v.findtext("key") for v in attrs[1].findall("values/value")] == [
        "off",
        "flickering",
        "day_burning",
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_service_definition_is_404(client, fmt):
    assert_error(client.get(f"{V2}/services/volcano.{fmt}"), 404, fmt, "service_code")


def test_unknown_format_is_an_error_not_a_crash(client):
    resp = client.get(f"{V2}/services.yaml")
    assert resp.status_code == 400 and resp.json()[0]["code"] == 400


# --- POST --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_post_returns_the_id_and_get_finds_it_at_once(client, api_key, fmt):
    resp = post(
        client,
        api_key,
        fmt,
        **{
            "attribute[depth_cm]": "12",
            "attribute[lane]": "right",
            "address_string": "Rua de Santa Catarina 1, Porto",
        },
    )
    assert resp.status_code == 200, resp.text
    if fmt == "json":
        created = resp.json()
        assert isinstance(created, list) and len(created) == 1
        rid = created[0]["service_request_id"]
        assert set(created[0]) == {"service_request_id", "service_notice", "account_id"}
    else:
        root = xml(resp)
        assert root.tag == "service_requests"
        rid = root.findtext("request/service_request_id")
        assert root.find("request/service_notice") is not None
    got = client.get(f"{V2}/requests/{rid}.json").json()
    assert len(got) == 1
    req = got[0]
    check_against_schema(req, "request.json")
    assert (req["service_request_id"], req["status"], req["service_code"]) == (
        rid,
        "open",
        "pothole",
    )
    assert req["lat"] == 41.1496 and req["long"] == -8.6109
    assert req["address"] == "Rua de Santa Catarina 1, Porto"
    assert req["description"] == "deep hole in the right lane"
    assert {"code": "depth_cm", "value": 12.0} in req["attributes"]
    assert req["requested_datetime"].endswith("Z")


def test_get_request_xml_field_by_field(client, api_key):
    rid = post(client, api_key, **{"attribute[lane]": "left"}).json()[0]["service_request_id"]
    root = xml(client.get(f"{V2}/requests/{rid}.xml"))
    assert root.tag == "service_requests"
    req = root.findall("request")
    assert len(req) == 1
    r = req[0]
    assert r.findtext("service_request_id") == rid
    assert r.findtext("status") == "open"
    assert r.findtext("extended_status") == "OPEN"
    assert r.findtext("service_code") == "pothole"
    assert r.findtext("service_name") == "Pothole"
    assert r.findtext("description") == "deep hole in the right lane"
    assert float(r.findtext("lat")) == 41.1496 and float(r.findtext("long")) == -8.6109
    assert r.findtext("requested_datetime").endswith("Z")
    assert r.find("agency_responsible") is not None and r.find("media_url") is not None
    assert [a.findtext("code") for a in r.findall("attributes/attribute")] == ["lane"]
    assert [n.findtext("summary") for n in r.findall("notes/note")] == ["OPEN"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_post_error_cases(client, api_key, fmt):
    assert_error(post(client, None, fmt), 403, fmt, "api_key")
    assert_error(post(client, "cfk_not-a-key", fmt), 403, fmt, "Invalid api_key")
    assert_error(post(client, api_key, fmt, service_code="volcano"), 404, fmt, "service_code")
    assert_error(post(client, api_key, fmt, service_code=None), 400, fmt, "service_code")
    assert_error(post(client, api_key, fmt, lat=None, long=None), 400, fmt, "location")
    assert_error(post(client, api_key, fmt, long=None), 400, fmt, "lat and long")
    # Places the pipeline would refuse are refused here, not accepted and then lost.
    lisbon = {"lat": "38.7223", "long": "-9.1393"}
    assert_error(post(client, api_key, fmt, **lisbon), 400, fmt, "outside the service area")
    at_sea = {"lat": "41.2159", "long": "-8.72"}
    assert_error(post(client, api_key, fmt, **at_sea), 400, fmt, "from the nearest road")
    assert_error(post(client, api_key, fmt, description="x" * 4001), 400, fmt, "4000")
    assert_error(post(client, api_key, fmt, **{"attribute[lane]": "sky"}), 400, fmt, "lane")
    assert_error(post(client, api_key, fmt, jurisdiction_id="lisboa"), 404, fmt, "jurisdiction_id")
    assert_error(
        post(client, api_key, fmt, service_code="traffic_signal_fault"),
        400,
        fmt,
        "attribute[fault]",
    )


def test_a_value_the_store_cannot_hold_is_400_and_nothing_is_recorded(client, api_key):
    before = client.get(f"{V2}/requests.json", params={"service_code": "pothole"}).json()
    assert_error(post(client, api_key, description="deep\x00hole"), 400, "json", "NUL")
    after = client.get(f"{V2}/requests.json", params={"service_code": "pothole"}).json()
    assert len(after) == len(before)


def test_multivaluelist_attribute_with_brackets(client, api_key):
    resp = post(
        client,
        api_key,
        service_code="illegal_dumping",
        **{"attribute[waste][]": ["furniture", "tyres"]},
    )
    rid = resp.json()[0]["service_request_id"]
    req = client.get(f"{V2}/requests/{rid}.json").json()[0]
    assert req["attributes"] == [{"code": "waste", "value": "furniture,tyres"}]


def test_oversized_body_is_413(client, api_key):
    resp = client.post(
        f"{V2}/requests.xml",
        content=b"a=" + b"x" * 300_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_error(resp, 413, "xml", "body")


# --- GET requests ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_request_is_404(client, fmt):
    assert_error(client.get(f"{V2}/requests/{uuid.uuid4()}.{fmt}"), 404, fmt, "service_request_id")
    assert_error(client.get(f"{V2}/requests/not-an-id.{fmt}"), 404, fmt, "service_request_id")


def test_list_filters_paging_and_limits(client, api_key):
    ids = [
        post(client, api_key, service_code="graffiti", lat="41.16", long="-8.62").json()[0][
            "service_request_id"
        ]
        for _ in range(3)
    ]
    body = client.get(f"{V2}/requests.json", params={"service_code": "graffiti"}).json()
    assert {r["service_request_id"] for r in body} == set(ids)
    for r in body:
        check_against_schema(r, "request.json")
    page1 = client.get(
        f"{V2}/requests.json", params={"service_code": "graffiti", "page_size": 2}
    ).json()
    page2 = client.get(
        f"{V2}/requests.json", params={"service_code": "graffiti", "page_size": 2, "page": 2}
    ).json()
    assert len(page1) == 2 and len(page2) == 1
    assert {r["service_request_id"] for r in page1 + page2} == set(ids)
    inside = client.get(
        f"{V2}/requests.json",
        params={"bbox": "-8.63,41.155,-8.615,41.165", "service_code": "graffiti"},
    )
    assert len(inside.json()) == 3
    outside = client.get(f"{V2}/requests.json", params={"bbox": "0,0,1,1"})
    assert outside.json() == []
    two = client.get(
        f"{V2}/requests.json",
        params={"service_request_id": f"{ids[0]},{ids[1]}", "status": "closed"},
    )
    assert {r["service_request_id"] for r in two.json()} == {ids[0], ids[1]}
    closed = client.get(
        f"{V2}/requests.json", params={"status": "closed", "service_code": "graffiti"}
    )
    assert closed.json() == []
    repeated = client.get(
        f"{V2}/requests.json",
        params=[("service_code", "graffiti"), ("service_code", "flooding"), ("status", "open")],
    )
    assert set(ids) <= {r["service_request_id"] for r in repeated.json()}
    root = xml(client.get(f"{V2}/requests.xml", params={"service_code": "graffiti"}))
    assert len(root.findall("request")) == 3


def test_an_empty_list_is_an_empty_array_and_an_empty_root(client):
    assert client.get(f"{V2}/requests.json", params={"service_code": "damaged_sign"}).json() == []
    root = xml(client.get(f"{V2}/requests.xml", params={"service_code": "damaged_sign"}))
    assert root.tag == "service_requests" and len(root) == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_list_error_cases(client, fmt):
    t0 = now()
    bad = [
        (
            {"start_date": (t0 - timedelta(days=200)).isoformat(), "end_date": t0.isoformat()},
            "90 days",
        ),
        ({"start_date": "yesterday"}, "start_date"),
        ({"start_date": "2025-01-01T00:00:00"}, "zone"),
        ({"status": "fixed"}, "status"),
        ({"page_size": "5000"}, "page_size"),
        ({"start_date": "9999-12-31T00:00:00Z"}, "out of range"),
        ({"end_date": "0001-01-01T00:00:00+05:00"}, "out of range"),
    ]
    for params, fragment in bad:
        assert_error(client.get(f"{V2}/requests.{fmt}", params=params), 400, fmt, fragment)
    assert_error(client.get(f"{V2}/requests.{fmt}", params={"service_code": "volcano"}), 404, fmt)


def test_date_window(client, api_key):
    rid = post(client, api_key, service_code="flooding").json()[0]["service_request_id"]
    t0 = now()
    params = {
        "start_date": (t0 - timedelta(hours=1)).isoformat(),
        "end_date": (t0 + timedelta(minutes=1)).isoformat(),
    }
    assert rid in {
        r["service_request_id"] for r in client.get(f"{V2}/requests.json", params=params).json()
    }
    params = {
        "start_date": (t0 - timedelta(days=10)).isoformat(),
        "end_date": (t0 - timedelta(days=9)).isoformat(),
    }
    assert rid not in {
        r["service_request_id"] for r in client.get(f"{V2}/requests.json", params=params).json()
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_tokens(client, api_key, fmt):
    rid = post(client, api_key).json()[0]["service_request_id"]
    resp = client.get(f"{V2}/tokens/{rid}.{fmt}")
    if fmt == "json":
        assert resp.json() == [{"service_request_id": rid, "token": rid}]
    else:
        assert xml(resp).findtext("request/service_request_id") == rid
    assert_error(client.get(f"{V2}/tokens/{uuid.uuid4()}.{fmt}"), 404, fmt, "token")


# --- status follows the incident ---------------------------------------------------------


def test_status_follows_the_incident_to_closed(client, api_key, api_settings):
    rid = post(client, api_key, service_code="blocked_drain").json()[0]["service_request_id"]
    t0 = now()
    steps = [
        ("open", t0, None),
        ("assigned", t0 + timedelta(minutes=5), "planned"),
        ("on_site", t0 + timedelta(minutes=30), None),
        ("resolved", t0 + timedelta(minutes=50), "cleared"),
        ("closed", t0 + timedelta(minutes=55), None),
    ]
    expected = [
        ("open", "OPEN"),
        ("open", "ACTION_SCHEDULED"),
        ("open", "IN_PROGRESS"),
        ("closed", "FIXED"),
        ("closed", "CLOSED"),
    ]
    inc_id = f"inc-{uuid.uuid4().hex[:8]}"
    for n, want in enumerate(expected, start=1):
        write(api_settings, incident(inc_id, [rid], steps[:n], category="blocked_drain"))
        req = client.get(f"{V2}/requests/{rid}.json").json()[0]
        assert (req["status"], req["extended_status"]) == want
        assert req["incident_id"] == inc_id
    root = xml(client.get(f"{V2}/requests/{rid}.xml"))
    assert root.findtext("request/status") == "closed"
    assert [n.findtext("summary") for n in root.findall("request/notes/note")] == [
        "OPEN",
        "OPEN",
        "ACTION_SCHEDULED",
        "IN_PROGRESS",
        "FIXED",
        "CLOSED",
    ]
    closed = client.get(f"{V2}/requests.json", params={"status": "closed"}).json()
    assert rid in {r["service_request_id"] for r in closed}
    window = {
        "start_date": (t0 - timedelta(hours=1)).isoformat(),
        "end_date": (t0 + timedelta(hours=1)).isoformat(),
    }
    updates = client.get(f"{V2}/servicerequestupdates.json", params=window).json()
    mine = [u for u in updates if u["service_request_id"] == rid]
    assert [u["status"] for u in mine] == [
        "OPEN",
        "ACTION_SCHEDULED",
        "IN_PROGRESS",
        "FIXED",
        "CLOSED",
    ]
    root = xml(client.get(f"{V2}/servicerequestupdates.xml", params=window))
    assert root.tag == "service_requests_updates" and root.findall("request_update")


def test_a_merged_request_reads_duplicate_and_points_to_its_incident(client, api_key, api_settings):
    rid = post(client, api_key).json()[0]["service_request_id"]
    t0 = now()
    a, b = f"inc-{uuid.uuid4().hex[:8]}", f"inc-{uuid.uuid4().hex[:8]}"
    write(
        api_settings,
        incident(
            a,
            [rid],
            [("open", t0, None), ("merged", t0 + timedelta(minutes=1), "merge")],
            merged_into=b,
        ),
    )
    req = client.get(f"{V2}/requests/{rid}.json").json()[0]
    assert (req["status"], req["extended_status"], req["incident_id"]) == ("closed", "DUPLICATE", b)
    assert b in req["status_notes"]
