"""Fixtures for the endpoint tests: a real uvicorn server on a free loopback port.

Test modules import the fixtures they use by name (a second conftest.py would shadow the
shared one's helpers, which tests import as ``conftest``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from scones.serving.app import EndpointState, create_app
from scones.serving.batcher import BatchClock
from scones.serving.config import ServeConfig

# How long uvicorn may take to bind and start: a bound on a hang, not a speed goal.
START_TIMEOUT_S = 60.0


@dataclass
class RunningEndpoint:
    url: str
    state: EndpointState
    capture_dir: Path | None

    def stop(self) -> None:  # replaced by the fixture
        raise NotImplementedError


def wait_for_ping(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/ping", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise AssertionError(f"endpoint {url} never became ready: {last}")


def start_endpoint(
    config: ServeConfig, *, wait: bool = True, batch_clock: BatchClock | None = None
) -> tuple[RunningEndpoint, Callable[[], None]]:
    """Run the app on real uvicorn in a thread; returns the endpoint and its stop function."""
    import uvicorn

    port = free_port()
    app = create_app(config, batch_clock=batch_clock)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not stop"

    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        if not server.started:
            why = "exited" if not thread.is_alive() else f"not up after {START_TIMEOUT_S:.0f} s"
            raise AssertionError(f"uvicorn on {url} {why}")
        if wait:
            wait_for_ping(url)
    except AssertionError:
        stop()
        raise

    capture = Path(config.capture_uri) if config.capture_uri else None
    return RunningEndpoint(url, app.state.endpoint, capture), stop


@pytest.fixture(name="make_endpoint")
def make_endpoint_fixture(tmp_path: Path) -> Iterator[Callable[..., RunningEndpoint]]:
    """Start endpoints with ServeConfig overrides; all stop at teardown."""
    stops: list[Callable[[], None]] = []

    def make(
        model_dir: Path, *, batch_clock: BatchClock | None = None, **overrides: object
    ) -> RunningEndpoint:
        values: dict[str, object] = {
            "model_dir": model_dir,
            "capture_uri": str(tmp_path / f"capture-{len(stops)}"),
            "max_batch_delay_ms": 2.0,
        }
        values.update(overrides)
        endpoint, stop = start_endpoint(
            ServeConfig(**values),  # type: ignore[arg-type]
            batch_clock=batch_clock,
        )
        endpoint.stop = stop  # type: ignore[method-assign]
        stops.append(stop)
        return endpoint

    yield make
    for stop in stops:
        stop()


@pytest.fixture(name="endpoint")
def endpoint_fixture(
    make_endpoint: Callable[..., RunningEndpoint], tiny_model_dir: Path
) -> RunningEndpoint:
    return make_endpoint(tiny_model_dir)


def read_capture_records(folder: Path) -> list[dict]:
    import json

    records = []
    for path in sorted(folder.rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            records.append(json.loads(line))
    return records
