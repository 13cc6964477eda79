"""``cityfix bench [NAME] [ARGS...]``: the benchmarks in ``bench/`` (numbers, not tests).

Each benchmark is a script that prints a table and writes ``bench/results/<name>.json``;
``NAME`` picks one (its options follow it, e.g. ``cityfix bench dispatch --sizes 50x10``),
``all`` (the default) runs each in turn, as ``make bench`` does. Most need the services
(``cityfix services up``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"

_console = Console()


def benchmarks() -> dict[str, Path]:
    """The benchmark scripts by name (``bench/bench_<name>.py``)."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command."""

    @app.command(
        "bench",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def bench(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="A benchmark, or 'all'.")] = "all",
        list_: Annotated[bool, typer.Option("--list", help="List the benchmarks.")] = False,
    ) -> None:
        """Run a benchmark (its own options follow its name) or all of them."""
        known = benchmarks()
        if list_:
            for each in known:
                _console.print(each)
            return
        if name != "all" and name not in known:
            _console.print(
                f"[red]error:[/red] no benchmark {name!r}; one of: all, {', '.join(known)}"
            )
            raise typer.Exit(2)
        if name == "all" and ctx.args:
            _console.print("[red]error:[/red] options go to one benchmark: name it first")
            raise typer.Exit(2)
        chosen = list(known.values()) if name == "all" else [known[name]]
        for script in chosen:
            _console.print(f"== {script.relative_to(BENCH_DIR.parent)}")
            done = subprocess.run([sys.executable, str(script), *ctx.args], check=False)
            if done.returncode != 0:
                raise typer.Exit(done.returncode)
