"""Driving speeds per road and the parsing of OSM ``maxspeed``.

A road's speed is, in order:

1. its OSM ``maxspeed`` when present and understood (``parse_maxspeed``), clamped to
   ``[min_kph, max_kph]``;
2. else the speed of its highway class in ``SpeedTable.by_highway_kph``;
3. else ``SpeedTable.fallback_kph``.

The defaults below are typical urban driving speeds for a service van, not legal limits;
they are deliberately conservative on the small classes where parked cars, crossings and
turns dominate. Pass your own ``SpeedTable`` to ``geo.build_graph`` to change them; the
table is part of the cache key, so a different table gives a different cached graph.

``maxspeed`` values this module understands (see ``parse_maxspeed``):

- plain numbers, km/h by default: ``"50"``, ``"50.5"``, ``"50 km/h"``, ``"50kmh"``;
- other units: ``"30 mph"``, ``"30mph"``, ``"10 knots"``;
- implicit zone codes ``"CC:zone"`` (``"PT:urban"``, ``"DE:rural"``, ``"GB:nsl_single"``,
  ``"FR:zone30"``), looked up in ``ZONE_KPH`` by the whole code, then by the zone alone;
- ``"walk"``; lists joined by ``;``, ``|`` or ``,`` (``"50;30"``): the mean of the parts
  understood;
- ``"none"``, ``"signals"``, ``"variable"`` and anything unparseable give ``None``
  (the highway-class speed applies).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MPH_TO_KPH = 1.609344
KNOT_TO_KPH = 1.852

#: Default speed per OSM ``highway`` class, km/h.
DEFAULT_SPEEDS_KPH: Mapping[str, float] = MappingProxyType(
    {
        "motorway": 100.0,
        "motorway_link": 60.0,
        "trunk": 80.0,
        "trunk_link": 50.0,
        "primary": 60.0,
        "primary_link": 40.0,
        "secondary": 50.0,
        "secondary_link": 40.0,
        "tertiary": 40.0,
        "tertiary_link": 30.0,
        "unclassified": 30.0,
        "residential": 30.0,
        "living_street": 10.0,
        "road": 30.0,
        "busway": 30.0,
    }
)

#: Implicit speed-limit zones (``maxspeed=CC:zone``), km/h. Whole codes win over zones.
ZONE_KPH: Mapping[str, float] = MappingProxyType(
    {
        # generic zones, whatever the country
        "urban": 50.0,
        "rural": 90.0,
        "trunk": 100.0,
        "motorway": 120.0,
        "living_street": 20.0,
        "bicycle_road": 30.0,
        "zone20": 20.0,
        "zone30": 30.0,
        "school": 30.0,
        "walk": 7.0,
        # countries whose rural or motorway limits differ from the generic ones
        "DE:rural": 100.0,
        "DE:motorway": 130.0,
        "AT:rural": 100.0,
        "AT:motorway": 130.0,
        "FR:rural": 80.0,
        "FR:motorway": 130.0,
        "IT:rural": 90.0,
        "IT:motorway": 130.0,
        "ES:rural": 90.0,
        "PT:rural": 90.0,
        "PT:motorway": 120.0,
        "MX:urban": 50.0,
        "MX:rural": 80.0,
        "US:urban": 25.0 * MPH_TO_KPH,
        "GB:nsl_single": 60.0 * MPH_TO_KPH,
        "GB:nsl_dual": 70.0 * MPH_TO_KPH,
        "GB:motorway": 70.0 * MPH_TO_KPH,
        "GB:urban": 30.0 * MPH_TO_KPH,
        "UK:nsl_single": 60.0 * MPH_TO_KPH,
        "UK:nsl_dual": 70.0 * MPH_TO_KPH,
        "UK:motorway": 70.0 * MPH_TO_KPH,
    }
)

_NUMBER_UNIT = re.compile(
    r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>km/h|kmh|kph|mph|knots?|kn)?\s*$", re.IGNORECASE
)
_LIST_SEPARATORS = re.compile(r"[;|,]")


def _parse_one(value: str) -> float | None:
    text = value.strip()
    if not text:
        return None
    match = _NUMBER_UNIT.match(text)
    if match:
        number = float(match["num"])
        unit = (match["unit"] or "").lower()
        if unit == "mph":
            number *= MPH_TO_KPH
        elif unit.startswith("kn"):
            number *= KNOT_TO_KPH
        return number if number > 0 else None
    if text.lower() == "walk":
        return ZONE_KPH["walk"]
    if ":" in text:
        if text in ZONE_KPH:
            return ZONE_KPH[text]
        zone = text.split(":", 1)[1].strip().lower()
        return ZONE_KPH.get(zone)
    return None


def parse_maxspeed(value: str | Iterable[str] | None) -> float | None:
    """An OSM ``maxspeed`` value in km/h, or ``None`` when absent or not understood.

    ``value`` is a tag value (``"50"``, ``"30 mph"``, ``"PT:urban"``, ``"50;30"``) or several
    of them (osmnx merges the tags of simplified ways into a list); the result is then the
    mean of the parts understood.
    """
    if value is None:
        return None
    parts: list[str] = []
    for item in [value] if isinstance(value, str) else value:
        parts.extend(_LIST_SEPARATORS.split(str(item)))
    speeds = [s for s in (_parse_one(p) for p in parts) if s is not None]
    if not speeds:
        return None
    return sum(speeds) / len(speeds)


@dataclass(frozen=True)
class SpeedTable:
    """How fast a crew drives on each road, km/h (see the module docstring)."""

    by_highway_kph: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SPEEDS_KPH))
    fallback_kph: float = 30.0
    use_maxspeed: bool = True
    min_kph: float = 5.0
    max_kph: float = 130.0

    def speed_kph(self, highway: str | Iterable[str] | None, maxspeed: object = None) -> float:
        """The speed of a road of class ``highway`` tagged ``maxspeed`` (either may be a list)."""
        if self.use_maxspeed and isinstance(maxspeed, (str, list, tuple)):
            tagged = parse_maxspeed(maxspeed)
            if tagged is not None:
                return min(max(tagged, self.min_kph), self.max_kph)
        classes = [highway] if isinstance(highway, str) or highway is None else list(highway)
        known = [
            self.by_highway_kph[c] for c in classes if c is not None and c in self.by_highway_kph
        ]
        return sum(known) / len(known) if known else self.fallback_kph

    def fingerprint(self) -> str:
        """A short stable hash of the table, part of the cache key."""
        doc = {
            "by_highway_kph": {k: round(v, 6) for k, v in sorted(self.by_highway_kph.items())},
            "fallback_kph": self.fallback_kph,
            "use_maxspeed": self.use_maxspeed,
            "min_kph": self.min_kph,
            "max_kph": self.max_kph,
            "zones": {k: round(v, 6) for k, v in sorted(ZONE_KPH.items())},
        }
        blob = json.dumps(doc, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def travel_time_s(length_m: float, speed_kph: float) -> float:
    """Seconds to drive ``length_m`` at ``speed_kph``."""
    if speed_kph <= 0 or not math.isfinite(speed_kph):
        raise ValueError(f"speed must be positive, got {speed_kph}")
    return length_m / (speed_kph / 3.6)
