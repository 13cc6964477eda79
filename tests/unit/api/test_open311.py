"""Open311 request parsing, status mapping and document building (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from api import open311 as o311
from api.services import SERVICES, service
from core.schemas import Category, IncidentStatus

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def form(pairs: list[tuple[str, str]]) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out, pairs


def parse(pairs: list[tuple[str, str]]) -> o311.NewRequest:
    f, p = form(pairs)
    return o311.parse_new_request(f, p, now=NOW)


BASE = [("service_code", "pothole"), ("lat", "41.15"), ("long", "-8.61")]


def test_every_category_is_a_service_with_its_value_as_code():
    assert [s.code for s in SERVICES] == [c.value for c in Category]


def test_a_minimal_request_is_accepted():
    new = parse(BASE)
    assert (new.service_code, new.lat, new.lon, new.requested_at) == ("pothole", 41.15, -8.61, NOW)
    assert new.attributes == {} and not new.contact.any()


def test_typed_attributes_single_and_multi_valued():
    new = parse(
        [
            ("service_code", "fallen_tree"),
            ("lat", "41.1"),
            ("long", "-8.6"),
            ("attribute[blocking][]", "road"),
            ("attribute[blocking][]", "power_line"),
            ("attribute[access_notes]", "behind the gate"),
        ]
    )
    assert new.attributes == {"blocking": ["road", "power_line"], "access_notes": "behind the gate"}
    new = parse([*BASE, ("attribute[depth_cm]", "12.5"), ("attribute[lane]", "left")])
    assert new.attributes == {"depth_cm": 12.5, "lane": "left"}


def test_asset_attribute_becomes_the_reports_asset_id():
    new = parse(
        [
            ("service_code", "streetlight_out"),
            ("lat", "41.1"),
            ("long", "-8.6"),
            ("attribute[lamp_id]", "L-1234"),
        ]
    )
    assert new.asset_id == "L-1234"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([("attribute[depth_cm]", "deep")], "not a number"),
        ([("attribute[depth_cm]", "500")], "above the maximum"),
        ([("attribute[lane]", "middle")], "is not one of"),
        ([("attribute[colour]", "red")], "not an attribute"),
        ([("attribute[lane]", "left"), ("attribute[lane]", "right")], "takes one value"),
        ([("description", "x" * 4001)], "longer than 4000"),
        ([("media_url", "ftp://x")], "http(s) URL"),
        ([("email", "nobody")], "not an email"),
        ([("description", "a\x00b")], "NUL character"),
        ([("attribute[lane]", "left\x00")], "NUL character"),
    ],
)
def test_bad_fields_are_400_naming_the_field(extra, fragment):
    with pytest.raises(o311.Open311Error) as err:
        parse(BASE + extra)
    assert err.value.code == 400 and fragment in err.value.description


def test_a_datetime_attribute_beyond_the_calendar_is_400():
    leak = [("service_code", "water_leak"), ("lat", "41.15"), ("long", "-8.61")]
    with pytest.raises(o311.Open311Error, match="out of range") as err:
        parse([*leak, ("attribute[noticed_at]", "9999-12-31T23:00:00-05:00")])
    assert err.value.code == 400


def test_description_of_exactly_4000_characters_is_accepted():
    assert len(parse([*BASE, ("description", "x" * 4000)]).description or "") == 4000


def test_required_attribute_missing_is_400():
    with pytest.raises(o311.Open311Error, match="required"):
        parse([("service_code", "traffic_signal_fault"), ("lat", "41"), ("long", "-8")])


def test_location_rules():
    with pytest.raises(o311.Open311Error, match="location: required"):
        parse([("service_code", "pothole")])
    with pytest.raises(o311.Open311Error, match="both or neither"):
        parse([("service_code", "pothole"), ("lat", "41")])
    with pytest.raises(o311.Open311Error, match="out of range"):
        parse([("service_code", "pothole"), ("lat", "91"), ("long", "0")])
    with pytest.raises(o311.Open311Error, match="cannot place"):
        parse([("service_code", "pothole"), ("address_string", "Rua de Santa Catarina")])
    new = parse([("service_code", "pothole"), ("address_string", "41.15, -8.61")])
    assert (new.lat, new.lon, new.address_string) == (41.15, -8.61, "41.15, -8.61")


def test_unknown_or_missing_service_code():
    with pytest.raises(o311.Open311Error) as err:
        parse([("service_code", "volcano"), ("lat", "1"), ("long", "1")])
    assert err.value.code == 404
    with pytest.raises(o311.Open311Error) as err:
        parse([("lat", "1"), ("long", "1")])
    assert err.value.code == 400


def test_contact_is_kept_apart():
    new = parse(
        [
            *BASE,
            ("email", "a@b.pt"),
            ("phone", "+351 900"),
            ("first_name", "Ana"),
            ("last_name", "Silva"),
        ]
    )
    assert new.contact == o311.Contact("a@b.pt", "+351 900", "Ana", "Silva")


def test_collect_attributes_reads_both_forms():
    got = o311.collect_attributes(
        [("attribute[a]", "1"), ("attribute[b][]", "x"), ("attribute[b][]", "y"), ("other", "z")]
    )
    assert got == {"a": ["1"], "b": ["x", "y"]}


def test_client_id_for_key_is_a_valid_topic_identity():
    assert o311.client_id_for_key("porto app/1") == "open311-porto-app-1"


# --- query -----------------------------------------------------------------------------


def test_default_window_is_90_days_and_1000_requests():
    q = o311.parse_request_query({}, now=NOW)
    assert (q.start, q.end, q.page_size, q.offset) == (NOW - timedelta(days=90), NOW, 1000, 0)


def test_window_longer_than_90_days_is_refused():
    with pytest.raises(o311.Open311Error, match="90 days"):
        o311.parse_request_query(
            {"start_date": "2024-01-01T00:00:00Z", "end_date": "2024-06-01T00:00:00Z"}, now=NOW
        )


def test_dates_need_a_zone():
    with pytest.raises(o311.Open311Error, match="zone"):
        o311.parse_request_query({"start_date": "2025-01-01T00:00:00"}, now=NOW)
    q = o311.parse_request_query({"start_date": "2025-01-01T01:00:00+01:00"}, now=NOW)
    assert q.start == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "params",
    [
        {"start_date": "9999-12-31T00:00:00Z"},
        {"end_date": "0001-01-02T00:00:00Z"},
        {"start_date": "0001-01-01T00:00:00+05:00"},
        {"start_date": "0001-01-01"},
    ],
)
def test_dates_beyond_the_calendar_are_400_not_a_crash(params):
    with pytest.raises(o311.Open311Error, match="out of range") as err:
        o311.parse_request_query(params, now=NOW)
    assert err.value.code == 400


def test_ids_override_every_other_filter():
    rid = str(uuid.uuid4())
    q = o311.parse_request_query({"service_request_id": f"{rid},{rid}", "status": "bogus"}, now=NOW)
    assert q.ids == (rid,) and q.statuses == ()


def test_paging_bbox_and_statuses():
    q = o311.parse_request_query(
        {"page": "3", "page_size": "50", "status": "open,closed", "bbox": "-8.7,41.1,-8.5,41.2"},
        now=NOW,
    )
    assert (q.page, q.page_size, q.offset) == (3, 50, 100)
    assert q.statuses == ("open", "closed") and q.bbox == (-8.7, 41.1, -8.5, 41.2)
    for bad in ({"page_size": "1001"}, {"page": "0"}, {"status": "fixed"}, {"bbox": "1,2,3"}):
        with pytest.raises(o311.Open311Error):
            o311.parse_request_query(bad, now=NOW)


def test_jurisdiction():
    o311.check_jurisdiction(None, "porto")
    o311.check_jurisdiction("porto", "porto")
    with pytest.raises(o311.Open311Error) as err:
        o311.check_jurisdiction("lisboa", "porto")
    assert err.value.code == 404


# --- status mapping --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (None, None, ("open", "OPEN")),
        ("open", None, ("open", "OPEN")),
        ("open", "sent for inspection", ("open", "INVESTIGATING")),
        ("reopened", None, ("open", "OPEN")),
        ("assigned", None, ("open", "ACTION_SCHEDULED")),
        ("en_route", None, ("open", "IN_PROGRESS")),
        ("on_site", None, ("open", "IN_PROGRESS")),
        ("resolved", None, ("closed", "FIXED")),
        ("closed", None, ("closed", "CLOSED")),
        ("closed", "not_councils_responsibility", ("closed", "NOT_COUNCILS_RESPONSIBILITY")),
        ("closed", "no_further_action", ("closed", "NO_FURTHER_ACTION")),
        ("duplicate", None, ("closed", "DUPLICATE")),
        ("merged", None, ("closed", "DUPLICATE")),
    ],
)
def test_incident_status_maps_to_open311_and_extended_status(status, reason, expected):
    state = o311.status_of(status, reason=reason, incident_id="inc-1")
    assert (state.status, state.extended) == expected


def test_every_incident_status_is_mapped_and_merged_points_to_the_survivor():
    for s in IncidentStatus:
        assert o311.status_of(s.value).status in ("open", "closed")
    state = o311.status_of("merged", merged_into="inc-9", incident_id="inc-1")
    assert "inc-9" in state.notes
    assert set(o311.incident_statuses_with("closed")) == {
        "resolved",
        "closed",
        "duplicate",
        "merged",
    }


def test_request_doc_never_carries_contact_and_points_merged_requests_to_the_survivor():
    rid = uuid.uuid4()
    row = {
        "report_id": rid,
        "category": "pothole",
        "description": "hole",
        "lat": 41.0,
        "lon": -8.0,
        "reported_at": NOW,
        "incident_id": "inc-1",
        "incident_status": "merged",
        "merged_into": "inc-2",
        "updated_at": NOW + timedelta(hours=1),
        "expected_at": None,
        "attributes": {"lane": "left", "blocking": ["road", "sidewalk"]},
        "history": [
            {"status": "open", "at": "2025-03-01T11:00:00Z", "reason": None},
            {"status": "merged", "at": "2025-03-01T13:00:00Z", "reason": "merge"},
        ],
    }
    doc = o311.request_doc(row, with_notes=True)
    assert doc["service_request_id"] == str(rid)
    assert (doc["status"], doc["extended_status"], doc["incident_id"]) == (
        "closed",
        "DUPLICATE",
        "inc-2",
    )
    assert doc["requested_datetime"] == "2025-03-01T12:00:00Z"
    assert doc["attributes"] == [
        {"code": "blocking", "value": "road,sidewalk"},
        {"code": "lane", "value": "left"},
    ]
    # the incident's transition from before the report joined is not the request's history
    assert [n["summary"] for n in doc["notes"]] == ["OPEN", "DUPLICATE"]
    assert not {"email", "phone", "first_name", "last_name"} & set(doc)


def test_definition_doc_orders_attributes_and_lists_values():
    doc = o311.definition_doc(service("pothole"))
    assert doc["service_code"] == "pothole"
    assert [a["order"] for a in doc["attributes"]] == [1, 2]
    lane = doc["attributes"][1]
    assert (
        lane["datatype"] == "singlevaluelist"
        and {"key": "left", "name": "Left lane"} in lane["values"]
    )


def test_w3c_datetimes_always_carry_a_zone():
    assert o311.w3c(datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)) == "2025-01-02T03:04:05.678Z"
    assert o311.parse_w3c("2025-01-02", "d") == datetime(2025, 1, 2, tzinfo=UTC)
