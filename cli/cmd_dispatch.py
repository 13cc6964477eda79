"""``cityfix dispatch``: the dispatch model from the command line.

``cityfix dispatch solve [FILE] [--time-limit SECONDS]`` reads a problem in VROOM's JSON
input format (from FILE, or stdin when FILE is omitted or ``-``), solves it with the
OR-Tools model and prints the plan in VROOM's solution format. ``--baseline`` prints the
greedy plan instead, for comparison.

``cityfix dispatch run`` is the dispatcher service (see ``dispatch.service``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.main import settings_of
from core.errors import CityfixError, InvalidMessage
from dispatch.baseline import greedy
from dispatch.solver import solve
from dispatch.vroom import plan_to_vroom, problem_from_vroom

dispatch_app = typer.Typer(
    help="Crew dispatch: the routing model and its tools.", no_args_is_help=True
)


def _fail(code: int, message: str) -> None:
    typer.echo(json.dumps({"code": code, "error": message}))
    raise typer.Exit(code)


@dispatch_app.command("solve")
def solve_cmd(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(help="VROOM-format problem (JSON); stdin when omitted or '-'."),
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option("--time-limit", min=0.01, help="Solver time limit in seconds."),
    ] = None,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Use the greedy baseline instead.")
    ] = False,
) -> None:
    """Solve a VROOM-format problem; print a VROOM-format solution on stdout."""
    settings = settings_of(ctx).dispatch
    if time_limit is not None:
        settings = settings.model_copy(update={"time_limit_s": time_limit})
    t0 = time.monotonic()
    try:
        text = sys.stdin.read() if file is None or str(file) == "-" else file.read_text("utf-8")
        doc = json.loads(text)
        problem = problem_from_vroom(doc)
    except InvalidMessage as exc:
        _fail(2, str(exc))
        return
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        _fail(2, f"cannot read problem: {exc}")
        return
    loading_ms = (time.monotonic() - t0) * 1000
    try:
        plan = greedy(problem, settings) if baseline else solve(problem, settings)
    except CityfixError as exc:
        _fail(1, str(exc))
        return
    typer.echo(json.dumps(plan_to_vroom(problem, plan, loading_ms=loading_ms)))


@dispatch_app.command("run")
def run_cmd(ctx: typer.Context) -> None:
    """Run the dispatcher: re-plan crews as incidents and crews change, until SIGTERM."""
    from dispatch import service  # the service's Kafka and MQTT clients load only here

    asyncio.run(service.run(settings_of(ctx)))


def register(app: typer.Typer) -> None:
    """Add the ``dispatch`` command group to the ``cityfix`` command."""
    app.add_typer(dispatch_app, name="dispatch")
