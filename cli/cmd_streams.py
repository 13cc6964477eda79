"""``cityfix streams worker``: run the Faust worker (dedup, scoring, lifecycle).

The worker is the one Faust app of ``streams``; its agents are found by autodiscovery.
Settings are applied to the app before the worker starts; the city's road graph is loaded
(or built into the cache) first, so the agents never wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
from aiokafka.errors import TopicAlreadyExistsError

from cli.main import settings_of
from core.settings import Settings

_log = logging.getLogger(__name__)

streams_app = typer.Typer(
    help="Stream processing: dedup, priority, lifecycle.", no_args_is_help=True
)


@streams_app.command("worker")
def worker(
    ctx: typer.Context,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Faust log level.")] = "info",
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="all (default: settings streams.role), dedup (no store sinks) or store "
            "(only the sinks, consumer group '{app_id}-store').",
        ),
    ] = None,
) -> None:
    """Run one stream worker; run more to scale out by partitions."""
    import geo
    from streams import app as streams_app_module

    settings = settings_of(ctx)
    if role is not None:
        if role not in ("all", "dedup", "store"):
            raise typer.BadParameter("must be all, dedup or store", param_hint="--role")
        settings = settings.model_copy(
            update={"streams": settings.streams.model_copy(update={"role": role})}
        )
    settings.streams.data_dir.mkdir(parents=True, exist_ok=True)
    app = streams_app_module.configure(settings)
    if settings.streams.role != "store":
        graph = geo.load_city(settings.geo)
        _log.info("streams worker: city %s ready (%d edges)", graph.name, graph.edge_count)
        asyncio.run(_ensure_internal_topics(settings))
        from streams.agents import engine

        engine()  # the roads and POIs now, before the heap is settled (streams.app)
    _log.info("streams worker: role %s, app id %s", settings.streams.role, app.conf.id)
    import faust

    faust.Worker(app, loglevel=loglevel, override_logging=False).execute_from_commandline()


async def _ensure_internal_topics(settings: Settings) -> None:
    """Create the cell topic before the worker subscribes.

    Faust declares an agent's topic while it starts, which can race the first partition
    assignment; a topic missing then is ignored until the next rebalance.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from streams import agents

    name = agents.cells.channel.get_topic_name()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            topic = NewTopic(name, settings.kafka.default_partitions, 1)
            await admin.create_topics([topic])
            _log.info("created topic %s", name)
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


def register(app: typer.Typer) -> None:
    """Add the ``streams`` command group to the ``cityfix`` command."""
    app.add_typer(streams_app, name="streams")
