"""``cityfix dispatch solve`` reads VROOM input and prints a VROOM solution."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

SAMPLE = Path(__file__).parent / "data" / "sample_vroom.json"
runner = CliRunner()


def test_solve_a_file():
    result = runner.invoke(app, ["dispatch", "solve", str(SAMPLE), "--time-limit", "0.2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["code"] == 0
    assert out["summary"]["unassigned"] == 2
    assert {r["vehicle"] for r in out["routes"]} == {1, 2}


def test_solve_from_stdin_with_the_baseline():
    result = runner.invoke(app, ["dispatch", "solve", "--baseline"], input=SAMPLE.read_text())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["routes"] == 2


def test_bad_input_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"vehicles": [{"id": 1}], "jobs": [], "matrix": [[0]]}))
    result = runner.invoke(app, ["dispatch", "solve", str(bad)])
    assert result.exit_code == 2
    out = json.loads(result.stdout)
    assert out["code"] == 2 and "vehicles[0].start_index" in out["error"]


def test_undecodable_or_out_of_range_input_is_an_input_error(tmp_path):
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"vehicles": [], "jobs": [], "matrix": [[0]], "x": "caf\xe9"}')
    huge = tmp_path / "huge.json"
    huge.write_text('{"vehicles": [{"id": 1, "start_index": 1e400}], "matrix": [[0]]}')
    for path, says in ((latin, "cannot read problem"), (huge, "vehicles[0].start_index")):
        result = runner.invoke(app, ["dispatch", "solve", str(path)])
        assert result.exit_code == 2, result.output
        out = json.loads(result.stdout)
        assert out["code"] == 2 and says in out["error"]
