"""The one Faust app of cityfix.

Agents live in task-named modules of this package and are found by autodiscovery
(``autodiscover=True`` scans ``streams``). The app object exists at import time, as Faust
requires, but holds no configuration until ``configure(settings)`` is called by the CLI
(or a test) before the worker starts: no module reads the environment at import.

``streams.role`` picks what a worker runs. ``all`` discovers the whole package. ``dedup``
discovers only ``streams.agents``; ``store`` only ``streams.sinks``, under the app id
``{app_id}-store``: a consumer group must not mix workers that subscribe to different
topics, so the sinks get a group of their own.
"""

from __future__ import annotations

import gc
import logging
import warnings
from typing import Any

import faust
import prometheus_client
from faust.exceptions import AlreadyConfiguredWarning

from core import topics
from core.errors import ConfigError
from core.settings import Settings
from streams import offsets

# The id names the consumer group and the changelog topics; it is part of the deployment.
app = faust.App(
    "cityfix-streams",
    autodiscover=True,
    origin="streams",
)


_settings: Settings | None = None


def configure(settings: Settings) -> faust.App:
    """Point the app at the configured Kafka and data directory."""
    global _settings
    app_id = settings.streams.worker_app_id
    if app.configured and app.conf.id != app_id:
        raise ConfigError(
            f"streams app already configured as {app.conf.id!r}; "
            "call configure() before importing the agents"
        )
    _settings = settings
    # The id names the consumer group, the changelog topics and the internal topics, so
    # it must be set before the first table or agent topic is declared; Faust only takes
    # it from the constructor, hence the default options are replaced here.
    app._default_options = (app_id, app._default_options[1])
    modules = ROLE_MODULES[settings.streams.role]
    conf: dict[str, Any] = {
        "broker": f"kafka://{settings.kafka.bootstrap}",
        "datadir": str(settings.streams.data_dir),
        "web_port": settings.streams.web_port,
        "web_host": "127.0.0.1",
        "producer_acks": -1,
        "topic_partitions": settings.kafka.default_partitions,
        "topic_replication_factor": 1,
        "table_standby_replicas": 0,
        # Local table state in RocksDB (through rocksdict); the changelog topics stay the
        # source of truth, so a worker on a fresh disk recovers from them.
        "store": settings.streams.store,
        # Table changelogs and outputs are many small records: batch them per partition
        # (a few ms of linger) instead of one produce round trip per record.
        "producer_linger": settings.streams.producer_linger_ms / 1000.0,
        "producer_max_batch_size": 512 * 1024,
        # How soon a crashed worker's partitions move to the others.
        "broker_session_timeout": settings.streams.broker_session_timeout_s,
        "broker_heartbeat_interval": settings.streams.broker_heartbeat_interval_s,
        # Which modules autodiscovery imports (see the module docstring).
        "autodiscover": True if modules is None else list(modules),
        "origin": "streams" if modules is None else None,
    }
    with warnings.catch_warnings():
        # Declaring a topic at import (agents, sinks) configures the app with defaults;
        # re-applying the real settings afterwards is what this function is for.
        warnings.simplefilter("ignore", AlreadyConfiguredWarning)
        app.config_from_object(conf)
    # Every topic a worker consumes that has delete retention: offsets without holes, so
    # a hole in what the streams acknowledged is a skipped record (see streams.offsets).
    contiguous = {t.name for t in topics.KAFKA_TOPICS if not t.compacted}
    offsets.install(
        app,
        contiguous | {f"{app_id}-dedup-cells"},
        settings.streams.offset_hole_repair_s,
    )
    global _metrics_page
    if not _metrics_page:  # declared here: a page declared at import configures the app
        _metrics_page = True
        app.page("/metrics")(_metrics)
    return app


_metrics_page = False


async def _metrics(view: Any, request: Any) -> Any:
    """The worker's Prometheus metrics (text format) on its web port."""
    return view.bytes(prometheus_client.generate_latest(), content_type="text/plain")


# Python's cyclic garbage collector, tuned for a worker (see ``settle_heap``): a young
# collection every this many net allocations instead of 700, and each older generation
# collected after this many of the one below instead of 10.
_GC_YOUNG_THRESHOLD = 20_000
_GC_OLDER_THRESHOLD = 20


def settle_heap() -> None:
    """Keep the garbage collector off the worker's long-lived objects.

    A worker loads the city (road graph, spatial index, POIs) and Faust's own machinery
    once, then allocates short-lived objects per message. Left alone, the collector keeps
    traversing the loaded objects: a full collection is a pause of tens of milliseconds in
    the one thread that handles every message, which is most of the tail of the
    raw -> incident latency (bench_streams at 1,000 events/s: p99 234-371 ms over four
    runs before, 79-194 ms over nine runs after). Frozen objects (``gc.freeze``) are never
    traversed again; the larger thresholds make the remaining collections rarer.
    Per-message objects are freed by reference counting either way; only cycles wait for
    a collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, _GC_OLDER_THRESHOLD, _GC_OLDER_THRESHOLD)
    logging.getLogger(__name__).info(
        "heap settled", extra={"frozen_objects": gc.get_freeze_count()}
    )


@app.task
async def _settle_heap_when_started() -> None:
    """Once the worker's services are up: everything loaded so far stays for good."""
    settle_heap()


#: The modules each ``streams.role`` discovers (None: the whole package).
ROLE_MODULES: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "dedup": ("streams.agents",),
    "store": ("streams.sinks",),
}


def settings() -> Settings:
    """The settings ``configure`` was given (agents read their thresholds here)."""
    if _settings is None:
        raise RuntimeError("streams.app.configure(settings) was not called")
    return _settings
