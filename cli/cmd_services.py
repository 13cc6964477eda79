"""``cityfix services up|down|status``: the local Mosquitto, Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli import mosquitto, services
from core.errors import CityfixError

_console = Console()
_Only = Annotated[
    list[str] | None,
    typer.Option("--only", help="Limit to these services (postgres, mosquitto, kafka)."),
]


def register(app: typer.Typer) -> None:
    """Add the ``services`` group."""
    from cli.main import settings_of

    group = typer.Typer(help="Run the local servers cityfix needs (on 127.0.0.1).")
    app.add_typer(group, name="services")

    @group.command("up")
    def up(ctx: typer.Context, only: _Only = None) -> None:
        """Install what is missing, start what is not running, wait until each answers."""
        settings = settings_of(ctx)
        try:
            for name, what in services.up(settings, only).items():
                _console.print(f"{name}: {what}")
        except CityfixError as exc:
            _console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        _print_status(settings)

    @group.command("install")
    def install(
        browser: Annotated[bool, typer.Option(help="Also Chromium, for browser tests.")] = True,
    ) -> None:
        """Install missing system packages (Debian) without starting anything."""
        needs = ["mosquitto", "postgres", "java", "maven"] + (["chromium"] if browser else [])
        services.ensure_packages(*needs)
        _console.print("system packages present: " + ", ".join(needs))

    @group.command("mqtt-config")
    def mqtt_config(ctx: typer.Context) -> None:
        """Write Mosquitto's password file and ACL for the service identity (no broker start)."""
        settings = settings_of(ctx)
        mosquitto.ensure_service_identity(settings)
        passwd, acl = mosquitto.passwd_path(settings), mosquitto.acl_path(settings)
        _console.print(f"wrote {passwd} and {acl}")

    @group.command("topics")
    def topics(
        ctx: typer.Context,
        wait: Annotated[
            float,
            typer.Option("--wait", min=0, help="Seconds to wait for a broker still starting."),
        ] = 60.0,
    ) -> None:
        """Create the Kafka topics of cityfix; exit 1 if the broker does not answer in time."""
        try:
            created = asyncio.run(services.Kafka(settings_of(ctx)).create_topics(wait))
        except CityfixError as exc:
            _console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        _console.print("created: " + (", ".join(created) or "nothing, all existed"))

    @group.command("down")
    def down(ctx: typer.Context, only: _Only = None) -> None:
        """Stop the servers by pid."""
        services.down(settings_of(ctx), only)
        _console.print("services stopped")

    @group.command("status")
    def status(ctx: typer.Context) -> None:
        """Show each server's state, address and memory; exit 1 unless all answer."""
        if not _print_status(settings_of(ctx)):
            raise typer.Exit(1)


def _print_status(settings: object) -> bool:
    from core.settings import Settings

    assert isinstance(settings, Settings)
    table = Table("service", "state", "pid", "address", "rss MB", "notes")
    states = services.status(settings)
    for st in states:
        table.add_row(
            st.name,
            "[green]up[/green]" if st.running else "[red]down[/red]",
            str(st.pid or "-"),
            st.address,
            f"{st.rss_mb:.0f}" if st.rss_mb else "-",
            st.detail,
        )
    _console.print(table)
    return all(st.running for st in states)
