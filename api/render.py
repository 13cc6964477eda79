"""Rendering Open311 documents as JSON and XML (pure).

JSON follows the spec's mapping: a list document is a top-level array, and a repeated
child is always an array (even with one element). XML wraps a list document in its root
element and names every repeated child after its parent (``services`` -> ``service``,
``attributes`` -> ``attribute``). None becomes JSON ``null`` and an empty XML element;
booleans become ``true``/``false``. Every XML answer starts with the UTF-8 declaration.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from lxml import etree

_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"

# The element name of each repeated child, by the name of the list that holds it.
CHILD = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "notes": "note",
    "service_requests_updates": "request_update",  # mySociety's spelling, as its clients read it
}


def to_json(doc: Any) -> bytes:
    """A document as UTF-8 JSON."""
    return orjson.dumps(doc)


# Characters XML 1.0 cannot carry at all; they are dropped rather than failing the answer.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return _NOT_XML.sub("", str(value))


def _fill(elem: etree._Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _fill(etree.SubElement(elem, key), child)
    elif isinstance(value, list):
        name = CHILD.get(elem.tag, "item")
        for child in value:
            _fill(etree.SubElement(elem, name), child)
    else:
        elem.text = _text(value)


def to_xml(root: str, doc: Any) -> bytes:
    """A document as UTF-8 XML under ``root`` (a list document's items named by ``CHILD``)."""
    elem = etree.Element(root)
    _fill(elem, doc)
    return _DECLARATION + etree.tostring(elem, encoding="UTF-8", xml_declaration=False)


def render(fmt: str, root: str, doc: Any) -> tuple[bytes, str]:
    """Body and content type of ``doc`` in ``fmt`` (``json`` or ``xml``)."""
    if fmt == "xml":
        return to_xml(root, doc), XML_TYPE
    return to_json(doc), JSON_TYPE
