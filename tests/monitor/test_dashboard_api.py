"""The dashboard's HTTP API on a real uvicorn server: state, images, headers, bad requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from monitor_helpers import T0, capture_record, minutes, write_capture_file

from conftest import free_port, solid_png
from scones.dashboard.app import DashboardConfig, create_app
from scones.monitor.runner import MonitorOptions

SCONES = str(Path(sys.executable).with_name("scones"))


@pytest.fixture
def dashboard(tmp_path) -> Iterator[tuple[str, Path]]:
    import uvicorn

    capture = tmp_path / "capture"
    capture.mkdir()
    config = DashboardConfig(
        monitor=MonitorOptions(capture_uri=str(capture), endpoint_name="scones-endpoint"),
        db_path=tmp_path / "no-such.db",
        window=None,
        refresh_seconds=1.0,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config), host="127.0.0.1", port=port, log_level="warning", ws="none"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", capture
    finally:
        server.should_exit = True
        thread.join(10)


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def test_state_follows_the_capture_and_serves_failed_images(dashboard):
    url, capture = dashboard
    status, headers, body = get(url + "/api/state")
    assert status == 200
    state = json.loads(body)
    assert state["traffic"]["records"]["total"] == 0
    assert state["traffic"]["gallery"] == []
    assert state["executions"]["available"] is False
    assert "no executions database" in state["executions"]["message"]
    assert "default-src 'self'" in headers["content-security-policy"]

    grey = solid_png((128, 128, 128), size=(20, 10))
    write_capture_file(
        capture,
        [
            capture_record(solid_png((200, 30, 30)), [0.99, 0.01], T0),
            capture_record(grey, [0.5, 0.5], T0 + minutes(1), event_id="grey-event"),
        ],
    )
    state = json.loads(get(url + "/api/state")[2])
    assert state["traffic"]["records"]["total"] == 2
    assert [item["event_id"] for item in state["traffic"]["gallery"]] == ["grey-event"]
    status, headers, png = get(url + state["traffic"]["gallery"][0]["image_url"])
    assert status == 200 and headers["content-type"] == "image/png"
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(png)).size == (20, 10)


@pytest.mark.parametrize(
    "path",
    ["/api/images/unknown.png", "/api/images/..%2F..%2Fetc%2Fpasswd.png", "/static/../cli.py"],
)
def test_unknown_images_and_files_are_404(dashboard, path):
    url, _ = dashboard
    status, _, _ = get(url + path)
    assert status == 404


def test_static_page_and_script_are_served(dashboard):
    url, _ = dashboard
    status, headers, body = get(url + "/")
    assert status == 200 and b"/static/dashboard.js" in body
    status, headers, body = get(url + "/static/dashboard.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "forever"], "--window 'forever' is not an age"),
        (["--port", "70000"], "--port 70000 is not a TCP port"),
        (["--refresh", "0"], "--refresh 0.0 is too short"),
        (["--model", "/no/such/model"], "--model '/no/such/model' cannot be used"),
    ],
)
def test_bad_dashboard_flags_fail_with_one_line(tmp_path, args, message):
    env = {**os.environ, "SCONES_HOME": str(tmp_path)}
    result = subprocess.run(
        [SCONES, "dashboard", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr


def test_window_limits_the_traffic(tmp_path):
    from scones.dashboard.app import DashboardState

    capture = tmp_path / "capture"
    now = datetime.now(UTC)
    for moment in (now - timedelta(hours=3), now - timedelta(minutes=1)):
        write_capture_file(capture, [capture_record(solid_png((9, 9, 9)), [0.5, 0.5], moment)])
    options = MonitorOptions(capture_uri=str(capture), endpoint_name="scones-endpoint")
    recent = DashboardState(DashboardConfig(options, tmp_path / "db", window=timedelta(hours=1)))
    everything = DashboardState(DashboardConfig(options, tmp_path / "db", window=None))
    assert recent.traffic().state["records"]["total"] == 1
    assert everything.traffic().state["records"]["total"] == 2
