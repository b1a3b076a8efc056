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


def _endpoint_pid(up: subprocess.Popen[bytes]) -> int | None:
    """The `scones serve` child of `scones up`, if one runs now."""
    import psutil

    for child in psutil.Process(up.pid).children():
        try:
            if "serve" in child.cmdline():
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return None


def _wait_for(condition, what: str, deadline: float, up: subprocess.Popen[bytes], log: Path):
    while not (value := condition()):
        assert up.poll() is None or what.startswith("exit"), log.read_text()
        assert time.monotonic() < deadline, f"{what}:\n{log.read_text()}"
        time.sleep(0.1)
    return value


def test_up_restarts_a_dead_endpoint_then_gives_up_on_a_crash_loop(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import psutil

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    port, dashboard_port = free_port(), free_port()
    output = tmp_path / "up.out"
    with output.open("wb") as sink:
        up = subprocess.Popen(
            [
                *(sys.executable, "-m", "scones", "up", "--model", str(tiny_model_dir)),
                *("--port", str(port), "--dashboard-port", str(dashboard_port)),
                *("--max-restarts", "1"),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    ping = f"http://127.0.0.1:{port}/ping"

    def answers(url: str) -> bool:
        try:
            return _get(url) == 200
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 180
        _wait_for(lambda: "watching" in output.read_text(), "up started", deadline, up, output)
        first = _endpoint_pid(up)
        assert first is not None and answers(ping)

        os.kill(first, signal.SIGKILL)  # dies after start: it must be noticed and restarted
        # The supervisor says so once its own health check passes, which may come after ours.
        _wait_for(
            lambda: (
                _endpoint_pid(up) not in (None, first)
                and answers(ping)
                and "endpoint: restarted" in output.read_text()
            ),
            "the endpoint was not restarted",
            deadline,
            up,
            output,
        )
        text = output.read_text()
        assert "endpoint was killed by SIGKILL" in text
        assert "restarting it in 1.0 s (restart 1 of at most 1)" in text
        assert "endpoint: restarted" in text
        assert answers(f"http://127.0.0.1:{dashboard_port}/")

        second = _endpoint_pid(up)
        assert second is not None
        os.kill(second, signal.SIGKILL)  # again at once: a crash loop, past --max-restarts 1
        _wait_for(lambda: up.poll() is not None, "exit after giving up", deadline, up, output)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)
    text = output.read_text()
    assert up.returncode == 1, text
    assert "giving up and stopping everything" in text
    assert "error: endpoint died 2 times in a row, more than the 1 restarts allowed" in text
    assert not answers(f"http://127.0.0.1:{dashboard_port}/")  # everything stopped
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == "zombie"
    log = home / "logs" / "endpoint.log"  # kept, with every start's lines
    assert log.read_text().count("scones: starting endpoint ---") == 2
    assert f"last lines of {log}" in text


def test_up_routes_with_the_served_models_threshold_when_told_to(tmp_path: Path) -> None:
    from conftest import build_tiny_model
    from scones.model.artifact import MODEL_JSON, ModelCard

    model_dir = build_tiny_model(tmp_path / "model")
    card = ModelCard.model_validate_json((model_dir / MODEL_JSON).read_text())
    card.metrics["recommended_threshold"] = 0.4  # a grey photo (~0.5) passes it, not 0.93
    (model_dir / MODEL_JSON).write_text(card.model_dump_json())
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env.update(SCONES_HOME=str(home), SCONES_THRESHOLD="model")
    command = [sys.executable, "-m", "scones", "up", "--model", str(model_dir)]
    command += ["--port", str(free_port()), "--dashboard-port", "0"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        incoming = home / "store" / "incoming"
        while not incoming.is_dir():
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "scones up did not start"
            time.sleep(0.1)
        (incoming / "grey.png").write_bytes(solid_png((128, 128, 128)))
        done: list = []
        while not done:
            assert time.monotonic() < deadline, "the dropped image was not classified"
            with ExecutionStore(home / "scones.db") as executions:
                done = [r for r in executions.list() if r.status != "RUNNING"]
            time.sleep(0.05)
        assert done[0].status == "SUCCEEDED", done[0].cause
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    assert "routing threshold: 0.4 (SCONES_THRESHOLD=model)" in output
