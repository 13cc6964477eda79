"""Processes the integration tests start end with the test run.

A test run stopped from outside (Ctrl-C twice, a kill, a CI timeout) skips its fixtures'
teardown; a worker or bridge left running reconnects to the next run's broker on the
same port and takes a share of its messages.
"""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the kernel kills the child once the process that started it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
