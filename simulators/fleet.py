"""The sensor fleet: where each device sits and what it watches (pure, seeded).

- road-surface sensors (``road-001``...) sit on buses' routes, i.e. on major roads;
- streetlight controllers (``lampctl-001``...) each drive a handful of lamps, whose ids
  (``LAMP-001-03``) are the ``asset_id`` a citizen may read off the pole;
- water-pressure sensors (``water-001``...) sit on the mains under the streets.

Ids depend only on the counts, so the CLI can create the devices' MQTT identities before
the road graph is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from core.schemas import AlertKind, Category
from simulators.citymap import CityMap
from simulators.scenario import SensorsConfig


class DeviceKind(StrEnum):
    """The three kinds of field device."""

    ROAD_SURFACE = "road_surface"
    STREETLIGHT = "streetlight"
    WATER_PRESSURE = "water_pressure"


# What each kind detects, as (category it fuses with, alert kind, value range, unit).
DETECTS: dict[DeviceKind, tuple[Category, AlertKind, tuple[float, float], str]] = {
    DeviceKind.ROAD_SURFACE: (Category.POTHOLE, AlertKind.ROAD_IMPACT, (3.5, 9.0), "g"),
    DeviceKind.STREETLIGHT: (Category.STREETLIGHT_OUT, AlertKind.LAMP_FAILURE, (1.0, 1.0), "flag"),
    DeviceKind.WATER_PRESSURE: (Category.WATER_LEAK, AlertKind.PRESSURE_DROP, (0.8, 2.5), "bar"),
}

_PREFIX = {
    DeviceKind.ROAD_SURFACE: "road",
    DeviceKind.STREETLIGHT: "lampctl",
    DeviceKind.WATER_PRESSURE: "water",
}

# How far from a device a fault it can detect may lie.
COVER_RADIUS_M = {
    DeviceKind.ROAD_SURFACE: 150.0,
    DeviceKind.STREETLIGHT: 200.0,
    DeviceKind.WATER_PRESSURE: 250.0,
}


@dataclass(frozen=True)
class Asset:
    """A thing a device watches (a lamp), with where it stands."""

    asset_id: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Device:
    """One field device."""

    device_id: str
    kind: DeviceKind
    lat: float
    lon: float
    assets: tuple[Asset, ...] = field(default=(), repr=False)


def device_ids(cfg: SensorsConfig) -> list[str]:
    """Every device id of a fleet, in placement order (no graph needed)."""
    counts = {
        DeviceKind.ROAD_SURFACE: cfg.road_surface,
        DeviceKind.STREETLIGHT: cfg.streetlight_controllers,
        DeviceKind.WATER_PRESSURE: cfg.water_pressure,
    }
    return [f"{_PREFIX[k]}-{i + 1:03d}" for k, n in counts.items() for i in range(n)]


def place_fleet(cfg: SensorsConfig, city: CityMap, rng: np.random.Generator) -> list[Device]:
    """Place every device of the fleet on the city's streets."""
    devices: list[Device] = []
    for i in range(cfg.road_surface):
        lat, lon = city.sample_point(rng, city.major)
        devices.append(Device(f"road-{i + 1:03d}", DeviceKind.ROAD_SURFACE, lat, lon))
    for i in range(cfg.streetlight_controllers):
        lat, lon = city.sample_point(rng)
        near = city.distance_m(lat, lon) <= 150.0
        lamps = tuple(
            Asset(f"LAMP-{i + 1:03d}-{j + 1:02d}", *city.sample_point(rng, near))
            for j in range(cfg.lamps_per_controller)
        )
        devices.append(Device(f"lampctl-{i + 1:03d}", DeviceKind.STREETLIGHT, lat, lon, lamps))
    for i in range(cfg.water_pressure):
        lat, lon = city.sample_point(rng)
        devices.append(Device(f"water-{i + 1:03d}", DeviceKind.WATER_PRESSURE, lat, lon))
    return devices
