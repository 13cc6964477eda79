"""Fault families: which citizen categories and sensor kinds describe the same fault.

A report and an alert can only fuse into one incident when they belong to the same
family. Each family carries the thresholds that dedup, scoring and dispatch use:

=============== ======================= ================ ====== ====== === ======= ========== ====
family          citizen categories      sensor kinds     radius window sev service skill      SLA
=============== ======================= ================ ====== ====== === ======= ========== ====
road_surface    pothole                 road_impact      25 m   72 h   20  45 m    roads      72 h
lighting        streetlight_out         lamp_failure     30 m   72 h   12  30 m    electrical 72 h
water           water_leak              pressure_drop    60 m   24 h   28  90 m    water      12 h
flooding        flooding, blocked_drain water_level_high 75 m   12 h   30  60 m    drainage   6 h
traffic_signal  traffic_signal_fault    signal_fault     40 m   24 h   32  45 m    electrical 4 h
fallen_tree     fallen_tree             -                40 m   48 h   26  120 m   arborist   12 h
illegal_dumping illegal_dumping         -                40 m   7 d    8   60 m    sanitation 7 d
graffiti        graffiti                -                20 m   14 d   3   45 m    sanitation 14 d
damaged_sign    damaged_sign            -                25 m   14 d   10  30 m    roads      7 d
=============== ======================= ================ ====== ====== === ======= ========== ====

Columns: ``radius_m``, ``window_s``, ``severity`` (score points), ``service_s`` (time on
site), the crew ``skill`` required, and ``sla_s`` (time to fix).

``radius_m`` is measured along the road, ``window_s`` from the incident's latest
evidence. The largest radius (75 m) bounds the dedup cell size: cells must be at least
twice as wide (see ``streams.dedup``). Sensor magnitudes are normalised to 0..1 with the
``(low, high)`` range of their kind (``ALERT_MAGNITUDE``).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.schemas import AlertKind, Category

_H = 3600.0
_D = 24 * _H


@dataclass(frozen=True)
class Family:
    """One fault family and its thresholds (see the module table)."""

    name: str
    categories: tuple[Category, ...]
    alert_kinds: tuple[AlertKind, ...]
    radius_m: float
    window_s: float
    severity: float
    service_s: float
    skill: str
    sla_s: float

    @property
    def primary_category(self) -> Category:
        """The category an incident of this family shows when only sensors saw it."""
        return self.categories[0]

    def __repr__(self) -> str:
        return f"Family({self.name}, {self.radius_m:.0f} m, {self.window_s / _H:.0f} h)"


FAMILIES: tuple[Family, ...] = (
    Family("road_surface", (Category.POTHOLE,), (AlertKind.ROAD_IMPACT,),
           25, 72 * _H, 20, 45 * 60, "roads", 72 * _H),
    Family("lighting", (Category.STREETLIGHT_OUT,), (AlertKind.LAMP_FAILURE,),
           30, 72 * _H, 12, 30 * 60, "electrical", 72 * _H),
    Family("water", (Category.WATER_LEAK,), (AlertKind.PRESSURE_DROP,),
           60, 24 * _H, 28, 90 * 60, "water", 12 * _H),
    Family("flooding", (Category.FLOODING, Category.BLOCKED_DRAIN), (AlertKind.WATER_LEVEL_HIGH,),
           75, 12 * _H, 30, 60 * 60, "drainage", 6 * _H),
    Family("traffic_signal", (Category.TRAFFIC_SIGNAL_FAULT,), (AlertKind.SIGNAL_FAULT,),
           40, 24 * _H, 32, 45 * 60, "electrical", 4 * _H),
    Family("fallen_tree", (Category.FALLEN_TREE,), (),
           40, 48 * _H, 26, 120 * 60, "arborist", 12 * _H),
    Family("illegal_dumping", (Category.ILLEGAL_DUMPING,), (),
           40, 7 * _D, 8, 60 * 60, "sanitation", 7 * _D),
    Family("graffiti", (Category.GRAFFITI,), (), 20, 14 * _D, 3, 45 * 60, "sanitation", 14 * _D),
    Family("damaged_sign", (Category.DAMAGED_SIGN,), (), 25, 14 * _D, 10, 30 * 60, "roads", 7 * _D),
)  # fmt: skip

BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}
_BY_CATEGORY: dict[str, Family] = {c.value: f for f in FAMILIES for c in f.categories}
_BY_KIND: dict[str, Family] = {k.value: f for f in FAMILIES for k in f.alert_kinds}

#: Sensor value range per alert kind, mapped linearly onto a 0..1 magnitude.
ALERT_MAGNITUDE: dict[str, tuple[float, float]] = {
    AlertKind.ROAD_IMPACT.value: (2.0, 10.0),  # g
    AlertKind.LAMP_FAILURE.value: (0.0, 1.0),  # failure flag / fraction of lamps out
    AlertKind.PRESSURE_DROP.value: (0.2, 3.0),  # bar below nominal
    AlertKind.WATER_LEVEL_HIGH.value: (0.05, 1.0),  # m above the kerb
    AlertKind.SIGNAL_FAULT.value: (0.0, 1.0),  # fault flag
}

MAX_RADIUS_M: float = max(f.radius_m for f in FAMILIES)


def family_of_category(category: str) -> Family:
    """The family of a citizen category (``KeyError`` if unknown)."""
    return _BY_CATEGORY[str(category)]


def family_of_kind(kind: str) -> Family:
    """The family of a sensor alert kind (``KeyError`` if unknown)."""
    return _BY_KIND[str(kind)]


def magnitude(kind: str, value: float) -> float:
    """A sensor value normalised to 0..1 for its kind."""
    low, high = ALERT_MAGNITUDE.get(str(kind), (0.0, 1.0))
    if high <= low:
        return 1.0
    return min(1.0, max(0.0, (value - low) / (high - low)))
