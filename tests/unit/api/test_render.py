"""JSON and XML rendering of Open311 documents."""

from __future__ import annotations

import orjson
from lxml import etree

from api import open311 as o311
from api.render import render, to_json, to_xml
from api.services import service


def test_json_list_documents_are_top_level_arrays():
    doc = o311.services_doc()
    parsed = orjson.loads(to_json(doc))
    assert isinstance(parsed, list) and parsed[0]["service_code"] == "pothole"
    assert parsed[0]["metadata"] is True and parsed[0]["type"] == "realtime"


def test_xml_services_have_one_element_per_service():
    root = etree.fromstring(to_xml("services", o311.services_doc()))
    assert root.tag == "services"
    items = root.findall("service")
    assert len(items) == 10
    assert items[0].findtext("service_code") == "pothole"
    assert items[0].findtext("metadata") == "true"


def test_xml_starts_with_the_utf8_declaration():
    body, ctype = render("xml", "errors", o311.errors_doc(403, "é"))
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert ctype.startswith("text/xml")


def test_service_definition_repeated_children_are_arrays_in_json_and_named_in_xml():
    doc = o311.definition_doc(service("fallen_tree"))
    parsed = orjson.loads(to_json(doc))
    assert isinstance(parsed["attributes"], list)
    assert isinstance(parsed["attributes"][0]["values"], list)
    root = etree.fromstring(to_xml("service_definition", doc))
    attrs = root.findall("attributes/attribute")
    assert [a.findtext("code") for a in attrs] == ["blocking", "access_notes"]
    keys = [v.findtext("key") for v in attrs[0].findall("values/value")]
    assert keys == ["road", "sidewalk", "cycle_lane", "power_line"]


def test_one_element_list_is_still_an_array_in_json():
    parsed = orjson.loads(to_json(o311.created_doc("abc", None)))
    assert parsed == [{"service_request_id": "abc", "service_notice": None, "account_id": None}]


def test_error_bodies():
    assert orjson.loads(to_json(o311.errors_doc(404, "no"))) == [{"code": 404, "description": "no"}]
    root = etree.fromstring(to_xml("errors", o311.errors_doc(404, "no")))
    assert root.tag == "errors"
    assert root.find("error/code").text == "404" and root.find("error/description").text == "no"


def test_none_is_an_empty_element_and_control_characters_are_dropped():
    root = etree.fromstring(to_xml("service_requests", [{"a": None, "b": "x\x00y"}]))
    assert root.find("request/a").text is None and root.find("request/b").text == "xy"


def test_discovery_formats_are_named_format():
    from datetime import UTC, datetime

    root = etree.fromstring(
        to_xml("discovery", o311.discovery_doc("http://h/open311/v2", datetime.now(UTC), "c"))
    )
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == [
        "text/xml",
        "application/json",
    ]
