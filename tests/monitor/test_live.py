"""Real traffic: a `scones serve` subprocess with data capture, the workflow's executions,
then `scones monitor` (exact counts, drift flagged) and `scones dashboard` in headless Chromium.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from monitor_helpers import baseline_for, model_with_baseline, varied_pngs

from browser_helpers import chromium, console_errors
from conftest import free_port, solid_png, wait_http

SCONES = str(Path(sys.executable).with_name("scones"))
RED, BLUE, GREY = solid_png((200, 30, 30)), solid_png((30, 30, 200)), solid_png((128, 128, 128))
BUCKET = "scones-monitor-test"


@pytest.fixture(scope="module")
def live_model(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with a baseline of textured 32x32 images, half each class."""
    images = varied_pngs(100, seed=1)
    baseline = baseline_for(
        images, [0.97] * 90 + [0.55] * 10, ["bicycle", "motorcycle"], [0] * 50 + [1] * 50
    )
    return model_with_baseline(tiny_model_dir, tmp_path_factory.mktemp("live-model"), baseline)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # graceful: the endpoint flushes its capture
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def endpoint(tmp_path, live_model) -> Iterator[tuple[str, Path]]:
    """`scones serve` on a free port, capturing to tmp_path/capture; yields (url, capture)."""
    capture = tmp_path / "capture"
    port = free_port()
    env = {**os.environ, "SCONES_HOME": str(tmp_path / "serve-home")}
    process = subprocess.Popen(
        [
            SCONES,
            "serve",
            "--model",
            str(live_model),
            "--port",
            str(port),
            "--capture-uri",
            str(capture),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/ping", process=process)
        yield url, capture
    finally:
        stop(process)


def post_image(url: str, image: bytes) -> list[float]:
    request = urllib.request.Request(
        url + "/invocations", data=image, headers={"Content-Type": "image/png"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def captured_records(capture: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in capture.rglob("*.jsonl"))


def wait_captured(capture: Path, expected: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while captured_records(capture) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert captured_records(capture) == expected


def run_workflow(tmp_path: Path, monkeypatch, url: str, images: dict[str, bytes]):
    """One single-image execution per image, through the real state machine and functions."""
    from scones.store import open_store
    from scones.workflow.executions import ExecutionStore
    from scones.workflow.runs import bucket_env_name, run_single_executions

    store_root = tmp_path / "bucket"
    store = open_store(str(store_root))
    for name, data in images.items():
        store.put(f"test/{name}.png", data)
    monkeypatch.setenv("SCONES_ENDPOINT_URL", url)
    monkeypatch.setenv("THRESHOLD", "0.93")
    monkeypatch.setenv(bucket_env_name(BUCKET), str(store_root))
    db_path = tmp_path / "scones.db"
    from scones.functions.classify_image import close_idle_connections

    try:
        with ExecutionStore(db_path) as db:
            records = run_single_executions(
                db, BUCKET, [f"test/{name}.png" for name in images], concurrency=2
            )
    finally:
        close_idle_connections()  # the function keeps connections alive, as on Lambda
    return db_path, {r.input["s3_key"]: r for r in records}


def test_monitor_counts_real_traffic_exactly_and_flags_shifted_images(
    tmp_path, monkeypatch, endpoint, live_model
):
    url, capture = endpoint
    direct = [RED] * 20 + [BLUE] * 12 + [GREY] * 8
    responses = [post_image(url, image) for image in direct]
    assert sum(max(p) < 0.93 for p in responses) == 8  # grey is unsure, red and blue confident
    grey_class = responses[-1].index(max(responses[-1]))  # deterministic for the same image
    _, executions = run_workflow(
        tmp_path, monkeypatch, url, {"red-1": RED, "red-2": RED, "grey-1": GREY}
    )
    assert executions["test/red-1.png"].status == "SUCCEEDED"
    assert executions["test/grey-1.png"].status == "FAILED"
    assert executions["test/grey-1.png"].error == "ThresholdConfidenceNotMet"
    wait_captured(capture, 43)

    out = tmp_path / "report"
    env = {**os.environ, "SCONES_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [
            SCONES,
            "monitor",
            "--capture-uri",
            str(capture),
            "--model",
            str(live_model),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    # Solid colours have no texture: the contrast of the traffic is far from the baseline's.
    assert result.returncode == 3, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    records = summary["records"]
    assert records["total"] == 43
    assert records["with_predictions"] == 43
    assert records["under_threshold"] == 9
    assert records["passed"] == 34
    assert records["under_threshold_share"] == pytest.approx(9 / 43)
    greys = 9
    assert summary["class_mix"]["counts"] == {
        "bicycle": 22 + (greys if grey_class == 0 else 0),
        "motorcycle": 12 + (greys if grey_class == 1 else 0),
    }
    assert sum(h["records"] for h in summary["volume_per_hour"]) == 43
    assert records["undecodable_images"] == 0 and summary["reader"]["malformed_lines"] == 0
    violations = json.loads((out / "constraint_violations.json").read_text())["violations"]
    assert "image_contrast" in {v["feature_name"] for v in violations}
    assert {p.name for p in out.iterdir()} == {
        "report.html",
        "confidence.png",
        "summary.json",
        "constraint_violations.json",
    }


@pytest.fixture
def browser(tmp_path) -> Iterator[object]:
    with chromium(tmp_path / "chromium-profile") as driver:
        yield driver


@pytest.mark.browser
def test_dashboard_shows_traffic_and_a_failed_image_after_a_failing_execution(
    tmp_path, monkeypatch, endpoint, live_model, browser
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, capture = endpoint
    for image in [RED] * 3 + [BLUE] * 2:
        post_image(url, image)
    wait_captured(capture, 5)
    db_path = tmp_path / "scones.db"
    port = free_port()
    env = {**os.environ, "SCONES_HOME": str(tmp_path / "home")}
    dashboard = subprocess.Popen(
        [
            SCONES,
            "dashboard",
            "--port",
            str(port),
            "--capture-uri",
            str(capture),
            "--model",
            str(live_model),
            "--db",
            str(db_path),
            "--refresh",
            "1",
            "--window",
            "all",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process=dashboard)
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 30, poll_frequency=0.2)
        wait.until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true"
        )
        points = browser.find_elements(By.CSS_SELECTOR, "#confidence-chart circle.point")
        assert len(points) == 5
        assert browser.find_elements(By.CSS_SELECTOR, "#confidence-chart line.threshold")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#class-mix-chart rect.bar")) >= 2
        assert browser.find_elements(By.CSS_SELECTOR, "#gallery img") == []
        assert console_errors(browser) == []

        # A failing execution: the grey image goes through the workflow and fails the threshold.
        _, executions = run_workflow(tmp_path, monkeypatch, url, {"grey-1": GREY})
        failed = executions["test/grey-1.png"]
        assert failed.status == "FAILED"
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery img"))
        image = browser.find_element(By.CSS_SELECTOR, "#gallery img")
        wait.until(
            lambda d: d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", image
            )
        )
        assert browser.execute_script("return arguments[0].naturalWidth", image) == 32
        wait.until(lambda d: "FAILED" in d.find_element(By.ID, "executions-table").text)
        assert failed.name in browser.find_element(By.ID, "executions-table").text
        assert len(browser.find_elements(By.CSS_SELECTOR, "#confidence-chart circle.under")) == 1
        assert console_errors(browser) == []
    finally:
        stop(dashboard)
