"""``cityfix demo``: a living city on one terminal.

Starts the servers if needed, migrates the database, then runs every component as a
supervised child process (ingest, streams worker, dispatcher, API, simulators), restarting
any that crashes (with backoff), with each line of their logs prefixed and coloured. A
live panel shows the simulated time and what flows through Kafka (counted here from the
demo's start offsets). On Ctrl-C or after ``--duration`` wall seconds, everything is
stopped (SIGTERM, then SIGKILL after a grace period) and a summary is printed (and written
as JSON with ``--summary-json``).

Every child gets the same clock anchor (``CITYFIX_CLOCK__FACTOR``, ``..._WALL_EPOCH_S``,
``..._SIM_EPOCH_S``) and city (``CITYFIX_GEO__CITY``), so SLAs, ageing, ETAs and shift ends
agree. Each run starts a fresh simulated day after the last one, so the summary can tell
this run's events from earlier runs' by their event times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from core.clock import Clock
from core.errors import CityfixError
from core.settings import Settings
from core.topics import KAFKA_TOPICS
from ingest.bridge import end_session

log = logging.getLogger(__name__)

_GRACE_S = 10.0
_MAX_BACKOFF_S = 30.0
_COLOURS = {
    "db": "white",
    "ingest": "cyan",
    "streams": "magenta",
    "dispatch": "yellow",
    "api": "green",
    "simulators": "bright_blue",
    "demo": "bold white",
}
_TOPICS = ("raw.reports", "raw.sensor-alerts", "incidents", "assignments")
_EVENT_TIME = {
    "raw.reports": "reported_at",
    "raw.sensor-alerts": "observed_at",
    "incidents": "opened_at",
    "assignments": "created_at",
}


# --- which subcommands exist -------------------------------------------------------------


def _command_tree() -> Any:
    from cli.main import app

    return typer.main.get_command(app)


def resolve_command(candidates: list[list[str]]) -> list[str] | None:
    """The first of ``candidates`` (subcommand paths) that this ``cityfix`` can run."""
    root = _command_tree()
    for path in candidates:
        cmd: Any = root
        for part in path:
            sub = getattr(cmd, "commands", None)  # only groups have subcommands
            cmd = sub.get(part) if isinstance(sub, dict) else None
            if cmd is None:
                break
        if cmd is not None and not isinstance(getattr(cmd, "commands", None), dict):
            return path
    return None


# --- simulated clock ---------------------------------------------------------------------


def next_sim_epoch(
    now_s: float, last_sim_s: float | None, start_hour: float, gap_s: float = 0.0
) -> float:
    """``start_hour`` on the first day after now and at least ``gap_s`` after the last run."""
    base = max(now_s, (last_sim_s + gap_s) if last_sim_s is not None else 0.0)
    epoch = math.floor(base / 86400.0) * 86400.0 + start_hour * 3600.0
    return epoch if epoch > base else epoch + 86400.0


def anchored_clock(factor: float, sim_epoch_s: float, starts_in_s: float = 0.0) -> Clock:
    """A clock running at ``factor`` that reads ``sim_epoch_s`` ``starts_in_s`` wall s from now."""
    return Clock(factor, time.time() + starts_in_s, sim_epoch_s)


def clock_env(clock: Clock) -> dict[str, str]:
    """The environment that gives a child process (through its settings) this clock."""
    return {
        "CITYFIX_CLOCK__FACTOR": repr(clock.factor),
        "CITYFIX_CLOCK__WALL_EPOCH_S": repr(clock.wall_epoch_s),
        "CITYFIX_CLOCK__SIM_EPOCH_S": repr(clock.sim_epoch_s),
    }


def _state_path(settings: Settings) -> Path:
    d = (settings.services_dir / "demo").resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d / "clock.json"


def _last_sim_s(settings: Settings) -> float | None:
    try:
        return float(json.loads(_state_path(settings).read_text())["sim_end_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_sim_s(settings: Settings, sim_s: float) -> None:
    _state_path(settings).write_text(json.dumps({"sim_end_s": sim_s}))


# --- supervised children -----------------------------------------------------------------


@dataclass
class Child:
    """One supervised component."""

    name: str
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    stopping: bool = False
    task: asyncio.Task[None] | None = None
    started_at: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    restart_after_success: bool = True

    @property
    def state(self) -> str:
        """``running``, ``restarting``, ``stopped`` (for the panel)."""
        if self.proc is not None and self.proc.returncode is None:
            return "running"
        return "stopped" if self.stopping else "restarting"


class Demo:
    """The demo's processes, Kafka counters and terminal."""

    def __init__(
        self,
        settings: Settings,
        console: Console,
        env: dict[str, str],
        clock: Clock,
        since: datetime,
    ) -> None:
        from simulators.summary import Tally

        self.settings = settings
        self.console = console
        self.env = env
        self.clock = clock
        self.since = since
        self.tally = Tally()
        self.children: list[Child] = []
        self.stop = asyncio.Event()
        self.started_wall = time.monotonic()
        self._consumer: Any = None
        self._consume_task: asyncio.Task[None] | None = None

    # -- output -----------------------------------------------------------------------
    def say(self, name: str, line: str) -> None:
        """Print one line with the component's coloured prefix."""
        prefix = Text(f"[{name}] ", style=_COLOURS.get(name, "white"))
        self.console.print(prefix + Text.from_ansi(line.rstrip()), soft_wrap=True)

    # -- children ---------------------------------------------------------------------
    def add(self, name: str, argv: list[str], *, restart_after_success: bool = True) -> Child:
        """Start supervising a component (restarted when it crashes)."""
        child = Child(name, argv, restart_after_success=restart_after_success)
        self.children.append(child)
        child.task = asyncio.create_task(self._supervise(child))
        return child

    async def _supervise(self, child: Child) -> None:
        backoff = 1.0
        while not child.stopping:
            child.starts += 1
            child.started_at = time.monotonic()
            try:
                child.proc = await asyncio.create_subprocess_exec(
                    *child.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,  # its own group: we signal it and its children
                )
            except OSError as exc:
                self.say("demo", f"cannot start {child.name}: {exc}")
                return
            assert child.proc.stdout is not None
            async for raw in child.proc.stdout:
                self.say(child.name, raw.decode("utf-8", "replace"))
            code = await child.proc.wait()
            child.exit_codes.append(code)
            if child.stopping:
                return
            if code == 0 and not child.restart_after_success:
                self.say("demo", f"{child.name} finished")
                return
            if time.monotonic() - child.started_at > 60:
                backoff = 1.0
            self.say("demo", f"{child.name} exited with {code}; restarting in {backoff:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), backoff)
            if self.stop.is_set():
                return
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def terminate(self, children: list[Child]) -> None:
        """SIGTERM each child's process group, SIGKILL whatever is left after the grace."""
        for child in children:
            child.stopping = True
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + _GRACE_S
        for child in children:
            proc = child.proc
            if proc is None:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), max(deadline - time.monotonic(), 0.1))
            if proc.returncode is None:
                self.say("demo", f"{child.name} ignored SIGTERM; killing it")
            # The group may hold grandchildren even when the leader is gone.
            self._signal(child, signal.SIGKILL)
        for child in children:
            if child.task is not None:
                child.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await child.task

    @staticmethod
    def _signal(child: Child, sig: signal.Signals) -> None:
        if child.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, sig)

    # -- Kafka ------------------------------------------------------------------------
    async def start_counting(self) -> None:
        """Snapshot the end offsets of the counted topics; count from there on."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            client_id="cityfix-demo",
        )
        await consumer.start()
        await consumer.topics()  # fetches the cluster's metadata
        counts = {t.name: t.partitions for t in KAFKA_TOPICS}
        tps = [
            TopicPartition(t, p)
            for t in _TOPICS
            for p in sorted(consumer.partitions_for_topic(t) or range(counts[t]))
        ]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])
        self._consumer = consumer
        self._consume_task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                for rec in records:
                    self._fold(tp.topic, rec.key, rec.value)

    def _fold(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        doc: dict[str, Any] | None = None
        if value is not None:
            try:
                doc = json.loads(value)
            except ValueError:
                return
            if not isinstance(doc, dict):
                return
            at = _parse_time(doc.get(_EVENT_TIME[topic]))
            if at is not None and at < self.since:
                return  # an earlier run's (or another client's) event
        self.tally.add(topic, key.decode("utf-8", "replace") if key else None, doc)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Read what is left on the counted topics, then stop counting."""
        if self._consumer is None:
            return
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(Exception):
            tps = list(self._consumer.assignment())
            ends = await self._consumer.end_offsets(tps)
            while time.monotonic() < deadline:
                positions = {tp: await self._consumer.position(tp) for tp in tps}
                if all(positions[tp] >= ends[tp] for tp in tps):
                    break
                await asyncio.sleep(0.2)
        if self._consume_task is not None:
            self._consume_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._consume_task
        with contextlib.suppress(Exception):
            await self._consumer.stop()
        self._consumer = None

    async def close_leftovers(self, sources: set[str], at: datetime) -> int:
        """Close incidents still open from earlier demo runs (a fresh day starts clean).

        Only incidents opened before this run whose every piece of evidence came from the
        simulators' own identities are closed (with a ``close`` command, as a dispatcher
        would), so other clients' incidents are left alone. ``at`` lies beyond the
        reopen window before this run, so today's reports of the same places open new
        incidents instead of reopening these.
        """
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        from core.schemas import ACTIVE_STATUSES, Command, CommandKind, dumps

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        latest: dict[str, dict[str, Any]] = {}
        try:
            await consumer.topics()
            parts = consumer.partitions_for_topic("incidents") or range(6)
            tps = [TopicPartition("incidents", p) for p in sorted(parts)]
            ends = await consumer.end_offsets(tps)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    for rec in records:
                        with contextlib.suppress(ValueError, TypeError, KeyError):
                            if rec.value is None:
                                latest.pop(rec.key.decode(), None)
                                continue
                            doc = json.loads(rec.value)
                            latest[str(doc["incident_id"])] = doc
        finally:
            await consumer.stop()
        active = {str(s) for s in ACTIVE_STATUSES}
        stale = [
            iid
            for iid, doc in latest.items()
            if doc.get("status") in active
            and (opened := _parse_time(doc.get("opened_at"))) is not None
            and opened < self.since
            and doc.get("evidence")
            and all(e.get("source") in sources for e in doc["evidence"])
        ]
        if not stale:
            return 0
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap)
        await producer.start()
        try:
            for iid in stale:
                cmd = Command(
                    command_id=uuid.uuid4(),
                    kind=CommandKind.CLOSE,
                    at=at,
                    issued_by="demo",
                    incident_id=iid,
                    note="left open by an earlier demo run",
                )
                await producer.send("commands", dumps(cmd), key=iid.encode())
            await producer.flush()
        finally:
            await producer.stop()
        return len(stale)

    # -- panel ------------------------------------------------------------------------
    def panel(self) -> Panel:
        """The live progress panel."""
        t = self.tally
        sim = self.clock.now().strftime("%a %H:%M")
        wall = time.monotonic() - self.started_wall
        stats = Table.grid(padding=(0, 3))
        stats.add_row(
            f"[bold]sim time[/bold] {sim}",
            f"[bold]reports[/bold] {t.reports}",
            f"[bold]alerts[/bold] {t.alerts}",
        )
        stats.add_row(
            f"[bold]incidents[/bold] {t.incidents_open} open, {t.incidents_resolved} resolved",
            f"[bold]assignments[/bold] {t.assignments}",
            f"[bold]crews busy[/bold] {t.crews_busy}",
        )
        procs = Text(
            "  ".join(
                f"{c.name}:{c.state}" + (f"(x{c.starts})" if c.starts > 1 else "")
                for c in self.children
            )
        )
        return Panel(
            Group(stats, procs),
            title=f"cityfix demo · {wall:.0f} s · x{self.clock.factor:g}",
            border_style="blue",
        )

    def progress_line(self) -> str:
        """The panel as one log line (when the output is not a terminal)."""
        t = self.tally
        return (
            f"sim={self.clock.now():%H:%M} reports={t.reports} alerts={t.alerts} "
            f"incidents_open={t.incidents_open} resolved={t.incidents_resolved} "
            f"assignments={t.assignments} crews_busy={t.crews_busy}"
        )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _cityfix_argv() -> list[str]:
    exe = Path(sys.executable).with_name("cityfix")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from cli.main import app; app()"]


def _clear_plans(settings: Settings, crew_ids: list[str]) -> None:
    """Forget earlier runs' retained crew plans, so crews start the day empty-handed."""
    from core.mqtt import service_client
    from core.topics import crew_topic

    client = service_client(settings.mqtt, f"cityfix-demo-{uuid.uuid4().hex[:6]}")
    try:
        client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=10)
    except OSError as exc:
        log.warning("cannot clear retained plans: %s", exc)
        return
    client.loop_start()
    try:
        infos = [
            client.publish(crew_topic(c, "assignment"), b"", qos=1, retain=True) for c in crew_ids
        ]
        for info in infos:
            with contextlib.suppress(Exception):
                info.wait_for_publish(3.0)
    finally:
        client.disconnect()
        client.loop_stop()


# --- the command -------------------------------------------------------------------------


@dataclass
class DemoOptions:
    """What ``cityfix demo`` was asked for."""

    scenario: Path | None
    duration_s: float | None
    city: str | None
    seed: int | None
    summary_json: Path | None
    warmup_s: float = 8.0


async def _run(settings: Settings, opts: DemoOptions, console: Console) -> dict[str, Any]:
    import geo
    from cli import services
    from cli.cmd_simulate import ensure_identities
    from core.kafka import skip_to_end
    from simulators.runner import identities_needed
    from simulators.scenario import DEFAULT_SCENARIO, load_scenario
    from simulators.summary import summarise

    scenario = load_scenario(opts.scenario, city=opts.city)
    city = scenario.city
    scenario_path = str((opts.scenario or DEFAULT_SCENARIO).resolve())
    console.print(
        f"[bold]cityfix demo[/bold]: scenario {scenario.name}, city {city}, "
        f"x{scenario.clock_factor:g} simulated time"
    )

    # Servers and the road graph first: every child needs them, and building the graph
    # once here keeps the children from racing to build it.
    for name, what in (await asyncio.to_thread(services.up, settings)).items():
        console.print(f"[dim]{name}: {what}[/dim]")
    geo_settings = settings.geo.model_copy(update={"city": city})
    graph = await asyncio.to_thread(geo.load_city, geo_settings, city)
    console.print(f"[dim]road graph: {graph!r}[/dim]")

    # A day after the reopen window past the last run: old incidents stay in the past.
    # The day is chosen now; the clock is anchored to it only when the pipeline starts.
    reopen_s = settings.streams.reopen_window_s
    sim_epoch = next_sim_epoch(
        time.time(), _last_sim_s(settings), scenario.start_hour, gap_s=reopen_s + 86400.0
    )
    since = datetime.fromtimestamp(sim_epoch, tz=UTC)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CITYFIX_GEO__CITY": city}
    demo = Demo(settings, console, env, anchored_clock(scenario.clock_factor, sim_epoch), since)
    cityfix = _cityfix_argv()
    try:
        migrate = resolve_command([["db", "migrate"]])
        if migrate is None:
            demo.say("demo", "warning: no `cityfix db migrate` in this build; skipping it")
        else:
            proc = await asyncio.create_subprocess_exec(
                *cityfix, *migrate, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            out, _ = await proc.communicate()
            for line in out.decode("utf-8", "replace").splitlines():
                demo.say("db", line)
            if proc.returncode:
                raise CityfixError(f"`cityfix db migrate` failed with {proc.returncode}")

        # Before this run publishes anything (the commands below included), the stream
        # worker's group moves to the end of the topics. Records earlier runs, tests or
        # benchmarks left there are not this city's day, and a worker resuming where its
        # group stopped works through all of them first: the 20,000 raw records one
        # ``bench_streams`` run leaves kept the smoke scenario from opening a single
        # incident of its own in two minutes.
        group = settings.streams.worker_app_id
        try:
            skipped = await skip_to_end(settings.kafka.bootstrap, group)
        except Exception as exc:  # a worker of the group still running elsewhere, say
            demo.say("demo", f"warning: could not skip the topics' backlog for {group}: {exc!r}")
        else:
            if skipped:
                demo.say("demo", f"skipped {skipped} records left by earlier runs or benchmarks")
        # Simulator identities before the pipeline starts: creating them makes the broker
        # reload, which must not happen under the bridge's feet.
        needed = identities_needed(scenario, {"citizens", "sensors", "crews"})
        await asyncio.to_thread(ensure_identities, settings, needed)
        await asyncio.to_thread(_clear_plans, settings, [c for c, _g in scenario.crew_ids()])
        closed = await demo.close_leftovers(
            {i for _k, i in needed}, datetime.fromtimestamp(sim_epoch - reopen_s - 3600, tz=UTC)
        )
        if closed:
            demo.say("demo", f"closed {closed} incidents left open by earlier demo runs")
        await demo.start_counting()

        # The setup above takes from seconds to minutes: anchoring the clock before it put
        # the simulators that far into the scenario, sending all that was due at once. The
        # scenario's first second is now when the simulators start, after the warm-up.
        warmup_s = min(opts.warmup_s, opts.duration_s or 1e9)
        clock = anchored_clock(scenario.clock_factor, sim_epoch, starts_in_s=warmup_s)
        demo.clock, demo.env = clock, {**env, **clock_env(clock)}
        pipeline = [
            ("ingest", [["ingest"], ["ingest", "run"]]),
            ("streams", [["streams", "worker"]]),
            ("dispatch", [["dispatch", "run"]]),
            ("api", [["api"], ["api", "serve"]]),
        ]
        for name, candidates in pipeline:
            path = resolve_command(candidates)
            if path is None:
                demo.say(
                    "demo",
                    f"warning: no `cityfix {' '.join(candidates[0])}` yet; running without {name}",
                )
                continue
            demo.add(name, [*cityfix, *path])

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, demo.stop.set)

        run_id = uuid.uuid4().hex[:12]
        results_dir = (settings.services_dir / "demo" / run_id).resolve()
        sim_argv = [
            *cityfix,
            "simulate",
            "all",
            "--scenario",
            scenario_path,
            "--city",
            city,
            "--run-id",
            run_id,
            "--start-sim-s",
            repr(sim_epoch),
            "--results-dir",
            str(results_dir),
        ]
        if opts.seed is not None:
            sim_argv += ["--seed", str(opts.seed)]

        api = settings.api
        base = f"http://{api.host}:{api.port}"
        console.print(
            f"[bold]map[/bold] {base}/   [bold]API docs[/bold] {base}/docs   "
            f"[bold]Open311[/bold] {base}/open311/v2/services.json"
        )
        deadline = None if opts.duration_s is None else time.monotonic() + opts.duration_s
        # Give the pipeline a head start so the first reports find the bridge subscribed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(demo.stop.wait(), warmup_s)
        if not demo.stop.is_set():
            demo.add("simulators", sim_argv, restart_after_success=False)

        live_ctx = (
            Live(demo.panel(), console=console, refresh_per_second=2, transient=False)
            if console.is_terminal
            else contextlib.nullcontext()
        )
        last_line = 0.0
        with live_ctx as live:
            while not demo.stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(demo.stop.wait(), 0.5)
                if live is not None:
                    live.update(demo.panel())
                elif time.monotonic() - last_line >= 10:
                    last_line = time.monotonic()
                    demo.say("demo", demo.progress_line())

        demo.stop.set()
        demo.say("demo", "stopping: simulators first, then the pipeline")
        sims = [c for c in demo.children if c.name == "simulators"]
        await demo.terminate(sims)
        await asyncio.sleep(3.0)  # let the last messages through the pipeline
        await demo.terminate([c for c in reversed(demo.children) if c.name != "simulators"])
        await demo.drain()
        _save_sim_s(settings, clock.time())
        # The demo's bridge is gone for good: leave no session behind in the shared
        # subscription, or the broker would keep handing it other bridges' messages.
        await asyncio.to_thread(end_session, settings)

    finally:
        # Whatever happened above, leave no process behind.
        await demo.terminate([c for c in reversed(demo.children) if not c.stopping])
        await demo.drain(0.1)

    citizens: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        citizens = json.loads((results_dir / "citizens.json").read_text())
    summary = summarise(demo.tally, citizens)
    summary.update(
        {
            "scenario": scenario.name,
            "city": city,
            "clock_factor": scenario.clock_factor,
            "sim_start": since.isoformat(),
            "sim_end": clock.now().isoformat(),
            "wall_s": round(time.monotonic() - demo.started_wall, 1),
            "restarts": {c.name: c.starts - 1 for c in demo.children},
        }
    )
    return summary


def render_summary(console: Console, summary: dict[str, Any]) -> None:
    """Print the summary as tables."""
    head = Table(title="cityfix demo summary", show_header=False)
    head.add_row("simulated", f"{summary['sim_start']} -> {summary['sim_end']}")
    head.add_row("reports / alerts", f"{summary['reports']} / {summary['alerts']}")
    head.add_row(
        "incidents",
        f"{summary['incidents']} ({summary['incidents_resolved']} resolved, "
        f"{summary['incidents_open']} open)",
    )
    head.add_row("dedup ratio (evidence/incident)", str(summary["dedup_ratio"]))
    head.add_row("assignments", str(summary["assignments"]))
    if summary.get("times_off_clock"):
        head.add_row("transitions off the shared clock", str(summary["times_off_clock"]))
    sla = summary["sla"]
    head.add_row("SLA met", f"{sla['met']}/{sla['resolved']} ({sla['met_pct']} %)")
    cit = summary["citizens"]
    head.add_row(
        "citizens saw their report closed", f"{cit['saw_closed']}/{cit['reports_tracked']}"
    )
    console.print(head)
    times = Table(
        "priority",
        "assign n",
        "assign p50",
        "assign p90",
        "resolve n",
        "resolve p50",
        "resolve p90",
        title="time to assign / resolve (simulated minutes)",
    )
    for prio in [*sorted(k for k in summary["time_to_assign_min"] if k != "all"), "all"]:
        a = summary["time_to_assign_min"].get(prio, {})
        r = summary["time_to_resolve_min"].get(prio, {})
        times.add_row(prio, *(str(x.get(k, "-")) for x in (a, r) for k in ("n", "p50", "p90")))
    console.print(times)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command."""
    from cli.main import settings_of

    @app.command("demo")
    def demo_cmd(
        ctx: typer.Context,
        scenario: Annotated[
            Path | None,
            typer.Option("--scenario", help="Scenario YAML (default scenarios/porto.yaml)."),
        ] = None,
        duration: Annotated[
            float | None,
            typer.Option("--duration", min=1, help="Stop after this many wall seconds."),
        ] = None,
        city: Annotated[str | None, typer.Option("--city", help="Override the city.")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Override the seed.")] = None,
        summary_json: Annotated[
            Path | None, typer.Option("--summary-json", help="Also write the summary here.")
        ] = None,
    ) -> None:
        """Run the whole city: servers, pipeline, API and simulators, with a live panel."""
        console = Console()
        opts = DemoOptions(scenario, duration, city, seed, summary_json)
        try:
            summary = asyncio.run(_run(settings_of(ctx), opts, console))
        except CityfixError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        render_summary(console, summary)
        if summary_json is not None:
            summary_json.parent.mkdir(parents=True, exist_ok=True)
            summary_json.write_text(json.dumps(summary, indent=1))
            console.print(f"summary written to {summary_json}")
