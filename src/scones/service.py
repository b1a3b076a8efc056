"""`scones up` and the demo's endpoint: child processes started, supervised and stopped together."""

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from scones.errors import SconesError
from scones.workflow.watch import watch_store


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


class Stoppable(Protocol):
    """What runs in the foreground until signalled: the watcher (``run`` returns after ``stop``)."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


def run_until_signalled(foreground: Stoppable, on_stop: Callable[[], None] | None = None) -> None:
    """Run ``foreground`` until SIGTERM/SIGINT stops it (and calls ``on_stop`` first)."""

    def _stop(signum: int, frame: object) -> None:
        if on_stop is not None:
            on_stop()
        foreground.stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        foreground.run()  # returns after stop(), once running executions have finished
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class ServiceOptions:
    """What `scones up` runs: an endpoint, a dashboard (port 0: none), a watcher."""

    model: str
    store_uri: str
    db_path: Path
    threshold: float
    host: str = "127.0.0.1"
    port: int = 8080
    dashboard_port: int = 8090
    prefix: str = "incoming/"
    concurrency: int = 4
    s3_endpoint_url: str | None = None


def service_children(options: ServiceOptions) -> list[ChildProcess]:
    """The endpoint and (unless its port is 0) the dashboard, as `scones` subprocesses."""
    host = options.host
    where = ["--host", host, "--store", options.store_uri]
    children = [
        ChildProcess.scones(
            "endpoint",
            ["serve", "--model", options.model, "--port", str(options.port), *where],
            ready_url=f"http://{host}:{options.port}/ping",
        )
    ]
    if options.dashboard_port:
        children.append(
            ChildProcess.scones(
                "dashboard",
                ["dashboard", "--port", str(options.dashboard_port), *where],
                ready_url=f"http://{host}:{options.dashboard_port}/",
            )
        )
    return children


def run_service(options: ServiceOptions, announce: Callable[[str], None]) -> None:
    """Start the endpoint and dashboard, then watch the prefix until SIGTERM; stop all."""
    children = service_children(options)
    try:
        for child in children:
            child.start()
            announce(f"{child.name}: {child.ready_url}")
        watcher = watch_store(
            options.store_uri,
            options.db_path,
            prefix=options.prefix,
            endpoint_url=f"http://{options.host}:{options.port}",
            threshold=options.threshold,
            max_concurrency=options.concurrency,
            poll_seconds=0.5,
            s3_endpoint_url=options.s3_endpoint_url,
        )
        announce(f"watching {watcher.store.uri_for(options.prefix)}")
        run_until_signalled(watcher)
    finally:
        for child in children:
            child.stop()
