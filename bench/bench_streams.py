"""Stream processing benchmark: dedup + scoring throughput and raw -> incident latency.

Three measurements, one run, on the aguascalientes graph:

1. **in-process**: the engine (parse, snap, dedup, fusion, scoring) driven directly, no
   Kafka: the ceiling of one worker's CPU.
2. **end-to-end throughput**: a real ``cityfix streams worker`` subprocess; N reports and
   alerts produced to ``raw.reports``/``raw.sensor-alerts`` as fast as possible; the rate
   at which their evidence shows up in ``incidents``. The raw consumer loop (aiokafka,
   no processing) over the same records is the ceiling.
3. **latency at a fixed rate** (1,000 events/s by default): per event, Kafka timestamp
   of the first ``incidents`` record holding it minus that of its raw record; p50/p99.
   A plain consumer of the raw topics measures the transport alone in the same run.

The worker runs with ``--role dedup`` (the store sinks would run in a ``--role store``
worker of their own); ``--role all`` measures a worker that also writes the store.

Usage: ``uv run python bench/bench_streams.py [--events 10000] [--rate 1000] [--seconds 10]
[--role dedup|all]``.
Prints a table and writes ``bench/results/streams.json`` (not with ``--no-kafka``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

import geo  # noqa: E402
from core import topics  # noqa: E402
from core.clock import Clock  # noqa: E402
from core.kafka import skip_to_end  # noqa: E402
from core.settings import GeoSettings, Settings  # noqa: E402
from streams.engine import Inline  # noqa: E402
from streams.roads import GeoRoads  # noqa: E402
from tests.unit.streams.conftest import DATA, fault_sites, point_along  # noqa: E402

# One app (consumer group, changelogs) per run, its topics deleted afterwards.
APP_ID = f"cityfix-streams-bench-{uuid.uuid4().hex[:8]}"
CITYFIX = REPO / ".venv" / "bin" / "cityfix"
RESULTS = REPO / "bench" / "results" / "streams.json"
ROLE = "dedup"  # the worker's --role (set from the command line)


#: (citizen category, sensor kind or None, unit): every family, so faults at one place
#: stay apart by family and incidents stay a realistic size.
MIX = [
    ("pothole", "road_impact", "g"),
    ("streetlight_out", "lamp_failure", "flag"),
    ("water_leak", "pressure_drop", "bar"),
    ("flooding", "water_level_high", "m"),
    ("traffic_signal_fault", "signal_fault", "flag"),
    ("fallen_tree", None, ""),
    ("illegal_dumping", None, ""),
    ("graffiti", None, ""),
    ("damaged_sign", None, ""),
]


def workload(graph: geo.RoadGraph, n: int, places: int, seed: int) -> list[tuple[str, dict]]:
    """``n`` events at ``places`` places x 9 families: reports, and 10 % sensor alerts."""
    rng = random.Random(seed)
    sites = fault_sites(graph, places, min_gap_m=60.0)
    out = []
    for i in range(n):
        edge, along = sites[rng.randrange(places)]
        category, kind, unit = MIX[rng.randrange(len(MIX))]
        lat, lon = point_along(graph, edge, along + rng.uniform(-5, 5), side_m=rng.uniform(-2, 2))
        now = datetime.now(UTC).isoformat()
        if kind and i % 10 == 9:
            out.append(
                (
                    "alert",
                    {
                        "v": 1,
                        "alert_id": str(uuid.uuid4()),
                        "device_id": f"dev-{i % 40}",
                        "kind": kind,
                        "lat": lat,
                        "lon": lon,
                        "observed_at": now,
                        "value": rng.uniform(0, 5),
                        "unit": unit,
                        "asset_id": None,
                    },
                )
            )
        else:
            out.append(
                (
                    "report",
                    {
                        "v": 1,
                        "report_id": str(uuid.uuid4()),
                        "category": category,
                        "lat": lat,
                        "lon": lon,
                        "reported_at": now,
                        "client_id": f"app-{rng.randrange(5000)}",
                    },
                )
            )
    return out


def _id(doc: dict) -> str:
    return doc.get("report_id") or doc["alert_id"]


def bench_inline(settings: Settings, roads: GeoRoads, events: list[tuple[str, dict]]) -> dict:
    inline = Inline(
        settings.streams.model_copy(update={"publish_request_status": False}), roads, Clock()
    )
    raws = [(k, json.dumps(d).encode()) for k, d in events]
    t0 = time.perf_counter()
    for i in range(0, len(raws), 500):
        inline.feed(raws[i : i + 500])
    dt = time.perf_counter() - t0
    return {
        "events": len(raws),
        "seconds": round(dt, 3),
        "events_per_s": round(len(raws) / dt),
        "incidents": len(inline.active()),
    }


# -- Kafka -----------------------------------------------------------------------------------


async def _ends(bootstrap: str, names: list[str]) -> dict[TopicPartition, int]:
    parts = {t.name: t.partitions for t in topics.KAFKA_TOPICS}
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await c.start()
    try:
        return dict(
            await c.end_offsets([TopicPartition(n, p) for n in names for p in range(parts[n])])
        )
    finally:
        await c.stop()


class Watch:
    """Reads ``incidents`` from now on; first Kafka timestamp at which each evidence id shows."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.first_seen: dict[str, int] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.start_offsets = await _ends(self.bootstrap, [topics.INCIDENTS])
        self.c = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, fetch_max_wait_ms=20
        )
        await self.c.start()
        self.c.assign(list(self.start_offsets))
        for tp, off in self.start_offsets.items():
            self.c.seek(tp, off)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.c.getmany(timeout_ms=50, max_records=5000)
            for records in batch.values():
                for r in records:
                    if dict(r.headers or ()).get(topics.APP_HEADER) != APP_ID.encode():
                        continue  # another worker on this Kafka
                    for e in json.loads(r.value)["evidence"]:
                        self.first_seen.setdefault(e["id"], r.timestamp)

    async def wait_for(self, ids: set[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ids <= self.first_seen.keys():
                return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.c.stop()


class RawTap:
    """The ceiling: a plain consumer of the raw topics, no processing."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.seen: dict[str, int] = {}  # evidence id -> receive wall time (ms)

    async def start(self) -> None:
        offs = await _ends(self.bootstrap, [topics.RAW_REPORTS, topics.RAW_SENSOR_ALERTS])
        self.c = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, fetch_max_wait_ms=20
        )
        await self.c.start()
        self.c.assign(list(offs))
        for tp, off in offs.items():
            self.c.seek(tp, off)
        self.stamps: dict[str, int] = {}
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.c.getmany(timeout_ms=50, max_records=5000)
            now = int(time.time() * 1000)
            for records in batch.values():
                for r in records:
                    key = r.headers and dict(r.headers).get("bench-id")
                    if key:
                        self.seen[key.decode()] = now
                        self.stamps[key.decode()] = r.timestamp

    async def stop(self) -> None:
        self._task.cancel()
        await self.c.stop()


async def produce(
    bootstrap: str, events: list[tuple[str, dict]], rate: float | None
) -> dict[str, int]:
    """Produce events (at ``rate`` per second, or flat out); return id -> send time (ms)."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1 if rate else 20, acks="all")
    await p.start()
    sent: dict[str, int] = {}
    t0 = time.perf_counter()
    try:
        for i, (kind, doc) in enumerate(events):
            if rate:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            topic = topics.RAW_REPORTS if kind == "report" else topics.RAW_SENSOR_ALERTS
            eid = _id(doc)
            sent[eid] = int(time.time() * 1000)
            await p.send(
                topic,
                json.dumps(doc).encode(),
                key=eid.encode(),
                headers=[("bench-id", eid.encode())],
            )
        await p.flush()
    finally:
        await p.stop()
    return sent


def start_worker(tmp: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "CITYFIX_GEO__CITY": "aguascalientes",
        "CITYFIX_STREAMS__APP_ID": APP_ID,
        "CITYFIX_STREAMS__DATA_DIR": str(tmp),
        "CITYFIX_STREAMS__WEB_PORT": "16099",
        "CITYFIX_STREAMS__PUBLISH_REQUEST_STATUS": "false",
        "CITYFIX_LOG_LEVEL": "WARNING",
    }
    log = (tmp.parent / "bench-worker.log").open("ab")
    return subprocess.Popen(
        [str(CITYFIX), "streams", "worker", "--role", ROLE],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
    )


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (``/proc/stat``)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def _broker_pid() -> int | None:
    """The Kafka broker's pid, if the project's service runner started it here."""
    path = REPO / ".services" / "kafka" / "kafka.pid"
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


class CpuShare:
    """CPU seconds per event of the worker, the broker, this process and the machine."""

    def __init__(self, worker_pid: int) -> None:
        self.pids = {"worker": worker_pid, "bench": os.getpid()}
        broker = _broker_pid()
        if broker is not None:
            self.pids["broker"] = broker
        self.start = {k: _cpu_s(p) for k, p in self.pids.items()}
        self.machine0 = _machine_cpu_s()

    def per_event_ms(self, events: int) -> dict[str, float]:
        out = {
            f"{k}_cpu_ms_per_event": round((_cpu_s(p) - self.start[k]) * 1000 / max(events, 1), 3)
            for k, p in self.pids.items()
        }
        busy, total = (b - a for a, b in zip(self.machine0, _machine_cpu_s(), strict=True))
        out["machine_cpu_ms_per_event"] = round(busy * 1000 / max(events, 1), 3)
        out["machine_busy_share"] = round(busy / total, 3) if total else float("nan")
        return out


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


async def bench_kafka(
    settings: Settings, graph: geo.RoadGraph, n: int, rate: float, seconds: float
) -> dict:
    bootstrap = settings.kafka.bootstrap
    tmp = REPO / ".services" / "bench-streams" / uuid.uuid4().hex[:8]
    tmp.mkdir(parents=True)
    await skip_to_end(bootstrap, APP_ID)
    watch = Watch(bootstrap)
    await watch.start()
    worker = start_worker(tmp)
    out: dict = {}
    try:
        # Ready when a probe comes out the other end.
        probe = workload(graph, 1, 1, seed=99)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            await produce(bootstrap, probe, None)
            if await watch.wait_for({_id(probe[0][1])}, 5):
                break
            probe = workload(graph, 1, 1, seed=int(time.time()))
        else:
            raise RuntimeError("worker never became ready")

        # Throughput: a burst of n events, produced flat out.
        burst = workload(graph, n, 300, seed=1)
        raw = RawTap(bootstrap)
        await raw.start()
        cpu = CpuShare(worker.pid)
        t0 = time.time()
        sent = await produce(bootstrap, burst, None)
        ok = await watch.wait_for(set(sent), 180)
        ids = set(sent)
        last = max(watch.first_seen[i] for i in ids if i in watch.first_seen)
        got = sum(1 for i in ids if i in watch.first_seen)
        span_s = last / 1000 - t0
        raw_span = (max(raw.seen.values()) / 1000 - t0) if raw.seen else float("nan")
        shares = cpu.per_event_ms(got)
        await raw.stop()
        out["throughput"] = {
            "events": n,
            "processed": got,
            "complete": ok,
            "seconds": round(span_s, 3),
            "events_per_s": round(got / span_s),
            "raw_consumer_events_per_s": round(len(raw.seen) / raw_span),
            # CPU spent per event by the worker (what a quieter machine would not change),
            # the broker, this process (producing, and reading every incident record) and
            # the whole machine; a busy share near 1 means the cores, not the worker, set
            # the pace.
            **shares,
        }

        # Latency at a fixed rate.
        steady = workload(graph, int(rate * seconds), 300, seed=2)
        raw = RawTap(bootstrap)
        await raw.start()
        await produce(bootstrap, steady, rate)
        ids = {_id(d) for _, d in steady}
        ok = await watch.wait_for(ids, 60)
        await asyncio.sleep(0.5)
        await raw.stop()
        lat = [
            watch.first_seen[i] - raw.stamps[i]
            for i in ids
            if i in watch.first_seen and i in raw.stamps
        ]
        raw_lat = [raw.seen[i] - raw.stamps[i] for i in ids if i in raw.seen]
        out["latency"] = {
            "rate_per_s": rate,
            "events": len(ids),
            "complete": ok,
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "max_ms": pct(lat, 100),
            "raw_consumer_p50_ms": pct(raw_lat, 50),
            "raw_consumer_p99_ms": pct(raw_lat, 99),
        }
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        await watch.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(f"{APP_ID}-")]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-kafka", action="store_true", help="only the in-process measurement")
    ap.add_argument(
        "--role",
        choices=("dedup", "all"),
        default="dedup",
        help="the worker's --role: dedup alone (default) or with the store sinks in-process",
    )
    args = ap.parse_args()
    global ROLE
    ROLE = args.role

    settings = Settings()
    gs = GeoSettings(city="aguascalientes", osm_dir=DATA, cache_dir=settings.geo.cache_dir)
    graph = geo.load_city(gs)
    roads = GeoRoads(graph, gs.poi_radius_m)
    events = workload(graph, 20_000, 300, seed=0)
    results: dict = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "city": "aguascalientes",
        "at": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
        "worker_role": ROLE,
    }
    results["in_process"] = bench_inline(settings, roads, events)
    if not args.no_kafka:
        results.update(
            asyncio.run(bench_kafka(settings, graph, args.events, args.rate, args.seconds))
        )

    results["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    ip = results["in_process"]
    rows = [
        (
            "in-process engine",
            f"{ip['events_per_s']:,} ev/s",
            f"{ip['events']:,} ev -> {ip['incidents']} incidents",
        )
    ]
    if "throughput" in results:
        t, lt = results["throughput"], results["latency"]
        rows += [
            (
                "worker end-to-end",
                f"{t['events_per_s']:,} ev/s",
                f"{t['processed']:,}/{t['events']:,} events",
            ),
            ("worker CPU per event", f"{t['worker_cpu_ms_per_event']} ms", f"role {ROLE}"),
            (
                "broker / bench CPU per event",
                f"{t.get('broker_cpu_ms_per_event', '-')} / {t['bench_cpu_ms_per_event']} ms",
                f"machine {t['machine_cpu_ms_per_event']} ms, "
                f"{t['machine_busy_share']:.0%} of {os.cpu_count()} cores busy",
            ),
            (
                "raw consumer (ceiling)",
                f"{t['raw_consumer_events_per_s']:,} ev/s",
                "aiokafka, no processing",
            ),
            (
                f"latency @ {lt['rate_per_s']:.0f}/s",
                f"p50 {lt['p50_ms']} ms",
                f"p99 {lt['p99_ms']} ms",
            ),
            (
                "raw consumer latency",
                f"p50 {lt['raw_consumer_p50_ms']} ms",
                f"p99 {lt['raw_consumer_p99_ms']} ms",
            ),
        ]
    w = max(len(r[0]) for r in rows)
    lines = [f"{'measurement'.ljust(w)}  {'result':>16}  notes", "-" * (w + 40)]
    lines += [f"{a.ljust(w)}  {b:>16}  {c}" for a, b, c in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    if args.no_kafka:
        return  # a partial run leaves the recorded results as they are
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
