"""`scones up`: endpoint, watcher and dashboard start together and stop together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import REPO_ROOT, free_port, solid_png
from scones.review.queue import ReviewQueue
from scones.workflow.executions import ExecutionStore


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status


def test_up_classifies_a_dropped_image_and_stops_cleanly(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    port, dashboard_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scones",
            "up",
            "--model",
            str(tiny_model_dir),
            "--port",
            str(port),
            "--dashboard-port",
            str(dashboard_port),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        incoming = home / "store" / "incoming"
        while not incoming.is_dir():  # the watcher creates it once it is watching
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "scones up did not start"
            time.sleep(0.1)
        assert _get(f"http://127.0.0.1:{port}/ping") == 200
        assert _get(f"http://127.0.0.1:{dashboard_port}/") == 200

        (incoming / "bike.png").write_bytes(solid_png((200, 30, 30)))
        record = None
        while record is None:
            assert time.monotonic() < deadline, "the dropped image was not classified"
            with ExecutionStore(home / "scones.db") as executions:
                done = [r for r in executions.list() if r.status != "RUNNING"]
            record = done[0] if done else None
            time.sleep(0.05)
        assert record.status == "SUCCEEDED"
        assert record.input["s3_key"] == "incoming/bike.png"

        # An unsure photo fails loudly and waits on the dashboard's review page.
        (incoming / "grey.png").write_bytes(solid_png((128, 128, 128)))
        items: list = []
        while not items:
            assert time.monotonic() < deadline, "the unsure image was not queued for review"
            with ReviewQueue(home / "scones.db", classes=("bicycle", "motorcycle")) as queue:
                items = queue.items()
            time.sleep(0.05)
        assert [item.image_key for item in items] == ["incoming/grey.png"]
        assert _get(f"http://127.0.0.1:{dashboard_port}/review") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output
    for url in (f"http://127.0.0.1:{port}/ping", f"http://127.0.0.1:{dashboard_port}/"):
        try:
            _get(url)
        except OSError:
            continue
        raise AssertionError(f"{url} still answers after scones up stopped")
