"""Benchmark of the API's two heavy reads at a fixed request rate.

- ``GET /open311/v2/requests.json`` returning 1,000 requests (1,200 seeded in the window);
- ``GET /api/incidents`` returning 5,000 open incidents as GeoJSON (viewer token).

Both ask for gzip (``Accept-Encoding``), as browsers and Open311 clients do; latency is
to the last byte of the (compressed) body.

The API runs as ``cityfix api`` in its own process against a fresh database
``cityfix_bench_api_<uid>``; the load comes from other processes (an open-loop httpx
generator per process, each sending at its share of the rate on a fixed schedule, so a
slow answer does not slow the offered load). Prints a table and writes
``bench/results/api.json``.

Usage: ``uv run python bench/bench_api.py [--rate 200] [--seconds 20] [--procs 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.auth import Role, hash_password, issue_token  # noqa: E402
from core.schemas import CitizenReport, Evidence, Incident, Transition  # noqa: E402
from core.settings import Settings  # noqa: E402
from store import queries  # noqa: E402
from store.schema import migrate  # noqa: E402
from store.writers import Writer  # noqa: E402

N_REPORTS = 1200
N_INCIDENTS = 5000
CATEGORIES = ["pothole", "streetlight_out", "water_leak", "blocked_drain", "graffiti"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def seed(settings: Settings) -> None:
    now = datetime.now(UTC)
    reports = [
        CitizenReport(
            report_id=uuid.uuid4(), category=CATEGORIES[i % 5], lat=41.14 + (i % 97) * 1e-4,
            lon=-8.62 + (i % 89) * 1e-4, reported_at=now - timedelta(minutes=i * 7),
            description=f"report {i}: something to fix near number {i}",
            client_id="open311-bench",
        )
        for i in range(N_REPORTS)
    ]
    incidents = []
    for i in range(N_INCIDENTS):
        opened = now - timedelta(minutes=i)
        rid = str(reports[i].report_id) if i < N_REPORTS else str(uuid.uuid4())
        incidents.append(Incident(
            incident_id=f"bench-{i:05d}", status="open" if i % 3 else "assigned",
            category=CATEGORIES[i % 5], family="bench", priority=f"P{1 + i % 4}",
            score=float(100 - i % 100), score_breakdown={"severity": 40.0, "age": 10.0},
            lat=41.10 + (i % 211) * 5e-4, lon=-8.68 + (i % 199) * 5e-4,
            evidence=[Evidence(kind="report", id=rid, at=opened)], reporters=1,
            opened_at=opened, updated_at=opened, expected_at=opened + timedelta(days=1),
            history=[Transition(status="open", at=opened)], district=f"d{i % 12}",
        ))
    async with Writer(settings.pg.dsn, name="bench") as w:
        for chunk in range(0, len(reports), 500):
            await w.write(reports[chunk:chunk + 500])
        for chunk in range(0, len(incidents), 500):
            await w.write(incidents[chunk:chunk + 500])


def _load(url: str, headers: dict[str, str], rate: float, seconds: float, out: mp.Queue) -> None:
    """One load-generator process: open loop at ``rate`` req/s for ``seconds``."""

    async def run() -> list[tuple[float, int, int]]:
        results: list[tuple[float, int, int]] = []
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
            async def one() -> None:
                t0 = time.perf_counter()
                try:
                    # Raw bytes, as sent: decoding the body is the client's work, not latency.
                    async with client.stream("GET", url) as r:
                        size = 0
                        async for chunk in r.aiter_raw():
                            size += len(chunk)
                    results.append((time.perf_counter() - t0, r.status_code, size))
                except httpx.HTTPError:
                    results.append((time.perf_counter() - t0, 0, 0))

            await one()  # warm the connection
            results.clear()
            tasks = []
            start = time.perf_counter()
            n = int(rate * seconds)
            for i in range(n):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
        return results

    out.put(asyncio.run(run()))


def measure(url: str, headers: dict[str, str], rate: float, seconds: float,
            procs: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    workers = [ctx.Process(target=_load, args=(url, headers, rate / procs, seconds, out))
               for _ in range(procs)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    results = [r for _ in workers for r in out.get()]
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    lat = sorted(r[0] for r in results)
    ok = [r for r in results if r[1] == 200]

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return {
        "offered_rps": rate,
        "requests": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "achieved_rps": round(len(ok) / max(wall - 2.0, seconds), 1),
        "p50_ms": round(pct(0.50), 1),
        "p90_ms": round(pct(0.90), 1),
        "p99_ms": round(pct(0.99), 1),
        "max_ms": round(lat[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(lat) * 1000, 1),
        "body_bytes": ok[0][2] if ok else 0,
    }


def server_buckets(base_url: str, route: str) -> dict[float, float]:
    """The API's own latency histogram for ``route`` (cumulative counts by bound, s)."""
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("cityfix_api_request_seconds_bucket{") and f'route="{route}"' in line:
            le = line.split('le="')[1].split('"')[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def server_p99_ms(before: dict[float, float], after: dict[float, float]) -> float:
    """The bucket bound under which 99% of the requests in between were served (ms)."""
    counts = {b: after[b] - before.get(b, 0.0) for b in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    for bound, n in counts.items():
        if total and n >= 0.99 * total:
            return bound * 1000
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()

    base = Settings()
    name = f"cityfix_bench_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.pg.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    settings = base.model_copy(update={"pg": base.pg.model_copy(update={"database": name})})
    port = free_port()
    server = None
    try:
        with psycopg.connect(settings.pg.dsn, autocommit=True) as conn:
            migrate(conn)
            queries.create_user(conn, "bench", hash_password("bench-password"), "viewer")
        asyncio.run(seed(settings))
        token = issue_token("bench", Role.VIEWER, secret=settings.api.secret_key.get_secret_value(),
                            ttl_s=3600, now=datetime.now(UTC))
        env = {**os.environ, "CITYFIX_PG__DATABASE": name, "CITYFIX_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen(
            ["uv", "run", "cityfix", "api", "--port", str(port)], cwd=ROOT, env=env,
        )
        base_url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        # The web map builds its road tiles in a background thread at start-up; measure the
        # steady state, once that is done (a tile request waits for it).
        t_warm = time.perf_counter()
        httpx.get(f"{base_url}/tiles/roads/14/7800/6100.pbf", timeout=600)
        print(f"server warm after {time.perf_counter() - t_warm:.1f} s")
        cases = {
            "open311 requests.json (1,000), gzip": (
                f"{base_url}/open311/v2/requests.json", {"Accept-Encoding": "gzip"}),
            "incidents GeoJSON (5,000), gzip": (
                f"{base_url}/api/incidents",
                {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"},
            ),
        }
        check = httpx.get(cases["open311 requests.json (1,000), gzip"][0], timeout=30).json()
        fc = httpx.get(cases["incidents GeoJSON (5,000), gzip"][0],
                       headers=cases["incidents GeoJSON (5,000), gzip"][1], timeout=30).json()
        assert len(check) == 1000, len(check)
        assert len(fc["features"]) == N_INCIDENTS, len(fc["features"])
        results = {}
        routes = {"open311 requests.json (1,000), gzip": "/open311/v2/requests.{fmt}",
                  "incidents GeoJSON (5,000), gzip": "/api/incidents"}
        for label, (url, headers) in cases.items():
            before = server_buckets(base_url, routes[label])
            results[label] = measure(url, headers, args.rate, args.seconds, args.procs)
            results[label]["server_p99_ms_le"] = server_p99_ms(
                before, server_buckets(base_url, routes[label]))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        with psycopg.connect(base.pg.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    cols = ["achieved_rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors", "body_bytes",
            "server_p99_ms_le"]
    load = os.getloadavg()[0]
    print(f"\nAPI benchmark: offered {args.rate:g} req/s for {args.seconds:g} s "
          f"from {args.procs} load processes; 1 API process; {os.cpu_count()} CPUs; "
          f"load average {load:.1f}\n")
    print(f"{'endpoint':36}" + "".join(f"{c:>17}" for c in cols))
    for label, r in results.items():
        print(f"{label:36}" + "".join(f"{r[c]:>17}" for c in cols))
    print("(server_p99_ms_le: bound of the API's own latency histogram bucket holding its p99)")
    target = all(r["p99_ms"] < 100 and r["errors"] == 0 for r in results.values())
    print(f"\ntarget p99 < 100 ms at {args.rate:g} req/s: {'met' if target else 'NOT met'}")
    out = ROOT / "bench" / "results" / "api.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "at": datetime.now(UTC).isoformat(), "rate_rps": args.rate, "seconds": args.seconds,
        "load_processes": args.procs, "cpus": os.cpu_count(), "load_average": load,
        "target_met": target,
        "results": results,
    }, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
