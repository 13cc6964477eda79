"""The ``cityfix`` command.

Each ``cli/cmd_*.py`` module adds its subcommands through ``register(app)``; this module
finds them, reads the settings once and hands them to every command through the Typer
context (``settings_of(ctx)``).
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import cli
from core.logs import setup_logging
from core.settings import Settings, load_settings

app = typer.Typer(
    name="cityfix",
    help="cityfix: street problems reported, deduplicated, prioritised and fixed.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _main(ctx: typer.Context) -> None:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_json)
    ctx.obj = settings


def settings_of(ctx: typer.Context) -> Settings:
    """The settings read at start-up for this invocation."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):  # invoked without the callback (tests)
        root.obj = load_settings()
    return root.obj


def _register_all() -> None:
    for mod in sorted(pkgutil.iter_modules(cli.__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"cli.{mod.name}").register(app)


_register_all()
