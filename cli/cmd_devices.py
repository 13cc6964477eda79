"""``cityfix devices add|list|revoke``: the MQTT identities of sensors, apps and crews."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli import mosquitto
from core.errors import CityfixError
from core.settings import Settings


def register(app: typer.Typer) -> None:
    """Add the ``devices`` group."""
    from cli.main import settings_of

    group = typer.Typer(
        help="MQTT identities (password + ACL rights); the local broker reloads without a "
        "restart, any other broker on its own SIGHUP."
    )
    app.add_typer(group, name="devices")
    console = Console(highlight=False)
    # Stderr: `add` prints the password on the last line of stdout.
    errors = Console(highlight=False, stderr=True)

    def reload_or_explain(settings: Settings) -> None:
        if mosquitto.reload_broker(settings):
            console.print("broker reloaded")
            return
        errors.print(
            "[yellow]warning:[/yellow] the broker was NOT reloaded: no local Mosquitto runs "
            f"from {mosquitto.broker_pid_path(settings)}. The change is on disk; it applies "
            "once the broker re-reads its password file and ACL: send it SIGHUP "
            "(`kill -HUP PID`; with Docker `docker compose kill -s HUP mosquitto`) or "
            "restart it.",
            soft_wrap=True,
        )

    @group.command("add")
    def add(
        ctx: typer.Context,
        kind: Annotated[
            mosquitto.IdentityKind, typer.Option("--kind", help="What the identity may do.")
        ],
        ident: Annotated[str, typer.Option("--id", help="The id, also the MQTT username.")],
        password: Annotated[
            str | None,
            typer.Option("--password", help="Use this password instead of generating one."),
        ] = None,
    ) -> None:
        """Create (or re-key) an identity; print the generated password on the last line."""
        settings = settings_of(ctx)
        try:
            secret = mosquitto.add_identity(settings, kind, ident, password, reload=False)
        except CityfixError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        console.print(
            f"{kind} {ident}: rights " + "; ".join(mosquitto.rights(kind, ident)), soft_wrap=True
        )
        reload_or_explain(settings)
        if password is None:
            typer.echo(secret)

    @group.command("list")
    def list_(ctx: typer.Context) -> None:
        """Every identity with its kind and creation time."""
        table = Table("id", "kind", "created_at")
        for ident in mosquitto.list_identities(settings_of(ctx)):
            table.add_row(ident.id, str(ident.kind), ident.created_at)
        console.print(table)

    @group.command("revoke")
    def revoke(
        ctx: typer.Context,
        ident: Annotated[str, typer.Argument(help="The identity to remove.")],
    ) -> None:
        """Remove an identity's password and rights; refused from the broker's next reload."""
        settings = settings_of(ctx)
        try:
            mosquitto.revoke_identity(settings, ident, reload=False)
        except CityfixError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        console.print(f"revoked {ident}")
        reload_or_explain(settings)
