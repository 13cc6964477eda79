"""The API against the real servers: a fresh database per test module, real Kafka and MQTT.

``api_settings`` points ``settings.pg.database`` at ``cityfix_api_<uid>``, migrated by
``store``; ``client`` is a TestClient running the app's lifespan (pool, MQTT, Kafka).
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from api.app import create_app
from api.auth import Role, hash_password, issue_token, key_digest, new_api_key
from core.settings import Settings
from store import queries
from store.schema import migrate

with warnings.catch_warnings():
    # starlette 1.x prefers httpx2 for its TestClient; httpx works the same here.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _admin(settings: Settings) -> psycopg.Connection:
    return psycopg.connect(settings.pg.dsn, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="module")
def api_settings(settings: Settings) -> Iterator[Settings]:
    """Settings whose database is a fresh, migrated ``cityfix_api_<uid>``."""
    name = f"cityfix_api_{uuid.uuid4().hex[:10]}"
    with _admin(settings) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    pg = settings.pg.model_copy(update={"database": name})
    api = settings.api.model_copy(
        update={
            "post_rate_per_min": 10_000,
            "post_rate_per_address_per_min": 10_000,
            "jurisdiction_id": "porto.test",
        }
    )
    # The default city (Porto): requests are posted at places on its roads.
    test_settings = settings.model_copy(update={"pg": pg, "api": api})
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        migrate(conn)
    try:
        yield test_settings
    finally:
        with _admin(settings) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module")
def db(api_settings: Settings) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the module's database."""
    with psycopg.connect(api_settings.pg.dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def client(api_settings: Settings) -> Iterator[TestClient]:
    """The app, started (lifespan) against the real servers."""
    with TestClient(create_app(api_settings), client=("203.0.113.7", 50000)) as c:
        yield c


@pytest.fixture(scope="module")
def api_key(db: psycopg.Connection) -> str:
    """A valid Open311 API key named ``test-app``."""
    key = new_api_key()
    queries.create_api_key(db, "test-app", key_digest(key))
    return key


@dataclass(frozen=True)
class Users:
    """A user and a bearer token per role."""

    tokens: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module")
def users(db: psycopg.Connection, api_settings: Settings) -> Users:
    """One user per role, with a token each (passwords: ``<role>-password``)."""
    from datetime import UTC, datetime

    tokens = {}
    for role in ("viewer", "dispatcher", "admin"):
        queries.create_user(db, f"{role}1", hash_password(f"{role}-password"), role)
        tokens[role] = issue_token(
            f"{role}1",
            Role(role),
            secret=api_settings.api.secret_key.get_secret_value(),
            ttl_s=600,
            now=datetime.now(UTC),
        )
    return Users(tokens)
