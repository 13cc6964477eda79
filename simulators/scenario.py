"""Scenario files: the city, how long, how fast, how often things break and who fixes them.

A scenario is a YAML file (``scenarios/porto.yaml`` is the default)::

    city: porto_portugal          # an extract in settings.geo.osm_dir
    duration_s: 86400             # simulated seconds the city plays
    clock_factor: 60              # simulated seconds per wall second (a day in 24 min)
    start_hour: 7                 # simulated time of day (UTC) the scenario starts at
    seed: 42
    citizens:
      apps: 30                    # app identities sharing the reports
      faults_per_hour: {pothole: 4, streetlight_out: 3, ...}
      reporters_mean: 2.5         # mean citizens who report one fault (at least one)
      first_report_mean_s: 900    # fault -> first report
      report_gap_mean_s: 420      # between reporters of one fault
      gps_noise_m: 6
      malformed_share: 0.02
      out_of_area_share: 0.01
    sensors:
      road_surface: 20            # on bus routes (major roads)
      streetlight_controllers: 15
      lamps_per_controller: 8
      water_pressure: 10
      telemetry_interval_s: 300
      detect_share: {pothole: 0.3, streetlight_out: 0.7, water_leak: 0.6}
    crews:
      groups:                     # skills as the dispatcher names them (streams.families)
        - {prefix: roads, count: 4, skills: [roads], shift_start_s: 0, shift_end_s: 28800}
        - {prefix: water, count: 2, skills: [water, drainage], shift_end_s: 43200}
      default_service_s: 1800     # on-site time when the plan gives none
      service_jitter: 0.2         # actual on-site time = planned x lognormal(0, jitter)
      service_scale: 1.0          # x every on-site time
      position_interval_s: 10
      breakdowns_per_shift: 0.1
      breakdown_s: 1800

Every field has a default, so a scenario names only what it changes. Rates and durations
are in simulated time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from core.errors import ConfigError
from core.schemas import Category

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIO = REPO / "scenarios" / "porto.yaml"

Share = Annotated[float, Field(ge=0.0, le=1.0)]
# As a crew's status carries them on the wire (``core.schemas.CrewStatus``).
ShortName = Annotated[str, StringConstraints(max_length=32)]

_DEFAULT_RATES: dict[Category, float] = {
    Category.POTHOLE: 4.0,
    Category.STREETLIGHT_OUT: 3.0,
    Category.WATER_LEAK: 1.2,
    Category.FLOODING: 0.3,
    Category.BLOCKED_DRAIN: 1.0,
    Category.FALLEN_TREE: 0.5,
    Category.ILLEGAL_DUMPING: 2.0,
    Category.GRAFFITI: 1.5,
    Category.DAMAGED_SIGN: 0.8,
    Category.TRAFFIC_SIGNAL_FAULT: 0.4,
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CitizensConfig(_Section):
    """How faults appear and how citizens report them."""

    apps: int = Field(20, ge=1, le=500)
    faults_per_hour: dict[Category, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(_DEFAULT_RATES)
    )
    reporters_mean: float = Field(2.5, ge=1.0)
    first_report_mean_s: float = Field(900.0, ge=0)
    report_gap_mean_s: float = Field(420.0, ge=0)
    gps_noise_m: float = Field(6.0, ge=0)
    malformed_share: Share = 0.02
    out_of_area_share: Share = 0.01
    asset_id_share: Share = 0.3


class SensorsConfig(_Section):
    """The field-device fleet."""

    road_surface: int = Field(20, ge=0, le=2000)
    streetlight_controllers: int = Field(15, ge=0, le=2000)
    lamps_per_controller: int = Field(8, ge=1, le=200)
    water_pressure: int = Field(10, ge=0, le=2000)
    telemetry_interval_s: float = Field(300.0, gt=0)
    detect_share: dict[Category, Share] = Field(
        default_factory=lambda: {
            Category.POTHOLE: 0.3,
            Category.STREETLIGHT_OUT: 0.7,
            Category.WATER_LEAK: 0.6,
        }
    )
    detect_delay_max_s: float = Field(120.0, ge=0)


class CrewGroup(_Section):
    """A group of identical crews (``{prefix}-01``, ``{prefix}-02``, ...)."""

    prefix: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    count: int = Field(1, ge=1, le=200)
    skills: list[ShortName] = Field(default_factory=list)
    shift_start_s: float = Field(0.0, ge=0)
    shift_end_s: float = Field(8 * 3600.0, gt=0)
    # What each crew loads at the start of its shift, by material (None: not tracked).
    materials: dict[ShortName, NonNegativeInt] | None = None


class CrewsConfig(_Section):
    """The field crews and how they behave."""

    groups: list[CrewGroup] = Field(
        default_factory=lambda: [
            CrewGroup(prefix="roads", count=3, skills=["roads"]),
            CrewGroup(prefix="lights", count=2, skills=["electrical"]),
            CrewGroup(prefix="water", count=2, skills=["water", "drainage"]),
            CrewGroup(prefix="general", count=3, skills=["sanitation", "arborist"]),
        ]
    )
    # On-site time when the plan gives none; the actual time varies by ``service_jitter``.
    default_service_s: float = Field(1800.0, ge=0)
    service_jitter: float = Field(0.2, ge=0, le=1)
    # Multiplies every on-site time (a smoke test shortens the day this way).
    service_scale: float = Field(1.0, gt=0)
    position_interval_s: float = Field(10.0, gt=0)
    breakdowns_per_shift: float = Field(0.1, ge=0)
    breakdown_s: float = Field(1800.0, ge=0)
    depot: tuple[float, float] | None = None  # (lat, lon); default: the graph's centre


class Scenario(_Section):
    """One scenario file."""

    name: str = "scenario"
    city: str = "porto_portugal"
    duration_s: float = Field(8 * 3600.0, gt=0)
    clock_factor: float = Field(60.0, gt=0)
    start_hour: float = Field(7.0, ge=0, lt=24)
    seed: int = 42
    citizens: CitizensConfig = Field(default_factory=CitizensConfig)
    sensors: SensorsConfig = Field(default_factory=SensorsConfig)
    crews: CrewsConfig = Field(default_factory=CrewsConfig)

    def app_ids(self) -> list[str]:
        """The citizen app identities."""
        return [f"app-{i + 1:03d}" for i in range(self.citizens.apps)]

    def crew_ids(self) -> list[tuple[str, CrewGroup]]:
        """Every crew id with its group, in a stable order."""
        return [(f"{g.prefix}-{i + 1:02d}", g) for g in self.crews.groups for i in range(g.count)]

    @model_validator(mode="after")
    def _ids_unique(self) -> Scenario:
        # Each id is one MQTT login (and client id): two parties sharing one would keep
        # disconnecting each other, and one kind's identity would replace the other's.
        from simulators.fleet import device_ids  # fleet imports this module

        seen: set[str] = set()
        ids = [*self.app_ids(), *device_ids(self.sensors), *(c for c, _g in self.crew_ids())]
        for ident in ids:
            if ident in seen:
                raise ValueError(f"id {ident} is used twice (check the crew prefixes)")
            seen.add(ident)
        return self


def load_scenario(path: Path | str | None = None, **overrides: object) -> Scenario:
    """Read a scenario file (default ``scenarios/porto.yaml``), applying top-level overrides.

    Raises ``ConfigError`` naming the file and field when it cannot be used.
    """
    file = Path(path) if path else DEFAULT_SCENARIO
    try:
        doc = yaml.safe_load(file.read_text("utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"scenario {file} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"scenario {file} must be a mapping")
    doc.setdefault("name", file.stem)
    crews = doc.get("crews")
    if isinstance(crews, list):  # a bare list of groups is accepted as shorthand
        doc["crews"] = {"groups": crews}
    doc.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Scenario.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{loc}: " if loc else ""  # a check across sections names no field
        raise ConfigError(f"scenario {file}: {where}{err['msg']}") from exc
