"""``cityfix db migrate|status``: the schema of the configured database."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.errors import CityfixError

_console = Console()
_ModeOpt = Annotated[
    str | None,
    typer.Option(
        "--mode",
        help="Force a storage mode: timescaledb or postgres (default: timescaledb when "
        "the extension is installed).",
    ),
]


def register(app: typer.Typer) -> None:
    """Add the ``db`` group."""
    import psycopg

    import store
    from cli.main import settings_of

    group = typer.Typer(help="Database schema: migrations and storage mode.")
    app.add_typer(group, name="db")

    @group.command("migrate")
    def migrate(ctx: typer.Context, mode: _ModeOpt = None) -> None:
        """Apply pending migrations (safe to run again; one migrator at a time)."""
        settings = settings_of(ctx)
        if mode not in (None, *store.MODES):
            _console.print(f"[red]error:[/red] unknown mode {mode!r}")
            raise typer.Exit(2)
        try:
            with psycopg.connect(settings.pg.dsn, autocommit=True, connect_timeout=10) as conn:
                applied = store.migrate(conn, mode=mode)  # type: ignore[arg-type]
                active = store.detect_mode(conn)
        except (CityfixError, psycopg.Error) as exc:
            _console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing to apply"
        _console.print(f"mode: {active}; applied: {names}")

    @group.command("status")
    def status(ctx: typer.Context) -> None:
        """Show the storage mode and the applied and pending migrations."""
        settings = settings_of(ctx)
        try:
            with psycopg.connect(settings.pg.dsn, autocommit=True, connect_timeout=10) as conn:
                active = store.detect_mode(conn)
                applied = store.applied_migrations(conn)
                pending = store.pending_migrations(conn)
        except psycopg.Error as exc:
            _console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        _console.print(f"database: {settings.pg.database} mode: {active}")
        table = Table("version", "name", "mode", "applied at")
        for m in applied:
            applied_at = m.applied_at.isoformat(" ", "seconds")
            table.add_row(f"{m.version:04d}", m.name, m.mode, applied_at)
        for p in pending:
            table.add_row(f"{p.version:04d}", p.name, "-", "[yellow]pending[/yellow]")
        _console.print(table)
