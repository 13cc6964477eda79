"""``cityfix`` subprocesses for the integration tests; each ends with the test run.

A test run stopped from outside (Ctrl-C twice, a kill, a CI timeout) skips its fixtures'
teardown; a worker or bridge left running reconnects to the next run's broker on the
same port and takes a share of its messages.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parents[2]
CITYFIX = REPO / ".venv" / "bin" / "cityfix"

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the kernel kills the child once the process that started it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class CityfixProcess:
    """One ``cityfix ARGS...`` subprocess with its output appended to ``log_path``."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **popen: Any) -> Self:
        """Start it (``popen``: more ``subprocess.Popen`` arguments)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(CITYFIX), *self.args],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                **popen,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, SIGKILL after ``timeout_s``; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def output(self) -> str:
        """Everything it has logged ("" before it has)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log(self, chars: int = 4000) -> str:
        """The end of its log, for an assertion's message."""
        return self.output()[-chars:]
