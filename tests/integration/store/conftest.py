"""Each store test gets a database of its own, created as the cityfix role and dropped after."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from core.settings import PostgresSettings, Settings


def _admin(settings: Settings) -> psycopg.Connection:
    return psycopg.connect(settings.pg.dsn, autocommit=True, connect_timeout=10)


@pytest.fixture
def pg(settings: Settings, uid: str) -> Iterator[PostgresSettings]:
    """Settings of a fresh, empty database ``cityfix_test_<uid>``."""
    name = f"cityfix_test_{uid}"
    with _admin(settings) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield settings.pg.model_copy(update={"database": name})
    finally:
        with _admin(settings) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def conn(pg: PostgresSettings) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database."""
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        yield c


@pytest.fixture
def timescaledb_available(conn: psycopg.Connection) -> bool:
    """Whether this server can run the TimescaleDB mode."""
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None
