"""``cityfix apikeys``: Open311 API keys for citizen apps (add, list, revoke).

A key is shown once, on the last line of ``add``; only its SHA-256 digest is stored.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer

from cli.main import settings_of

keys_app = typer.Typer(help="Open311 API keys.", no_args_is_help=True)


def _connect(ctx: typer.Context) -> psycopg.Connection:  # type: ignore[type-arg]
    return psycopg.connect(settings_of(ctx).pg.dsn, autocommit=True, connect_timeout=5)


@keys_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Who the key is for (an app).")],
) -> None:
    """Issue a key; it is printed on the last line and never shown again."""
    from api.auth import key_digest, new_api_key
    from api.open311 import client_id_for_key
    from store import queries

    key = new_api_key()
    with _connect(ctx) as conn:
        row = queries.create_api_key(conn, name, key_digest(key))
    typer.echo(f"key {row['key_id']} for {name}; reports publish as {client_id_for_key(name)}")
    typer.echo(key)


@keys_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List keys (names and dates, never the keys)."""
    from store import queries

    with _connect(ctx) as conn:
        for k in queries.list_api_keys(conn):
            state = "revoked" if k["revoked"] else "active"
            typer.echo(f"{k['key_id']}\t{k['name']}\t{k['created_at']:%Y-%m-%d %H:%M}\t{state}")


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context, name: Annotated[str, typer.Option("--name", help="The key's name.")]
) -> None:
    """Revoke every active key with this name."""
    from store import api_queries

    with _connect(ctx) as conn:
        n = api_queries.revoke_api_keys_named(conn, name)
    if not n:
        typer.echo(f"no active key named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{n} key(s) revoked")


def register(app: typer.Typer) -> None:
    """Add the ``apikeys`` command group to the ``cityfix`` command."""
    app.add_typer(keys_app, name="apikeys")
