"""Fixtures of the bridge tests: isolated bridge processes and throw-away MQTT identities."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from cli import mosquitto
from cli.mosquitto import IdentityKind
from core.errors import NotFound
from core.settings import Settings
from tests.integration.ingest.helpers import Bridges

MakeIdentity = Callable[[IdentityKind, str], tuple[str, str]]


@pytest.fixture
def bridges(settings: Settings, uid: str, tmp_path) -> Iterator[Bridges]:
    """Starts ``cityfix ingest`` processes; stops them and ends their sessions afterwards."""
    b = Bridges(settings, uid, tmp_path)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def identity(settings: Settings, uid: str) -> Iterator[MakeIdentity]:
    """``identity(kind, name)`` -> (id, password): a unique identity, revoked afterwards."""
    made: list[str] = []

    def make(kind: IdentityKind, name: str) -> tuple[str, str]:
        ident = f"{name}-{uid}"
        password = mosquitto.add_identity(settings, kind, ident)
        made.append(ident)
        return ident, password

    yield make
    for ident in made:
        with contextlib.suppress(NotFound):
            mosquitto.revoke_identity(settings, ident)
