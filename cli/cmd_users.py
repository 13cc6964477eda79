"""``cityfix users``: dispatcher-API users (add, list, remove) and their bearer tokens.

Passwords are hashed with argon2 before they reach the database. ``users token`` issues
a bearer token for a user without their password (an operator's tool for scripts).
"""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import psycopg
import typer

from cli.main import settings_of
from core.errors import Conflict

users_app = typer.Typer(help="Dispatcher-API users.", no_args_is_help=True)

_ROLES = ("viewer", "dispatcher", "admin")


def _connect(ctx: typer.Context) -> psycopg.Connection:  # type: ignore[type-arg]
    return psycopg.connect(settings_of(ctx).pg.dsn, autocommit=True, connect_timeout=5)


@users_app.command("add")
def add(
    ctx: typer.Context,
    username: Annotated[str, typer.Option("--username", help="Login name.")],
    role: Annotated[str, typer.Option("--role", help="viewer | dispatcher | admin.")] = "viewer",
    password: Annotated[
        str | None,
        typer.Option("--password", help="Password; prompted for (or generated) when omitted."),
    ] = None,
) -> None:
    """Add a user; a generated password is printed on the last line."""
    from api.auth import hash_password
    from store import queries

    if role not in _ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(_ROLES)}", param_hint="--role")
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        else:
            password, generated = secrets.token_urlsafe(18), True
    if len(password) < 8:
        raise typer.BadParameter("at least 8 characters", param_hint="--password")
    with _connect(ctx) as conn:
        try:
            queries.create_user(conn, username, hash_password(password), role)
        except Conflict as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"user {username} added with role {role}")
    if generated:
        typer.echo(password)


@users_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List users (never their passwords)."""
    from store import api_queries

    with _connect(ctx) as conn:
        for u in api_queries.list_users(conn):
            state = " (disabled)" if u["disabled"] else ""
            typer.echo(f"{u['username']}\t{u['role']}\t{u['created_at']:%Y-%m-%d %H:%M}{state}")


@users_app.command("remove")
def remove(
    ctx: typer.Context, username: Annotated[str, typer.Option("--username", help="Login name.")]
) -> None:
    """Remove a user; their bearer tokens stop working at once."""
    from store import api_queries

    with _connect(ctx) as conn:
        if not api_queries.remove_user(conn, username):
            typer.echo(f"no user {username!r}", err=True)
            raise typer.Exit(1)
    typer.echo(f"user {username} removed")


@users_app.command("token")
def token(
    ctx: typer.Context, username: Annotated[str, typer.Option("--username", help="Login name.")]
) -> None:
    """Print a bearer token for a user (valid for settings.api.token_ttl_s)."""
    from api.auth import Role, issue_token
    from store import queries

    settings = settings_of(ctx)
    with _connect(ctx) as conn:
        user = queries.user_by_name(conn, username)
    if user is None or user["disabled"]:
        typer.echo(f"no active user {username!r}", err=True)
        raise typer.Exit(1)
    typer.echo(issue_token(
        username, Role(user["role"]), secret=settings.api.secret_key.get_secret_value(),
        ttl_s=settings.api.token_ttl_s,
    ))


def register(app: typer.Typer) -> None:
    """Add the ``users`` command group to the ``cityfix`` command."""
    app.add_typer(users_app, name="users")
