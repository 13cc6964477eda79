"""Integration tests talk to the real local servers started by ``cityfix services up``.

``make test`` brings them up before pytest runs; here we only check that they answer and
fail loudly (never skip) when they do not.
"""

from __future__ import annotations

import uuid

import pytest

from cli import services
from core.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    # The end-to-end demo runs first, on a city no other test has filled with incidents:
    # the compacted `incidents` topic keeps every test's incidents, and the dispatcher
    # plans all open ones.
    items.sort(key=lambda item: "test_demo_smoke" not in str(item.fspath))


@pytest.fixture(scope="session", autouse=True)
def _servers_up(settings: Settings) -> None:
    down = [s.name for s in services.status(settings) if not s.running]
    if down:
        pytest.fail(
            f"services not answering: {', '.join(down)}; run `make services-up` first",
            pytrace=False,
        )


@pytest.fixture
def uid() -> str:
    """A short unique suffix for ids, topics and groups, so tests never collide."""
    return uuid.uuid4().hex[:10]
