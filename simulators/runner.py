"""Run citizens, sensors and crews together on one shared scenario plan.

The caller (the CLI) creates the MQTT identities listed by ``identities_needed`` and
passes their credentials in; this module never touches the broker's configuration.
Each simulator runs in its own thread until the scenario's duration has passed or
``time.stop`` is set; ``run`` returns what each did.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from simulators.citizens import CitizenSim
from simulators.citymap import CityMap
from simulators.crews import CrewSim, make_crews
from simulators.faults import CityPlan, plan_city
from simulators.fleet import device_ids
from simulators.mqtt import Broker, Credentials
from simulators.scenario import Scenario
from simulators.simtime import SimTime

log = logging.getLogger(__name__)

KINDS = ("citizens", "sensors", "crews")
_STOP_GRACE_S = 5.0


def app_ids(scenario: Scenario) -> list[str]:
    """The citizen app identities of a scenario."""
    return scenario.app_ids()


def identities_needed(scenario: Scenario, which: set[str]) -> list[tuple[str, str]]:
    """``(kind, id)`` of every MQTT identity the chosen simulators log in as.

    ``kind`` is ``"app"``, ``"sensor"`` or ``"crew"``.
    """
    out: list[tuple[str, str]] = []
    if "citizens" in which:
        out += [("app", i) for i in app_ids(scenario)]
    if "sensors" in which:
        out += [("sensor", i) for i in device_ids(scenario.sensors)]
    if "crews" in which:
        out += [("crew", i) for i, _g in scenario.crew_ids()]
    return out


def salted(plan: CityPlan, run_id: str) -> CityPlan:
    """The plan with report and alert ids made unique to one run.

    Ids are idempotency keys downstream: a second run of the same seed must not look like
    a replay of the first, while a restarted simulator within one run must (so a message
    sent twice is counted once).
    """
    if not run_id:
        return plan
    ns = uuid.uuid5(uuid.NAMESPACE_URL, f"cityfix-sim:{run_id}")

    def salt(i: str) -> str:
        return str(uuid.uuid5(ns, i))

    return CityPlan(
        devices=plan.devices,
        faults=plan.faults,
        reports=[replace(r, report_id=salt(r.report_id)) for r in plan.reports],
        alerts=[replace(a, alert_id=salt(a.alert_id)) for a in plan.alerts],
    )


@dataclass
class SimRun:
    """Everything a simulator run needs."""

    scenario: Scenario
    city: CityMap
    broker: Broker
    time: SimTime
    creds: dict[str, Credentials]
    seed: int
    run_id: str = ""
    results_dir: Path | None = None
    results: dict[str, object] = field(default_factory=dict)

    def plan(self) -> CityPlan:
        """The scenario's plan for this seed and run."""
        return salted(plan_city(self.scenario, self.city, self.seed), self.run_id)


def run(sim: SimRun, which: set[str]) -> dict[str, object]:
    """Run the chosen simulators in threads; return their results by kind (see ``run_jobs``)."""
    plan = sim.plan()
    log.info(
        "scenario=%s city=%s seed=%d faults=%d reports=%d alerts=%d devices=%d",
        sim.scenario.name,
        sim.scenario.city,
        sim.seed,
        len(plan.faults),
        len(plan.reports),
        len(plan.alerts),
        len(plan.devices),
    )
    duration = sim.scenario.duration_s
    jobs: dict[str, Callable[[], dict[str, object]]] = {}
    if "citizens" in which:
        apps = [sim.creds[i] for i in app_ids(sim.scenario)]
        path = sim.results_dir / "citizens.json" if sim.results_dir else None
        jobs["citizens"] = CitizenSim(plan.reports, apps, sim.broker, sim.time, duration, path).run
    if "sensors" in which:
        from simulators.sensors import SensorSim  # paho reason codes, only when needed

        jobs["sensors"] = SensorSim(
            plan.devices,
            plan.alerts,
            sim.creds,
            sim.broker,
            sim.time,
            duration,
            telemetry_interval_s=sim.scenario.sensors.telemetry_interval_s,
            seed=sim.seed,
        ).run
    if "crews" in which:
        depot = sim.scenario.crews.depot or sim.city.sample_near(
            np.random.default_rng(sim.seed), *sim.city.centre, 400.0
        )
        crews = make_crews(sim.scenario, sim.time.start_s, depot, sim.seed)
        jobs["crews"] = CrewSim(crews, sim.creds, sim.broker, sim.time, duration).run
    return run_jobs(jobs, sim.time.stop, sim.results)


def run_jobs(
    jobs: dict[str, Callable[[], dict[str, object]]],
    stop: threading.Event,
    results: dict[str, object],
    grace_s: float = _STOP_GRACE_S,
) -> dict[str, object]:
    """Run each job in its own thread; fill ``results`` by name and return it.

    A job that raises sets ``stop`` for the others, and its error is raised here (as
    ``RuntimeError``) once they have ended, or after ``grace_s`` of them not ending.
    """
    errors: dict[str, BaseException] = {}

    def _run(name: str, job: Callable[[], dict[str, object]]) -> None:
        try:
            results[name] = job()
        except BaseException as exc:  # reported to the caller, who decides
            log.exception("simulator failed: %s", name)
            errors[name] = exc
            stop.set()

    threads = [
        threading.Thread(target=_run, args=(n, j), name=f"sim-{n}", daemon=True)
        for n, j in jobs.items()
    ]
    for t in threads:
        t.start()
    stop_deadline: float | None = None
    busy = False
    for t in threads:
        while t.is_alive() and not busy:
            t.join(min(0.5, grace_s))
            if stop.is_set():
                stop_deadline = stop_deadline or time.monotonic() + grace_s
                # Still connecting or flushing to a slow broker: do not hold the exit up.
                busy = time.monotonic() > stop_deadline
    if busy:
        log.warning("simulators still busy after stop; leaving them")
    if errors:
        name, exc = next(iter(errors.items()))
        raise RuntimeError(f"{name} simulator failed: {exc}") from exc
    return results
