"""Dispatch unit tests share one pytest process with the others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import geo
from core.settings import GeoSettings
from dispatch import solver

DATA = Path(__file__).resolve().parents[3] / "data" / "osm"


@pytest.fixture(scope="module")
def ags(tmp_path_factory: pytest.TempPathFactory) -> geo.RoadGraph:
    """The small test city's road graph, built once per module."""
    settings = GeoSettings(
        city="aguascalientes", osm_dir=DATA, cache_dir=tmp_path_factory.mktemp("geo-cache")
    )
    return geo.load_city(settings)


@pytest.fixture(autouse=True, scope="module")
def _stop_the_solver_helper() -> Iterator[None]:
    """Stop the helper process a parted solve starts, with its pool's thread.

    Left running, the thread would keep later tests' graphs from forking their matrix
    workers (``geo.routing`` forks only from a process with no other thread).
    """
    yield
    pool = solver._helpers
    if pool is not None:
        solver._helpers = None
        pool.shutdown(wait=True)
