"""``cityfix api``: serve the web service (Open311, dispatcher API, live push, web map)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.main import settings_of


def api_cmd(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port to listen on.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the API (default 127.0.0.1:8000, from settings.api)."""
    import uvicorn

    from api.app import create_app

    settings = settings_of(ctx)
    if workers > 1:
        # Each worker builds its own app (and its own connections) from the settings.
        uvicorn.run(
            "api.app:create_app_from_env",
            factory=True,
            host=host or settings.api.host,
            port=port or settings.api.port,
            workers=workers,
            log_config=None,
            access_log=False,
        )
        return
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_config=None,
        access_log=False,
    )


def register(app: typer.Typer) -> None:
    """Add the ``api`` command to the ``cityfix`` command."""
    app.command("api")(api_cmd)
