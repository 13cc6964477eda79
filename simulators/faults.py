"""The fault model: what breaks, where and when, and who notices (pure, seeded).

Faults of each category arrive as a Poisson process (``faults_per_hour``). A fault may be
detected by a nearby field device (the sensor fleet shares this model, so its alert and
the citizens' reports describe the same fault and fuse into one incident), and draws one
or more citizens (``1 + Poisson(reporters_mean - 1)``) who report it some minutes apart,
each from where they stand (GPS noise of a few metres). A small share of submissions is
malformed or lands outside the city.

``plan_city`` turns a scenario and a seed into the whole event stream, with times as
simulated seconds from the scenario's start: same seed, same city, same events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from core.schemas import Category
from simulators.citymap import CityMap, jitter
from simulators.fleet import COVER_RADIUS_M, DETECTS, Device, DeviceKind, place_fleet
from simulators.scenario import Scenario

_DESCRIPTIONS: dict[Category, tuple[str, ...]] = {
    Category.POTHOLE: ("deep hole in the right lane", "pothole, cars swerving", "big pothole"),
    Category.STREETLIGHT_OUT: ("street light out", "lamp not working at night", "dark street"),
    Category.WATER_LEAK: ("water coming out of the pavement", "leak near the kerb"),
    Category.FLOODING: ("street flooded after rain", "water up to the kerb"),
    Category.BLOCKED_DRAIN: ("drain blocked with leaves", "gully full, water pooling"),
    Category.FALLEN_TREE: ("tree fell across the road", "big branch blocking the lane"),
    Category.ILLEGAL_DUMPING: ("mattress and bags dumped", "rubble left on the pavement"),
    Category.GRAFFITI: ("graffiti on the wall", "tags on the bus shelter"),
    Category.DAMAGED_SIGN: ("stop sign knocked over", "sign bent and unreadable"),
    Category.TRAFFIC_SIGNAL_FAULT: ("traffic light stuck on red", "signal flashing amber"),
}

# Which device kind can notice a fault of each category.
_DETECTOR_KIND = {cat: kind for kind, (cat, *_rest) in DETECTS.items()}

MALFORMED_VARIANTS = 4


class Submission(StrEnum):
    """What an app actually sends."""

    VALID = "valid"
    MALFORMED = "malformed"
    OUT_OF_AREA = "out_of_area"


@dataclass(frozen=True)
class Fault:
    """Something broken in the street."""

    fault_id: str
    category: Category
    at_s: float
    lat: float
    lon: float
    asset_id: str | None = None
    detector: str | None = None


@dataclass(frozen=True)
class PlannedReport:
    """One citizen's submission, ``at_s`` simulated seconds after the start."""

    at_s: float
    report_id: str
    app: int
    fault_id: str
    category: Category
    lat: float
    lon: float
    kind: Submission = Submission.VALID
    description: str | None = None
    asset_id: str | None = None
    variant: int = 0


@dataclass(frozen=True)
class PlannedAlert:
    """One sensor alert."""

    at_s: float
    alert_id: str
    device_id: str
    fault_id: str
    kind: str
    lat: float
    lon: float
    value: float
    unit: str
    asset_id: str | None = None


@dataclass(frozen=True)
class CityPlan:
    """Everything that happens in a scenario, sorted by time."""

    devices: list[Device]
    faults: list[Fault]
    reports: list[PlannedReport]
    alerts: list[PlannedAlert] = field(default_factory=list)


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def poisson_times(rng: np.random.Generator, rate_per_hour: float, horizon_s: float) -> list[float]:
    """Arrival times (seconds) of a Poisson process of ``rate_per_hour`` over ``horizon_s``."""
    if rate_per_hour <= 0 or horizon_s <= 0:
        return []
    mean_gap_s = 3600.0 / rate_per_hour
    times: list[float] = []
    t = float(rng.exponential(mean_gap_s))
    while t < horizon_s:
        times.append(t)
        t += float(rng.exponential(mean_gap_s))
    return times


def _streams(seed: int) -> tuple[np.random.Generator, ...]:
    # Independent streams: changing the fleet does not reshuffle the faults.
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))


def plan_city(scenario: Scenario, city: CityMap, seed: int | None = None) -> CityPlan:
    """The devices, faults, reports and alerts of a scenario (see the module docstring)."""
    fleet_rng, fault_rng, report_rng = _streams(scenario.seed if seed is None else seed)
    devices = place_fleet(scenario.sensors, city, fleet_rng)
    faults = _faults(scenario, city, devices, fault_rng)
    reports: list[PlannedReport] = []
    alerts: list[PlannedAlert] = []
    for fault in faults:
        reports += _reports_of(scenario, city, fault, report_rng)
        alert = _alert_of(scenario, devices, fault, report_rng)
        if alert is not None:
            alerts.append(alert)
    reports.sort(key=lambda r: (r.at_s, r.report_id))
    alerts.sort(key=lambda a: (a.at_s, a.alert_id))
    return CityPlan(devices, faults, reports, alerts)


def _faults(
    scenario: Scenario, city: CityMap, devices: list[Device], rng: np.random.Generator
) -> list[Fault]:
    by_kind: dict[DeviceKind, list[Device]] = {}
    for d in devices:
        by_kind.setdefault(d.kind, []).append(d)
    events: list[tuple[float, Category]] = []
    for category in Category:  # fixed order keeps the stream reproducible
        rate = scenario.citizens.faults_per_hour.get(category, 0.0)
        events += [(t, category) for t in poisson_times(rng, rate, scenario.duration_s)]
    events.sort(key=lambda e: (e[0], e[1].value))
    faults: list[Fault] = []
    for n, (at_s, category) in enumerate(events, start=1):
        kind = _DETECTOR_KIND.get(category)
        watchers = by_kind.get(kind, []) if kind else []
        share = scenario.sensors.detect_share.get(category, 0.0)
        detected = bool(watchers) and float(rng.random()) < share
        asset_id: str | None = None
        detector: str | None = None
        if detected and kind is not None:
            dev = watchers[int(rng.integers(len(watchers)))]
            detector = dev.device_id
            if dev.assets:
                asset = dev.assets[int(rng.integers(len(dev.assets)))]
                lat, lon, asset_id = asset.lat, asset.lon, asset.asset_id
            else:
                mask = city.distance_m(dev.lat, dev.lon) <= COVER_RADIUS_M[kind]
                if kind is DeviceKind.ROAD_SURFACE:
                    mask &= city.major
                lat, lon = city.sample_point(rng, mask) if mask.any() else (dev.lat, dev.lon)
        else:
            lat, lon = city.sample_point(rng)
        faults.append(Fault(f"F{n:05d}", category, at_s, lat, lon, asset_id, detector))
    return faults


def _reports_of(
    scenario: Scenario, city: CityMap, fault: Fault, rng: np.random.Generator
) -> list[PlannedReport]:
    cfg = scenario.citizens
    count = 1 + int(rng.poisson(max(cfg.reporters_mean - 1.0, 0.0)))
    apps = rng.permutation(cfg.apps)
    at = fault.at_s + float(rng.exponential(cfg.first_report_mean_s or 1e-9))
    out: list[PlannedReport] = []
    for i in range(count):
        if i:
            at += float(rng.exponential(cfg.report_gap_mean_s or 1e-9))
        lat, lon = jitter(rng, fault.lat, fault.lon, cfg.gps_noise_m)
        u = float(rng.random())
        kind = Submission.VALID
        if u < cfg.malformed_share:
            kind = Submission.MALFORMED
        elif u < cfg.malformed_share + cfg.out_of_area_share:
            kind = Submission.OUT_OF_AREA
            lat, lon = _outside(rng, city)
        texts = _DESCRIPTIONS[fault.category]
        asset = fault.asset_id if float(rng.random()) < cfg.asset_id_share else None
        out.append(
            PlannedReport(
                at_s=at,
                report_id=_uuid(rng),
                app=int(apps[i % len(apps)]),
                fault_id=fault.fault_id,
                category=fault.category,
                lat=lat,
                lon=lon,
                kind=kind,
                description=texts[int(rng.integers(len(texts)))],
                asset_id=asset,
                variant=int(rng.integers(MALFORMED_VARIANTS)),
            )
        )
    return [r for r in out if r.at_s < scenario.duration_s]


def _outside(rng: np.random.Generator, city: CityMap) -> tuple[float, float]:
    """A point 5-20 km beyond the city's bounding box (a user whose app is miles off)."""
    min_lon, min_lat, max_lon, max_lat = city.bounds
    off = float(rng.uniform(0.05, 0.2))
    side = int(rng.integers(4))
    lat = float(rng.uniform(min_lat, max_lat))
    lon = float(rng.uniform(min_lon, max_lon))
    if side == 0:
        lat = max_lat + off
    elif side == 1:
        lat = min_lat - off
    elif side == 2:
        lon = max_lon + off
    else:
        lon = min_lon - off
    return max(min(lat, 89.0), -89.0), lon


def _alert_of(
    scenario: Scenario, devices: list[Device], fault: Fault, rng: np.random.Generator
) -> PlannedAlert | None:
    if fault.detector is None:
        return None
    dev = next(d for d in devices if d.device_id == fault.detector)
    _cat, alert_kind, (lo, hi), unit = DETECTS[dev.kind]
    at = fault.at_s + float(rng.uniform(0.0, scenario.sensors.detect_delay_max_s))
    if at >= scenario.duration_s:
        return None
    return PlannedAlert(
        at_s=at,
        alert_id=_uuid(rng),
        device_id=dev.device_id,
        fault_id=fault.fault_id,
        kind=alert_kind.value,
        lat=fault.lat,
        lon=fault.lon,
        value=round(float(rng.uniform(lo, hi)), 2),
        unit=unit,
        asset_id=fault.asset_id,
    )
