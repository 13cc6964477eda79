"""``cityfix bench``: finds the benchmark scripts, refuses unknown names."""

from __future__ import annotations

import subprocess

from typer.testing import CliRunner

from cli.cmd_bench import benchmarks
from cli.main import app


def test_every_script_in_bench_is_a_benchmark_by_name():
    names = set(benchmarks())
    assert {"api", "dispatch", "geo", "ingest", "store", "streams"} <= names
    out = CliRunner().invoke(app, ["bench", "--list"])
    assert out.exit_code == 0 and set(out.output.split()) == names


def test_an_unknown_benchmark_is_refused_with_the_choices():
    out = CliRunner().invoke(app, ["bench", "nosuch"])
    assert out.exit_code == 2 and "dispatch" in out.output


def test_a_benchmarks_own_options_reach_it(monkeypatch):
    ran = []

    def record(argv, check):
        ran.append(argv[1:])
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(subprocess, "run", record)
    out = CliRunner().invoke(app, ["bench", "dispatch", "--sizes", "50x10", "--seeds", "1"])
    assert ran == [[str(benchmarks()["dispatch"]), "--sizes", "50x10", "--seeds", "1"]]
    assert out.exit_code == 3  # the benchmark's own exit status
