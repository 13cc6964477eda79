"""``cityfix simulate citizens|sensors|crews|all``: play a city against the running system.

The simulators are black-box clients: they speak MQTT with their own app, device and crew
credentials, which this command creates (``cli.mosquitto.add_identity``) before handing
them over. Time is the shared clock of the settings (``CITYFIX_CLOCK__*``), which
``cityfix demo`` sets for every process; ``--start-sim-s`` pins the scenario's start on it
so a restarted simulator carries on where it was.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from cli import mosquitto
from core.errors import CityfixError
from core.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

_KIND = {
    "app": mosquitto.IdentityKind.APP,
    "sensor": mosquitto.IdentityKind.SENSOR,
    "crew": mosquitto.IdentityKind.CREW,
}


def _store_path(settings: Settings) -> Path:
    d = (settings.services_dir / "simulators").resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d / "credentials.json"


def _password_matches(settings: Settings, ident: str, password: str) -> bool:
    """Whether the broker's password file holds ``password`` for ``ident`` ($7$ PBKDF2)."""
    try:
        lines = mosquitto.passwd_path(settings).read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        user, _, stored = line.partition(":")
        if user != ident:
            continue
        parts = stored.split("$")
        if len(parts) != 5 or parts[1] != "7":
            return False
        try:
            salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
            iterations = int(parts[2])
        except ValueError:
            return False
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(digest))
        return hmac.compare_digest(got, digest)
    return False


def _retry(call: Callable[[], T], attempts: int = 10) -> T:
    """``call()``, again while the identity registry is caught mid-write by another process."""
    for _ in range(attempts - 1):
        try:
            return call()
        except ValueError:
            time.sleep(0.3)
    return call()


def ensure_identities(settings: Settings, needed: list[tuple[str, str]]) -> dict[str, object]:
    """Credentials for each simulated party, creating only the identities that are missing.

    Passwords of identities created earlier are kept in a private file under
    ``.services/simulators/`` and reused while the broker still accepts them: every new
    identity makes the broker reload its password file, and a burst of reloads while the
    pipeline runs disconnects its clients.
    """
    from simulators.mqtt import Credentials

    path = _store_path(settings)
    try:
        store: dict[str, dict[str, str]] = json.loads(path.read_text())
    except (OSError, ValueError):
        store = {}
    registry = {i.id: i.kind for i in _retry(lambda: mosquitto.list_identities(settings))}
    creds: dict[str, object] = {}
    created = 0
    for kind, ident in needed:
        known = store.get(ident)
        if (
            known is None
            or known.get("kind") != kind
            or registry.get(ident) is not _KIND[kind]
            or not _password_matches(settings, ident, known.get("password", ""))
        ):
            known = {"kind": kind, "password": secrets.token_urlsafe(18)}
            _retry(
                functools.partial(
                    mosquitto.add_identity, settings, _KIND[kind], ident, known["password"]
                )
            )
            store[ident] = known
            created += 1
        creds[ident] = Credentials(ident, known["password"])
    if created:
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(store))
        tmp.replace(path)
        log.info("simulator identities created=%d reused=%d", created, len(needed) - created)
        time.sleep(1.0)  # the broker reloads its password file on SIGHUP, asynchronously
    return creds


def run_simulators(
    settings: Settings,
    which: set[str],
    *,
    scenario_path: Path | None,
    seed: int | None,
    city: str | None,
    duration_s: float | None,
    run_id: str | None,
    start_sim_s: float | None,
    results_dir: Path | None,
) -> dict[str, object]:
    """Load the scenario and the city, create identities, run until done or SIGTERM."""
    import geo
    from simulators.citymap import CityMap
    from simulators.mqtt import Broker
    from simulators.runner import SimRun, identities_needed, run
    from simulators.scenario import load_scenario
    from simulators.simtime import SimTime

    scenario = load_scenario(scenario_path, city=city, duration_s=duration_s)
    clock = settings.make_clock()
    if settings.clock.wall_epoch_s is None and scenario.clock_factor != 1.0:
        log.warning(
            "scenario clock_factor=%s ignored: the shared clock comes from CITYFIX_CLOCK__* "
            "(cityfix demo sets it); running at factor=%s",
            scenario.clock_factor,
            settings.clock.factor,
        )
    graph = geo.load_city(settings.geo, name=scenario.city)
    city_map = CityMap.from_graph(graph)
    creds = ensure_identities(settings, identities_needed(scenario, which))
    stop = threading.Event()
    start = clock.time() if start_sim_s is None else start_sim_s
    sim_time = SimTime(clock, start, stop)

    def _stop(signum: int, _frame: object) -> None:
        log.info("stopping simulators signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
    sim = SimRun(
        scenario=scenario,
        city=city_map,
        broker=Broker(
            settings.mqtt.host,
            settings.mqtt.port,
            settings.mqtt.keepalive_s,
            settings.mqtt.max_inflight,
        ),
        time=sim_time,
        creds=creds,  # type: ignore[arg-type]
        seed=scenario.seed if seed is None else seed,
        run_id=run_id if run_id is not None else f"{time.time():.6f}",
        results_dir=results_dir,
    )
    results = run(sim, which)
    if results_dir is not None:
        for kind, doc in results.items():
            if kind != "citizens":  # the citizens keep their own file up to date
                (results_dir / f"{kind}.json").write_text(json.dumps(doc, indent=1))
    return results


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command."""
    from cli.main import settings_of

    @app.command("simulate")
    def simulate(
        ctx: typer.Context,
        which: Annotated[
            str, typer.Argument(help="citizens, sensors, crews or all.", metavar="WHICH")
        ] = "all",
        scenario: Annotated[
            Path | None,
            typer.Option("--scenario", help="Scenario YAML (default scenarios/porto.yaml)."),
        ] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Override the seed.")] = None,
        city: Annotated[str | None, typer.Option("--city", help="Override the city.")] = None,
        duration: Annotated[
            float | None, typer.Option("--duration-s", help="Simulated seconds to play.")
        ] = None,
        run_id: Annotated[
            str | None,
            typer.Option("--run-id", help="Salt for message ids (default: a fresh one)."),
        ] = None,
        start_sim_s: Annotated[
            float | None,
            typer.Option("--start-sim-s", help="Scenario start on the shared clock (epoch s)."),
        ] = None,
        results_dir: Annotated[
            Path | None, typer.Option("--results-dir", help="Write <kind>.json results here.")
        ] = None,
    ) -> None:
        """Simulate citizens, sensors and crews over MQTT (seeded, reproducible)."""
        chosen = {"citizens", "sensors", "crews"} if which == "all" else {which}
        if not chosen <= {"citizens", "sensors", "crews"}:
            raise typer.BadParameter("choose citizens, sensors, crews or all", param_hint="WHICH")
        try:
            results = run_simulators(
                settings_of(ctx),
                chosen,
                scenario_path=scenario,
                seed=seed,
                city=city,
                duration_s=duration,
                run_id=run_id,
                start_sim_s=start_sim_s,
                results_dir=results_dir,
            )
        except CityfixError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        brief = {
            k: {kk: vv for kk, vv in v.items() if kk not in ("reports", "crews")}
            for k, v in results.items()
            if isinstance(v, dict)
        }
        typer.echo(json.dumps(brief))
