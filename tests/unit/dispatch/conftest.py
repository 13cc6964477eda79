"""Dispatch unit tests share one pytest process with the others."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dispatch import solver


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
