"""Driving a plan: cut a route into legs and interpolate a crew's position along them.

An ``Assignment`` carries one route line for the whole plan (from where the crew was to
the last stop) and, in ``leg_eta_s``, the driving seconds of each leg. ``split_legs`` cuts
the line at the points nearest each stop; a ``Leg`` then gives the position at any time
since departure, moving along the line at the constant speed that makes the leg last its
ETA (so half the ETA is half-way along the line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from simulators.citymap import M_PER_DEG_LAT, m_per_deg_lon

DEFAULT_SPEED_KPH = 30.0
# A stop this close (metres) to a vertex of the route ends its leg there.
_STOP_SNAP_M = 30.0


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Metres between two (lon, lat) points (equirectangular; fine within a city)."""
    k = m_per_deg_lon((a[1] + b[1]) / 2)
    return math.hypot((b[0] - a[0]) * k, (b[1] - a[1]) * M_PER_DEG_LAT)


@dataclass(frozen=True)
class Position:
    """Where a crew is: (lat, lon), heading in degrees from north, speed."""

    lat: float
    lon: float
    heading_deg: float | None
    speed_kph: float


@dataclass(frozen=True)
class Leg:
    """One drive to one stop: the (lon, lat) line and how long it takes."""

    incident_id: str
    coordinates: tuple[tuple[float, float], ...]
    travel_s: float

    @property
    def length_m(self) -> float:
        """Length of the line, metres."""
        c = self.coordinates
        return sum(distance_m(c[i], c[i + 1]) for i in range(len(c) - 1))

    @property
    def end(self) -> tuple[float, float]:
        """(lat, lon) of the leg's end (the stop)."""
        lon, lat = self.coordinates[-1]
        return lat, lon

    def position(self, elapsed_s: float) -> Position:
        """Where the crew is ``elapsed_s`` seconds after leaving (clamped to the leg)."""
        c = self.coordinates
        total = self.length_m
        if len(c) < 2 or total <= 0 or self.travel_s <= 0:
            lon, lat = c[-1]
            return Position(lat, lon, None, 0.0)
        frac = min(max(elapsed_s / self.travel_s, 0.0), 1.0)
        target = frac * total
        speed_kph = total / self.travel_s * 3.6 if frac < 1.0 else 0.0
        walked = 0.0
        for i in range(len(c) - 1):
            seg = distance_m(c[i], c[i + 1])
            if walked + seg >= target or i == len(c) - 2:
                t = 0.0 if seg <= 0 else min((target - walked) / seg, 1.0)
                lon = c[i][0] + t * (c[i + 1][0] - c[i][0])
                lat = c[i][1] + t * (c[i + 1][1] - c[i][1])
                return Position(lat, lon, _heading(c[i], c[i + 1]), speed_kph)
            walked += seg
        raise AssertionError("unreachable")  # pragma: no cover


def _heading(a: tuple[float, float], b: tuple[float, float]) -> float | None:
    dx = (b[0] - a[0]) * m_per_deg_lon((a[1] + b[1]) / 2)
    dy = (b[1] - a[1]) * M_PER_DEG_LAT
    if dx == 0 and dy == 0:
        return None
    return math.degrees(math.atan2(dx, dy)) % 360.0


def straight_leg(
    incident_id: str,
    start: tuple[float, float],
    stop: tuple[float, float],
    speed_kph: float = DEFAULT_SPEED_KPH,
) -> Leg:
    """A straight drive from ``start`` to ``stop`` ((lat, lon) each) at ``speed_kph``."""
    coords = ((start[1], start[0]), (stop[1], stop[0]))
    leg = Leg(incident_id, coords, 0.0)
    return Leg(incident_id, coords, leg.length_m / (speed_kph / 3.6))


def split_legs(
    coordinates: Sequence[Sequence[float]],
    stops: Sequence[tuple[str, float, float]],
    leg_eta_s: Sequence[float] = (),
    speed_kph: float = DEFAULT_SPEED_KPH,
) -> list[Leg]:
    """Cut a plan's route line into one leg per stop.

    ``coordinates`` are (lon, lat); ``stops`` are ``(incident_id, lat, lon)`` in visiting
    order. Each leg ends at the first vertex (after the previous cut) within a few metres
    of its stop, else at the nearest one; the stop itself is appended when the line does
    not reach it. Leg times come from ``leg_eta_s`` when it has one per stop, else from
    the leg's length at ``speed_kph``.
    """
    coords = [(float(p[0]), float(p[1])) for p in coordinates]
    use_eta = len(leg_eta_s) == len(stops)
    legs: list[Leg] = []
    start = 0
    for k, (incident_id, lat, lon) in enumerate(stops):
        target = (lon, lat)
        cut = _cut_index(coords, start, target)
        piece = coords[start : cut + 1] if coords else []
        if not piece:
            piece = [coords[-1]] if coords else [target]
        if distance_m(piece[-1], target) > 1.0:
            piece = [*piece, target]
        if len(piece) == 1:
            piece = [piece[0], piece[0]]
        leg = Leg(incident_id, tuple(piece), 0.0)
        travel = float(leg_eta_s[k]) if use_eta else leg.length_m / (speed_kph / 3.6)
        legs.append(Leg(incident_id, tuple(piece), max(travel, 0.0)))
        start = cut if coords else 0
    return legs


def _cut_index(coords: list[tuple[float, float]], start: int, target: tuple[float, float]) -> int:
    if not coords:
        return 0
    best, best_d = start, math.inf
    for i in range(start, len(coords)):
        d = distance_m(coords[i], target)
        if d <= _STOP_SNAP_M:
            # Follow the line while it keeps getting closer, then cut.
            while i + 1 < len(coords) and distance_m(coords[i + 1], target) < d:
                i += 1
                d = distance_m(coords[i], target)
            return i
        if d < best_d:
            best, best_d = i, d
    return best
