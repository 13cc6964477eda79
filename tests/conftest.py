"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import pytest

from core.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings the test run uses (read once, like a service would)."""
    return Settings()
