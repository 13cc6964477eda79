"""Storage: the schema and its migrations, batched idempotent writers, read queries.

TimescaleDB when the extension is installed, plain PostgreSQL otherwise; the same
queries work in both (see ``store.schema``).
"""

from store.schema import (
    AGGREGATES,
    MODES,
    Mode,
    applied_migrations,
    apply_retention,
    detect_mode,
    migrate,
    pending_migrations,
    plain_upkeep,
    refresh_aggregates,
)

__all__ = [
    "AGGREGATES",
    "MODES",
    "Mode",
    "applied_migrations",
    "apply_retention",
    "detect_mode",
    "migrate",
    "pending_migrations",
    "plain_upkeep",
    "refresh_aggregates",
]
