"""Child processes that `scones up` and `scones demo` start, wait for, and stop together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import IO

from scones.errors import SconesError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServiceError(SconesError):
    """A service did not start, or stopped on its own."""


@dataclass
class ChildProcess:
    """One `scones <command>` subprocess, ready once ``ready_url`` answers 200."""

    name: str
    argv: list[str]
    ready_url: str
    start_timeout: float = 120.0
    stop_timeout: float = 30.0
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def scones(cls, name: str, args: list[str], *, ready_url: str) -> ChildProcess:
        return cls(name, [sys.executable, "-m", "scones", *args], ready_url)

    def start(self) -> None:
        # Kept open for the child's lifetime; closed (and deleted) by stop().
        self._log = tempfile.NamedTemporaryFile(prefix=f"scones-{self.name}-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with code {self.process.returncode} while starting:\n"
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ServiceError(
            f"{self.name} not ready at {self.ready_url} after {self.start_timeout:.0f} s"
        )

    def log_tail(self, lines: int = 20) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.name, "rb") as handle:
            return "\n".join(handle.read().decode("utf-8", "replace").splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM, wait for a graceful exit, SIGKILL past ``stop_timeout``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code
