"""The Open311 service catalogue: one service per citizen category, with typed attributes.

``service_code`` is the ``core.schemas.Category`` value. Attributes follow GeoReport v2
service definitions (``string``, ``number``, ``datetime``, ``text``, ``singlevaluelist``,
``multivaluelist``); an attribute with ``asset=True`` is the asset the report is about
(a lamp, a drain, a signal) and becomes ``CitizenReport.asset_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core.schemas import Category

Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]


@dataclass(frozen=True)
class Attribute:
    """One attribute of a service definition."""

    code: str
    datatype: Datatype
    description: str
    required: bool = False
    variable: bool = True
    datatype_description: str | None = None
    values: tuple[tuple[str, str], ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    asset: bool = False

    def __repr__(self) -> str:
        return f"Attribute({self.code}:{self.datatype}{'!' if self.required else ''})"


@dataclass(frozen=True)
class Service:
    """One Open311 service (a citizen category)."""

    code: str
    name: str
    description: str
    group: str
    keywords: tuple[str, ...]
    attributes: tuple[Attribute, ...] = field(default_factory=tuple)

    @property
    def metadata(self) -> bool:
        """Whether the service has a definition worth fetching (GeoReport ``metadata``)."""
        return bool(self.attributes)

    def attribute(self, code: str) -> Attribute | None:
        """The attribute named ``code``, or None."""
        return next((a for a in self.attributes if a.code == code), None)

    def __repr__(self) -> str:
        return f"Service({self.code}, {len(self.attributes)} attributes)"


_YES_NO = (("yes", "Yes"), ("no", "No"))

SERVICES: tuple[Service, ...] = (
    Service(
        Category.POTHOLE.value,
        "Pothole",
        "A hole or sunken patch in the road surface.",
        "roads",
        ("pothole", "road", "hole"),
        (
            Attribute(
                "depth_cm",
                "number",
                "Roughly how deep is it, in centimetres?",
                datatype_description="centimetres, 0 to 100",
                min_value=0,
                max_value=100,
            ),
            Attribute(
                "lane",
                "singlevaluelist",
                "Where on the road is it?",
                values=(
                    ("left", "Left lane"),
                    ("right", "Right lane"),
                    ("centre", "Centre"),
                    ("shoulder", "Shoulder or kerb"),
                ),
            ),
        ),
    ),
    Service(
        Category.STREETLIGHT_OUT.value,
        "Streetlight out",
        "A street lamp that is off or flickering.",
        "lighting",
        ("streetlight", "lamp", "light"),
        (
            Attribute(
                "lamp_id",
                "string",
                "The number on the lamp post, if you can read it.",
                datatype_description="up to 64 characters",
                asset=True,
            ),
            Attribute(
                "fault",
                "singlevaluelist",
                "What is wrong with it?",
                values=(
                    ("off", "Off at night"),
                    ("flickering", "Flickering"),
                    ("day_burning", "On during the day"),
                ),
            ),
        ),
    ),
    Service(
        Category.WATER_LEAK.value,
        "Water leak",
        "Water escaping from a main, a pipe or a hydrant.",
        "water",
        ("water", "leak", "pipe"),
        (
            Attribute(
                "severity",
                "singlevaluelist",
                "How much water is escaping?",
                values=(("seeping", "Seeping"), ("flowing", "Flowing"), ("gushing", "Gushing")),
            ),
            Attribute(
                "noticed_at",
                "datetime",
                "When did you first notice it?",
                datatype_description="W3C datetime with a zone",
            ),
        ),
    ),
    Service(
        Category.FLOODING.value,
        "Flooding",
        "Standing water on a road or path.",
        "water",
        ("flood", "water"),
        (
            Attribute(
                "safety", "string", "If water is entering a building, call 112.", variable=False
            ),
            Attribute(
                "depth_cm",
                "number",
                "Roughly how deep is the water, in centimetres?",
                datatype_description="centimetres, 0 to 300",
                min_value=0,
                max_value=300,
            ),
            Attribute("passable", "singlevaluelist", "Can cars still pass?", values=_YES_NO),
        ),
    ),
    Service(
        Category.BLOCKED_DRAIN.value,
        "Blocked drain",
        "A gully or drain that does not take water.",
        "water",
        ("drain", "gully", "sewer"),
        (
            Attribute(
                "drain_id",
                "string",
                "The number on the drain cover, if any.",
                datatype_description="up to 64 characters",
                asset=True,
            ),
        ),
    ),
    Service(
        Category.FALLEN_TREE.value,
        "Fallen tree",
        "A tree or large branch down.",
        "parks",
        ("tree", "branch"),
        (
            Attribute(
                "blocking",
                "multivaluelist",
                "What is it blocking?",
                values=(
                    ("road", "Road"),
                    ("sidewalk", "Sidewalk"),
                    ("cycle_lane", "Cycle lane"),
                    ("power_line", "Power line"),
                ),
            ),
            Attribute("access_notes", "text", "Anything the crew should know to reach it?"),
        ),
    ),
    Service(
        Category.ILLEGAL_DUMPING.value,
        "Illegal dumping",
        "Rubbish left where it should not be.",
        "sanitation",
        ("dumping", "rubbish", "fly-tipping"),
        (
            Attribute(
                "waste",
                "multivaluelist",
                "What kind of waste?",
                values=(
                    ("household", "Household"),
                    ("furniture", "Furniture"),
                    ("construction", "Construction"),
                    ("tyres", "Tyres"),
                    ("hazardous", "Hazardous"),
                ),
            ),
        ),
    ),
    Service(
        Category.GRAFFITI.value,
        "Graffiti",
        "Graffiti on public property.",
        "sanitation",
        ("graffiti", "vandalism"),
        (Attribute("offensive", "singlevaluelist", "Is it offensive?", values=_YES_NO),),
    ),
    Service(
        Category.DAMAGED_SIGN.value,
        "Damaged sign",
        "A road sign that is damaged, turned or missing.",
        "roads",
        ("sign", "road sign"),
        (
            Attribute(
                "sign_type",
                "singlevaluelist",
                "What kind of sign?",
                values=(
                    ("stop", "Stop"),
                    ("give_way", "Give way"),
                    ("speed", "Speed limit"),
                    ("other", "Other"),
                ),
            ),
        ),
    ),
    Service(
        Category.TRAFFIC_SIGNAL_FAULT.value,
        "Traffic signal fault",
        "Traffic lights not working.",
        "roads",
        ("traffic light", "signal"),
        (
            Attribute(
                "fault",
                "singlevaluelist",
                "What is wrong with the signal?",
                required=True,
                values=(
                    ("all_out", "All lights out"),
                    ("stuck_red", "Stuck on red"),
                    ("flashing", "Flashing"),
                    ("pedestrian", "Pedestrian light"),
                ),
            ),
            Attribute(
                "signal_id",
                "string",
                "The number on the signal box, if any.",
                datatype_description="up to 64 characters",
                asset=True,
            ),
        ),
    ),
)

_BY_CODE = {s.code: s for s in SERVICES}
assert set(_BY_CODE) == {c.value for c in Category}, "every category is a service"


def service(code: str) -> Service | None:
    """The service with ``code``, or None."""
    return _BY_CODE.get(code)
