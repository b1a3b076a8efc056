"""The real `scones serve` process: SIGTERM/SIGINT flush every capture record (zero loss)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from endpoint_fixtures import read_capture_records, wait_for_ping

from conftest import free_port, solid_png

SCONES = str(Path(sys.executable).parent / "scones")
RED = (200, 30, 30)
BLUE = (30, 30, 200)


def start_serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [SCONES, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> tuple[int, str]:
    process.send_signal(sig)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"serve did not stop on {sig!r}: {output.decode()[-2000:]}") from None
    return process.returncode, output.decode()


def post(url: str, rgb: tuple[int, int, int], inference_id: str) -> httpx.Response:
    return httpx.post(
        f"{url}/invocations?inferenceId={inference_id}",
        content=solid_png(rgb),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_flushes_every_capture_record(tiny_model_dir, tmp_path, sig):
    port = free_port()
    capture = tmp_path / "capture"
    process = start_serve(
        ["--model", str(tiny_model_dir), "--port", str(port), "--capture-uri", str(capture)]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url)
        count = 60
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda i: post(url, RED if i % 2 else BLUE, f"id-{i}"), range(count))
            )
        assert all(a.status_code == 200 for a in answers)
        # Stop at once: the 1 s flush interval has not passed for the latest records.
        code, output = stop(process, sig)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert code == 0, output
    records = read_capture_records(capture)
    assert len(records) == count, output
    assert sorted(r["eventMetadata"]["inferenceId"] for r in records) == sorted(
        f"id-{i}" for i in range(count)
    )
    assert f"{count} records written, 0 dropped" in output


def test_sagemaker_port_wins_and_invoke_prints_class_and_confidence(tiny_model_dir, tmp_path):
    port = free_port()
    image_red, image_blue = tmp_path / "red.png", tmp_path / "blue.png"
    image_red.write_bytes(solid_png(RED))
    image_blue.write_bytes(solid_png(BLUE))
    process = start_serve(
        ["--model", str(tiny_model_dir), "--port", "1", "--no-capture"],
        env={"SAGEMAKER_BIND_TO_PORT": str(port)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url)
        result = subprocess.run(
            [SCONES, "invoke", "--endpoint", url, str(image_red), str(image_blue)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
        assert [(path, name) for path, name, _ in lines] == [
            (str(image_red), "bicycle"),
            (str(image_blue), "motorcycle"),
        ]
        assert all(float(confidence) > 0.99 for *_, confidence in lines)
        as_json = subprocess.run(
            [SCONES, "invoke", "--endpoint", url, "--json", str(image_blue)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        record = json.loads(as_json.stdout)
        assert record["class"] == "motorcycle" and record["image"] == str(image_blue)
        assert set(record["probabilities"]) == {"bicycle", "motorcycle"}
        missing = subprocess.run(
            [SCONES, "invoke", "--endpoint", url, str(tmp_path / "nope.png")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode != 0
        assert "nope.png" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    finally:
        code, output = stop(process)
    assert code == 0, output
    # --no-capture: nothing under the default capture location.
    default_capture = Path(os.environ["SCONES_HOME"]) / "store" / "data_capture"
    assert not default_capture.exists() or not any(default_capture.rglob("*.jsonl"))


def test_multiple_workers_each_capture_and_all_flush(tiny_model_dir, tmp_path):
    port = free_port()
    capture = tmp_path / "capture"
    process = start_serve(
        [
            "--model", str(tiny_model_dir), "--port", str(port), "--workers", "2",
            "--capture-uri", str(capture),
        ]
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url, timeout_s=60)
        count = 40
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: post(url, RED, f"w-{i}"), range(count)))
        assert all(a.status_code == 200 and a.json()[0] > 0.99 for a in answers)
    finally:
        code, output = stop(process)
    assert code == 0, output
    records = read_capture_records(capture)
    assert len(records) == count, output
    assert len({path.name for path in capture.rglob("*.jsonl")}) >= 1


def test_serve_refuses_bad_references_and_options_in_one_line(tmp_path, tiny_model_dir):
    (tmp_path / "model.json").write_text("{}")  # a folder with a malformed card
    model = str(tiny_model_dir)
    cases = [
        (["--model", str(tmp_path)], "model.json"),
        (["--model", str(tmp_path / "missing-folder")], "missing-folder"),
        (["--model", model, "--capture-sampling", "150"], "150"),
        (["--model", model, "--capture-options", "Input,Everything"], "Everything"),
        (["--model", model, "--endpoint-name", "bad_name!"], "bad_name!"),
        (["--model", model, "--max-batch-size", "0"], "max_batch_size"),
        (["--model", model, "--port", "70000"], "70000"),
        (["--model", model, "--capture-uri", "ftp://host/capture"], "ftp"),
    ]
    for args, needle in cases:
        result = subprocess.run(
            [SCONES, "serve", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "error:" in lines[0], (args, result.stderr)
        assert needle in lines[0], (args, lines[0])


def test_serve_production_from_the_registry_answers_a_sagemaker_client(tiny_model_dir, tmp_path):
    """`scones serve --model production` resolves the alias in the store's registry."""
    from scones.model.registry import promote, register
    from scones.store import open_store

    store_dir = tmp_path / "store"
    store = open_store(str(store_dir))
    first = register(store, tiny_model_dir, "vehicle-classifier")
    second = register(store, tiny_model_dir, "vehicle-classifier")
    promote(store, "vehicle-classifier", first.version, "production")
    port = free_port()
    process = start_serve(
        ["--model", "production", "--port", str(port)],
        env={"SCONES_STORE": str(store_dir), "SCONES_HOME": str(tmp_path / "home")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url)
        info = httpx.get(f"{url}/info").json()
        assert (info["model_name"], info["model_version"]) == ("vehicle-classifier", first.version)
        assert post(url, BLUE, "sm-1").json()[1] > 0.99
    finally:
        code, output = stop(process)
    assert code == 0, output
    assert second.version == first.version + 1
    # Default capture location: <store>/data_capture/<endpoint>/<variant>/...
    records = read_capture_records(store_dir / "data_capture" / "scones-endpoint" / "AllTraffic")
    assert [r["eventMetadata"]["inferenceId"] for r in records] == ["sm-1"]
