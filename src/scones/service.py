"""`scones up` and the demo's endpoint: child processes started, supervised and stopped together.

`scones up` runs the endpoint and the dashboard as `scones` subprocesses and the watcher in
its own process. A supervisor thread notices a child that dies after it started, says why
(exit code or signal, and the last lines of its log), and restarts it with exponential
backoff. A child that keeps dying (more than ``RestartPolicy.max_restarts`` times, each
within ``stable_after_s`` of its start) makes the whole service stop with a non-zero exit,
as a process supervisor gives up on a crash loop. Logs are files under ``<home>/logs``
that outlive the service, so the lines before a crash are still there to read.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from scones.errors import ParameterError, SconesError
from scones.review.actions import ReviewConfig, review_hook
from scones.serving.client import model_routing_threshold
from scones.times import iso_z, utc_now
from scones.workflow.watch import watch_store

LOG_TAIL_LINES = 20


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServiceError(SconesError):
    """A service did not start, or stopped on its own."""


def describe_exit(returncode: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class ChildProcess:
    """One `scones <command>` subprocess, ready once ``ready_url`` answers 200.

    Its output goes to ``log_path`` (appended, kept after it stops) or, without one, to a
    temporary file deleted when it stops. ``start`` may be called again after it died.
    """

    name: str
    argv: list[str]
    ready_url: str
    start_timeout: float = 120.0
    stop_timeout: float = 30.0
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() of the last start
    _log: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def scones(
        cls, name: str, args: list[str], *, ready_url: str, log_path: Path | None = None
    ) -> ChildProcess:
        return cls(name, [sys.executable, "-m", "scones", *args], ready_url, log_path=log_path)

    def _open_log(self) -> IO[bytes]:
        if self._log is None:
            if self.log_path is None:
                # Kept open for the child's lifetime; closed (and deleted) by stop().
                self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
                    prefix=f"scones-{self.name}-", suffix=".log"
                )
            else:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = self.log_path.open("ab")
        return self._log

    @property
    def log_name(self) -> str:
        """Where the child's output goes."""
        if self.log_path is not None:
            return str(self.log_path)
        return self._log.name if self._log is not None else "(no log yet)"

    def start(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Start the child and wait until it is ready; ``cancelled`` aborts the wait."""
        log = self._open_log()
        log.write(f"--- {iso_z(utc_now())} scones: starting {self.name} ---\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        self.started_at = time.monotonic()
        deadline = self.started_at + self.start_timeout
        while time.monotonic() < deadline and not cancelled():
            if self.process.poll() is not None:
                raise ServiceError(
                    f"{self.name} {describe_exit(self.process.returncode)} while starting "
                    f"(log: {self.log_name}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        if cancelled():
            raise ServiceError(f"{self.name}: start cancelled")
        raise ServiceError(
            f"{self.name} not ready at {self.ready_url} after {self.start_timeout:.0f} s"
        )

    def returncode(self) -> int | None:
        """None while it runs (or never started); its exit status once it has exited."""
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
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


@dataclass(frozen=True)
class RestartPolicy:
    """How a child that died is restarted: exponential backoff, a bounded number of times."""

    max_restarts: int = 5  # restarts in a row (each soon after the last) before giving up
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0  # a child that ran this long starts its count afresh

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ParameterError(
                f"{{max_restarts}} {self.max_restarts} must be 0 or more", "max_restarts"
            )

    def delay_s(self, restart: int) -> float:
        """Seconds to wait before restart number ``restart`` (1, 2, ...): 1, 2, 4 ... capped."""
        return min(self.first_delay_s * 2 ** (restart - 1), self.max_delay_s)


class Supervisor:
    """A thread that restarts children that die; ``failure`` says why it gave up, if it did."""

    def __init__(
        self,
        children: list[ChildProcess],
        policy: RestartPolicy,
        announce: Callable[[str], None],
        on_give_up: Callable[[], None],
        poll_s: float = 0.2,
    ) -> None:
        self.children = children
        self.policy = policy
        self.announce = announce
        self.on_give_up = on_give_up
        self.poll_s = poll_s
        self.failure: str | None = None
        self.restarts = {child.name: 0 for child in children}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scones-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop_restarting(self) -> None:
        """No more restarts from now on (safe in a signal handler: it does not wait)."""
        self._stopping.set()

    def stop(self) -> None:
        """No more restarts; returns once the thread has finished (a start in flight aborts)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_s):
            for child in self.children:
                code = child.returncode()
                if code is None or self._stopping.is_set():
                    continue
                if not self._restart(child, code):
                    return

    def _restart(self, child: ChildProcess, code: int) -> bool:
        """Restart ``child`` after backoff; False once it has died too often (gave up)."""
        ran_s = time.monotonic() - child.started_at
        if ran_s >= self.policy.stable_after_s:
            self.restarts[child.name] = 0
        count = self.restarts[child.name] = self.restarts[child.name] + 1
        why = f"{child.name} {describe_exit(code)} after {ran_s:.0f} s"
        tail = child.log_tail()
        lines = f"last lines of {child.log_name}:\n{tail}" if tail else f"log: {child.log_name}"
        if count > self.policy.max_restarts:
            self.failure = (
                f"{child.name} died {count} times in a row, more than the "
                f"{self.policy.max_restarts} restarts allowed; stopped everything "
                f"(log: {child.log_name})"
            )
            self.announce(f"{why}; giving up and stopping everything. {lines}")
            self.on_give_up()
            return False
        delay = self.policy.delay_s(count)
        self.announce(
            f"{why}; restarting it in {delay:.1f} s "
            f"(restart {count} of at most {self.policy.max_restarts}). {lines}"
        )
        if self._stopping.wait(delay):
            return True
        try:
            child.start(cancelled=self._stopping.is_set)
        except ServiceError as exc:  # it died again while starting: the next poll sees it
            self.announce(str(exc))
            return True
        self.announce(f"{child.name}: restarted, ready at {child.ready_url}")
        return True


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
    log_dir: Path
    threshold_from_model: bool = False  # SCONES_THRESHOLD=model: ask the started endpoint
    host: str = "127.0.0.1"
    port: int = 8080
    dashboard_port: int = 8090
    prefix: str = "incoming/"
    concurrency: int = 4
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    s3_endpoint_url: str | None = None
    classes: tuple[str, ...] = ("bicycle", "motorcycle")  # what reviewers label unsure photos


def service_children(options: ServiceOptions) -> list[ChildProcess]:
    """The endpoint and (unless its port is 0) the dashboard, as `scones` subprocesses."""
    host = options.host
    where = ["--host", host, "--store", options.store_uri]
    children = [
        ChildProcess.scones(
            "endpoint",
            ["serve", "--model", options.model, "--port", str(options.port), *where],
            ready_url=f"http://{host}:{options.port}/ping",
            log_path=options.log_dir / "endpoint.log",
        )
    ]
    if options.dashboard_port:
        children.append(
            ChildProcess.scones(
                "dashboard",
                ["dashboard", "--port", str(options.dashboard_port), *where],
                ready_url=f"http://{host}:{options.dashboard_port}/",
                log_path=options.log_dir / "dashboard.log",
            )
        )
    return children


def run_service(options: ServiceOptions, announce: Callable[[str], None]) -> None:
    """Start the endpoint and dashboard, then watch the prefix until SIGTERM; stop all.

    Raises ServiceError when a child fails to start, or keeps dying and the supervisor
    gives up (the service then stops as a whole, after running executions finish).
    """
    children = service_children(options)
    supervisor: Supervisor | None = None
    try:
        for child in children:
            child.start()
            announce(f"{child.name}: {child.ready_url} (log: {child.log_name})")
        endpoint_url = f"http://{options.host}:{options.port}"
        threshold = options.threshold
        if options.threshold_from_model:
            threshold = model_routing_threshold(endpoint_url, options.threshold)
            announce(f"routing threshold: {threshold:g} (SCONES_THRESHOLD=model)")
        review = ReviewConfig(options.db_path, options.classes, options.s3_endpoint_url)
        with review_hook(review, options.store_uri, endpoint_url) as hook:
            watcher = watch_store(
                options.store_uri,
                options.db_path,
                prefix=options.prefix,
                endpoint_url=endpoint_url,
                threshold=threshold,
                max_concurrency=options.concurrency,
                poll_seconds=0.5,
                s3_endpoint_url=options.s3_endpoint_url,
                on_finished=hook,  # threshold failures become review items
            )
            supervisor = Supervisor(children, options.restart, announce, on_give_up=watcher.stop)
            supervisor.start()
            announce(f"watching {watcher.store.uri_for(options.prefix)}")
            run_until_signalled(watcher, on_stop=supervisor.stop_restarting)
    finally:
        if supervisor is not None:
            supervisor.stop()
        for child in children:
            child.stop()
    if supervisor is not None and supervisor.failure:
        raise ServiceError(supervisor.failure)
