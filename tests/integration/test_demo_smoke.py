"""The whole loop, end to end: a small city for two minutes of accelerated time.

Runs ``cityfix demo --scenario scenarios/smoke.yaml --duration 120`` as a subprocess
against the real servers: the simulators' citizens and sensors report faults, the bridge,
the streams worker and the dispatcher turn them into incidents and plans, the simulated
crews drive there and fix them. The summary must show incidents resolved by crews, and
no child process may outlive the demo.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CITYFIX = Path(sys.executable).with_name("cityfix")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_small_city_gets_its_incidents_resolved_by_crews(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(CITYFIX),
                "demo",
                "--scenario",
                str(REPO / "scenarios" / "smoke.yaml"),
                "--duration",
                "120",
                "--summary-json",
                str(summary_path),
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "160"},
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=360)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    output = log_path.read_text("utf-8", "replace")
    tail = output[-6000:]
    assert code == 0, tail
    assert not _children_of(proc.pid), "the demo left processes behind"

    summary = json.loads(summary_path.read_text())
    assert summary["city"] == "aguascalientes"
    assert summary["reports"] > 10, summary
    assert summary["alerts"] > 0, summary
    assert summary["incidents"] > 0, summary
    # Duplicates fused: more evidence than incidents.
    assert summary["dedup_ratio"] is not None and summary["dedup_ratio"] > 1.0, summary
    assert summary["assignments"] > 0, summary
    # The loop closed: crews drove there and fixed things.
    assert summary["incidents_resolved"] > 0, (summary, tail)
    assert summary["time_to_resolve_min"]["all"]["n"] > 0
    assert summary["citizens"]["reports_tracked"] > 0
    for name in ("ingest", "streams", "dispatch", "simulators"):
        assert f"[{name}]" in output, f"no output from {name}"
