"""Field crews: follow the retained plan, drive it, fix things, report what they do.

``Crew`` is the pure state machine of one crew (time is passed in, messages come out);
``CrewSim`` is the shell that gives each crew its own MQTT login, feeds it the plans
arriving on ``cityfix/v1/crews/{crew_id}/assignment`` and publishes what it emits.

A crew starts its shift ``available`` (with its skills and shift end) at the depot. On a
plan it leaves for the first stop (``en_route`` with the incident id), drives the plan's
route line at the plan's leg ETAs, reports ``on_site`` on arrival, ``completed`` after the
service time, then the next stop, or ``available`` when the plan is done. A newer plan
replaces the rest of the current one (a job on site is finished first). Now and then a
crew breaks down (``unavailable`` for a while, then ``available``); at the shift's end it
goes ``off_shift`` (after finishing the job on site). A crew whose group loads
``materials`` reports its stock with every status and uses up what each completed stop
needs (the plan says), so the dispatcher stops sending it to jobs it cannot supply.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np

from core.errors import InvalidMessage
from core.schemas import Assignment, CrewPosition, CrewState, CrewStatus, dumps, parse
from core.topics import crew_topic
from simulators.driving import Leg, Position, split_legs
from simulators.mqtt import Broker, Credentials, MqttAgent, close_all
from simulators.scenario import CrewGroup, Scenario
from simulators.simtime import SimTime

log = logging.getLogger(__name__)

Message = CrewStatus | CrewPosition

# A plan made this soon after a crew completed one of its stops may not know of it yet
# (status -> ingest -> streams -> dispatcher takes a few wall seconds, minutes of city).
_COMPLETION_LAG_S = 300.0
# Plans are stamped by the shared clock; one further ahead than this comes from another
# run's clock (a demo runs the city days ahead) and would shadow every plan of this run.
_PLAN_AHEAD_SLACK_S = 600.0


class Phase(StrEnum):
    """Where a crew is in its day."""

    BEFORE_SHIFT = "before_shift"
    IDLE = "idle"
    DRIVING = "driving"
    ON_SITE = "on_site"
    BROKEN = "broken"
    OFF_SHIFT = "off_shift"


@dataclass(frozen=True)
class CrewSpec:
    """What a crew is: id, skills, shift (absolute simulated seconds), depot."""

    crew_id: str
    skills: tuple[str, ...]
    shift_start_s: float
    shift_end_s: float
    depot: tuple[float, float]
    materials: dict[str, int] | None = None


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


class Crew:
    """One crew's behaviour (see the module docstring); pure apart from its seeded RNG."""

    def __init__(
        self,
        spec: CrewSpec,
        *,
        rng: np.random.Generator,
        position_interval_s: float = 10.0,
        breakdowns_per_shift: float = 0.0,
        breakdown_s: float = 1800.0,
        default_service_s: float = 1800.0,
        service_jitter: float = 0.0,
        service_scale: float = 1.0,
        run_start_s: float = -math.inf,
    ) -> None:
        self.spec = spec
        self.run_start_s = run_start_s
        self.rng = rng
        self.position_interval_s = position_interval_s
        shift_len = max(spec.shift_end_s - spec.shift_start_s, 1.0)
        self.breakdown_rate_per_s = breakdowns_per_shift / shift_len
        self.breakdown_s = breakdown_s
        self.default_service_s = default_service_s
        self.service_jitter = service_jitter
        self.service_scale = service_scale
        self.phase = Phase.BEFORE_SHIFT
        self.lat, self.lon = spec.depot
        self.position = Position(self.lat, self.lon, None, 0.0)
        self.plan: Assignment | None = None
        self._plan_dirty = False
        self.legs: list[Leg] = []
        self.service: dict[str, float] = {}
        self.leg: Leg | None = None
        self.departed_s = 0.0
        self.until_s = 0.0
        self.incident_id: str | None = None
        self.completed: list[str] = []
        self.completed_at: dict[str, float] = {}  # incident -> when last completed
        # On the truck (None: not tracked); a completed stop uses what its plan says.
        self.stock = None if spec.materials is None else dict(spec.materials)
        self.uses: dict[str, dict[str, int]] = {}
        self.breakdowns = 0
        self._last_tick_s: float | None = None
        self._last_position_s = -math.inf

    def __repr__(self) -> str:
        return f"Crew({self.spec.crew_id!r}, {self.phase}, incident={self.incident_id})"

    # -- inputs ---------------------------------------------------------------------
    def on_assignment(self, plan: Assignment, now_s: float) -> bool:
        """Take a new plan (acted on at the next tick); ``now_s`` as for ``tick``.

        Returns whether the plan was taken. Plans made before this run started, or ahead
        of now by more than a little clock slack, are retained leftovers of other runs.
        """
        if plan.crew_id != self.spec.crew_id:
            return False
        made_s = plan.created_at.timestamp()
        if made_s < self.run_start_s or made_s > now_s + _PLAN_AHEAD_SLACK_S:
            return False
        if self.plan is not None and plan.created_at < self.plan.created_at:
            return False  # an older plan arriving late
        self.plan = plan
        self._plan_dirty = True
        return True

    def tick(self, now_s: float) -> list[Message]:
        """Advance to ``now_s`` (simulated epoch seconds); the messages to publish."""
        out: list[Message] = []
        dt = 0.0 if self._last_tick_s is None else max(now_s - self._last_tick_s, 0.0)
        self._last_tick_s = now_s
        if self.phase is Phase.OFF_SHIFT:
            return out
        if self.phase is Phase.BEFORE_SHIFT:
            if now_s < self.spec.shift_start_s:
                return out
            self.phase = Phase.IDLE
            out.append(self._status(CrewState.AVAILABLE, now_s))
            out.append(self._position(now_s))
        if now_s >= self.spec.shift_end_s and self.phase in (
            Phase.IDLE,
            Phase.DRIVING,
            Phase.BROKEN,
        ):
            return [*out, *self._end_shift(now_s)]
        if self.phase in (Phase.IDLE, Phase.DRIVING) and self._breaks_down(dt):
            self._move(now_s)
            self.phase, self.until_s = Phase.BROKEN, now_s + self.breakdown_s
            self.breakdowns += 1
            self.incident_id = None
            # Whatever the plan was, take it up again after the repair.
            self._plan_dirty = self.plan is not None
            out.append(self._status(CrewState.UNAVAILABLE, now_s))
            return [*out, self._position(now_s)]
        if self.phase is Phase.BROKEN and now_s >= self.until_s:
            self.phase = Phase.IDLE
            out.append(self._status(CrewState.AVAILABLE, now_s))
        if self._plan_dirty and self.plan is not None and self.phase in (Phase.IDLE, Phase.DRIVING):
            out += self._take_plan(now_s)
        if self.phase is Phase.DRIVING:
            out += self._drive(now_s)
        if self.phase is Phase.ON_SITE and now_s >= self.until_s:
            out += self._finish_job(now_s)
        if now_s - self._last_position_s >= self.position_interval_s:
            if self.phase is Phase.DRIVING:
                self._move(now_s)
            out.append(self._position(now_s))
        return out

    # -- behaviour ------------------------------------------------------------------
    def _breaks_down(self, dt: float) -> bool:
        if self.breakdown_rate_per_s <= 0 or dt <= 0:
            return False
        return float(self.rng.random()) < 1.0 - math.exp(-self.breakdown_rate_per_s * dt)

    def _legs_of(self, plan: Assignment) -> list[Leg]:
        stops = [(s.incident_id, s.lat, s.lon) for s in plan.stops]
        legs = split_legs(plan.route.coordinates, stops, plan.leg_eta_s)
        self.service = {s.incident_id: s.service_s for s in plan.stops}
        self.uses = {s.incident_id: dict(s.materials) for s in plan.stops}
        # A stop completed after the plan was made is done; a later plan naming it again
        # (the incident reopened) means it.
        made_s = plan.created_at.timestamp()
        done = {i for i, t in self.completed_at.items() if made_s < t + _COMPLETION_LAG_S}
        return [leg for leg in legs if leg.incident_id not in done]

    def _take_plan(self, now_s: float) -> list[Message]:
        self._plan_dirty = False
        assert self.plan is not None
        if self.phase is Phase.DRIVING:
            self._move(now_s)
        self.legs = self._legs_of(self.plan)
        if not self.legs:
            if self.phase is Phase.DRIVING:
                self.phase, self.leg, self.incident_id = Phase.IDLE, None, None
                return [self._status(CrewState.AVAILABLE, now_s)]
            return []
        return self._depart(now_s)

    def _depart(self, now_s: float) -> list[Message]:
        leg = self.legs.pop(0)
        first = leg.coordinates[0]
        if abs(first[1] - self.lat) + abs(first[0] - self.lon) > 0.003:
            # The plan was made from an older position (~300 m off): start the line here.
            leg = Leg(leg.incident_id, ((self.lon, self.lat), *leg.coordinates), leg.travel_s)
        same = self.phase is Phase.DRIVING and self.incident_id == leg.incident_id
        self.leg, self.departed_s = leg, now_s
        self.phase, self.incident_id = Phase.DRIVING, leg.incident_id
        return [] if same else [self._status(CrewState.EN_ROUTE, now_s)]

    def _drive(self, now_s: float) -> list[Message]:
        assert self.leg is not None
        if now_s - self.departed_s < self.leg.travel_s:
            return []
        self.lat, self.lon = self.leg.end
        self.position = Position(self.lat, self.lon, None, 0.0)
        planned = self.service.get(self.leg.incident_id, 0.0) or self.default_service_s
        spread = float(self.rng.lognormal(0.0, self.service_jitter)) if self.service_jitter else 1.0
        self.phase, self.until_s = Phase.ON_SITE, now_s + planned * spread * self.service_scale
        return [self._position(now_s), self._status(CrewState.ON_SITE, now_s)]

    def _finish_job(self, now_s: float) -> list[Message]:
        assert self.incident_id is not None
        if self.stock is not None:
            for m, n in self.uses.get(self.incident_id, {}).items():
                self.stock[m] = max(0, self.stock.get(m, 0) - n)
        out: list[Message] = [self._status(CrewState.COMPLETED, now_s)]
        self.completed.append(self.incident_id)
        self.completed_at[self.incident_id] = now_s
        self.incident_id, self.leg = None, None
        self.phase = Phase.IDLE
        if now_s >= self.spec.shift_end_s:
            return [*out, *self._end_shift(now_s)]
        if self._plan_dirty and self.plan is not None:
            self._plan_dirty = False
            self.legs = self._legs_of(self.plan)
        if self.legs:
            return [*out, *self._depart(now_s)]
        return [*out, self._status(CrewState.AVAILABLE, now_s)]

    def _end_shift(self, now_s: float) -> list[Message]:
        self._move(now_s)
        self.phase, self.incident_id, self.leg, self.legs = Phase.OFF_SHIFT, None, None, []
        return [self._position(now_s), self._status(CrewState.OFF_SHIFT, now_s)]

    def _move(self, now_s: float) -> None:
        if self.phase is Phase.DRIVING and self.leg is not None:
            self.position = self.leg.position(now_s - self.departed_s)
            self.lat, self.lon = self.position.lat, self.position.lon
        else:
            self.position = Position(self.lat, self.lon, None, 0.0)

    # -- messages -------------------------------------------------------------------
    def _status(self, state: CrewState, now_s: float) -> CrewStatus:
        incident = (
            self.incident_id
            if state in (CrewState.EN_ROUTE, CrewState.ON_SITE, CrewState.COMPLETED)
            else None
        )
        return CrewStatus(
            crew_id=self.spec.crew_id,
            status=state,
            incident_id=incident,
            at=_dt(now_s),
            skills=list(self.spec.skills),
            shift_end=_dt(self.spec.shift_end_s),
            materials=None if self.stock is None else dict(self.stock),
        )

    def _position(self, now_s: float) -> CrewPosition:
        self._last_position_s = now_s
        p = self.position
        return CrewPosition(
            crew_id=self.spec.crew_id,
            lat=p.lat,
            lon=p.lon,
            at=_dt(now_s),
            heading_deg=p.heading_deg,
            speed_kph=min(p.speed_kph, 300.0),
        )


def make_crews(
    scenario: Scenario, start_s: float, depot: tuple[float, float], seed: int
) -> list[Crew]:
    """The scenario's crews, each with its own seeded RNG, starting at the depot."""
    cfg = scenario.crews
    rngs = [
        np.random.default_rng(s)
        for s in np.random.SeedSequence([seed, 7]).spawn(max(len(scenario.crew_ids()), 1))
    ]
    crews = []
    group: CrewGroup
    for (crew_id, group), rng in zip(scenario.crew_ids(), rngs, strict=False):
        spec = CrewSpec(
            crew_id=crew_id,
            skills=tuple(group.skills),
            shift_start_s=start_s + group.shift_start_s,
            shift_end_s=start_s + group.shift_end_s,
            depot=depot,
            materials=None if group.materials is None else dict(group.materials),
        )
        crews.append(
            Crew(
                spec,
                rng=rng,
                position_interval_s=cfg.position_interval_s,
                breakdowns_per_shift=cfg.breakdowns_per_shift,
                breakdown_s=cfg.breakdown_s,
                default_service_s=cfg.default_service_s,
                service_jitter=cfg.service_jitter,
                service_scale=cfg.service_scale,
                run_start_s=start_s,
            )
        )
    return crews


class CrewSim:
    """Runs the crews over MQTT (one login each) until the scenario ends or is stopped."""

    def __init__(
        self,
        crews: list[Crew],
        creds: dict[str, Credentials],
        broker: Broker,
        time: SimTime,
        duration_s: float,
    ) -> None:
        self.crews = crews
        self.creds = creds
        self.broker = broker
        self.time = time
        self.duration_s = duration_s
        self.agents: dict[str, MqttAgent] = {}
        self._lock = threading.Lock()
        self.published = 0

    def _on_plan_message(self, crew: Crew, _topic: str, payload: bytes) -> None:
        self._on_assignment(crew, payload)

    def _on_assignment(self, crew: Crew, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained plan
        try:
            plan = parse(Assignment, payload)
        except InvalidMessage as exc:
            log.warning("bad assignment crew=%s reason=%s", crew.spec.crew_id, exc)
            return
        with self._lock:
            taken = crew.on_assignment(plan, self.time.now_s())
        if not taken:
            log.info(
                "plan ignored crew=%s plan=%s created_at=%s",
                crew.spec.crew_id,
                plan.plan_id,
                plan.created_at.isoformat(),
            )
            return
        log.info(
            "plan crew=%s plan=%s stops=%s",
            crew.spec.crew_id,
            plan.plan_id,
            ",".join(s.incident_id for s in plan.stops) or "-",
        )

    def run(self) -> dict[str, object]:
        """Connect every crew, then tick them until the end; returns what they did."""
        for crew in self.crews:
            if self.time.stop.is_set():
                break
            cid = crew.spec.crew_id
            agent = MqttAgent(
                self.broker,
                self.creds[cid],
                on_message=functools.partial(self._on_plan_message, crew),
            )
            agent.start()
            agent.subscribe(crew_topic(cid, "assignment"))
            self.agents[cid] = agent
        log.info("crews on the road count=%d", len(self.crews))
        tick_wall_s = min(max(self.time.clock.wall_seconds(2.0), 0.05), 0.5)
        try:
            while self.time.elapsed_s() < self.duration_s and self.time.nap(tick_wall_s):
                now = self.time.now_s()
                for crew in self.crews:
                    with self._lock:
                        msgs = crew.tick(now)
                    for msg in msgs:
                        self._send(crew.spec.crew_id, msg)
        finally:
            close_all(list(self.agents.values()))
        return self.results()

    def _send(self, crew_id: str, msg: Message) -> None:
        what = "position" if isinstance(msg, CrewPosition) else "status"
        if isinstance(msg, CrewStatus):
            log.info("crew=%s status=%s incident=%s", crew_id, msg.status, msg.incident_id or "-")
        if self.agents[crew_id].publish(crew_topic(crew_id, what), dumps(msg), stop=self.time.stop):
            self.published += 1

    def results(self) -> dict[str, object]:
        """Per-crew jobs completed and breakdowns."""
        return {
            "published": self.published,
            "crews": {
                c.spec.crew_id: {
                    "phase": str(c.phase),
                    "completed": list(c.completed),
                    "breakdowns": c.breakdowns,
                }
                for c in self.crews
            },
        }
