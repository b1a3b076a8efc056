"""The SageMaker container's entry point, without Docker: model folder, port rules, serve."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from endpoint_fixtures import wait_for_ping

from conftest import free_port, solid_png
from scones.errors import UsageError
from scones.model.artifact import pack_artifact
from scones.serving.container import plan_container
from scones.serving.model_ref import ModelReferenceError
from scones.serving.server import resolve_port

REPO = Path(__file__).resolve().parents[2]


def test_port_rules():
    assert resolve_port(None, {}) == 8080
    assert resolve_port(9000, {}) == 9000
    assert resolve_port(9000, {"SAGEMAKER_BIND_TO_PORT": "7000"}) == 7000
    assert resolve_port(None, {"SAGEMAKER_BIND_TO_PORT": " 7001 "}) == 7001
    assert resolve_port(9000, {"SAGEMAKER_BIND_TO_PORT": ""}) == 9000
    for bad in ("http", "0", "65536", "-1"):
        with pytest.raises(UsageError, match="SAGEMAKER_BIND_TO_PORT"):
            resolve_port(None, {"SAGEMAKER_BIND_TO_PORT": bad})
    with pytest.raises(UsageError, match=r"^port 70000"):
        resolve_port(70000, {})


def test_plan_reads_the_model_folder_from_the_env_override(tiny_model_dir, tmp_path):
    plan = plan_container({"SCONES_MODEL_DIR": str(tiny_model_dir)}, cache_dir=tmp_path)
    assert plan.config.model_dir == tiny_model_dir
    assert (plan.host, plan.port, plan.workers) == ("0.0.0.0", 8080, 1)
    assert plan.config.capture_uri is None  # on SageMaker, the platform captures
    plan = plan_container(
        {
            "SCONES_MODEL_DIR": str(tiny_model_dir),
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SCONES_CAPTURE_URI": str(tmp_path / "cap"),
            "SCONES_MAX_BATCH_SIZE": "8",
        },
        cache_dir=tmp_path,
    )
    assert (plan.port, plan.workers, plan.config.max_batch_size) == (9090, 3, 8)
    assert plan.config.capture_uri == str(tmp_path / "cap")


def test_plan_extracts_a_model_tarball_in_the_model_folder(tiny_model_dir, tmp_path):
    # SageMaker extracts model.tar.gz itself; a plain `docker run -v` mount may not.
    mounted = tmp_path / "opt-ml-model"
    pack_artifact(tiny_model_dir, mounted / "model.tar.gz")
    plan = plan_container({"SCONES_MODEL_DIR": str(mounted)}, cache_dir=tmp_path / "cache")
    assert (plan.config.model_dir / "model.onnx").read_bytes() == (
        tiny_model_dir / "model.onnx"
    ).read_bytes()
    again = plan_container(
        {"SCONES_MODEL_DIR": str(mounted / "model.tar.gz")}, cache_dir=tmp_path / "cache"
    )
    assert again.config.model_dir == plan.config.model_dir  # extracted once, by content hash


def test_plan_names_what_is_wrong(tmp_path, tiny_model_dir):
    with pytest.raises(ModelReferenceError, match=r"SCONES_MODEL_DIR .*does not exist"):
        plan_container({"SCONES_MODEL_DIR": str(tmp_path / "nope")})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelReferenceError, match=r"neither model\.json nor model\.tar\.gz"):
        plan_container({"SCONES_MODEL_DIR": str(empty)})
    with pytest.raises(UsageError, match="SAGEMAKER_MODEL_SERVER_WORKERS 'many'"):
        plan_container(
            {"SCONES_MODEL_DIR": str(tiny_model_dir), "SAGEMAKER_MODEL_SERVER_WORKERS": "many"}
        )


def test_dockerfile_follows_the_byoc_rules():
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    entrypoints = [line for line in dockerfile.splitlines() if line.startswith("ENTRYPOINT")]
    assert len(entrypoints) == 1
    # Exec form (a JSON array), so the server gets SIGTERM directly.
    assert json.loads(entrypoints[0].removeprefix("ENTRYPOINT").strip()) == ["/usr/local/bin/serve"]
    assert "EXPOSE 8080" in dockerfile
    assert "torch" not in dockerfile.split("pip install", 1)[1].split("\n", 1)[0]
    serve = REPO / "docker" / "serve"
    assert os.access(serve, os.X_OK)
    assert "exec " in serve.read_text()


def test_the_serve_entry_script_serves_and_stops_on_sigterm(tiny_model_dir, tmp_path):
    """`docker/serve serve` as SageMaker would run it, with the model folder overridden."""
    port = free_port()
    model = tmp_path / "opt-ml-model"
    shutil.copytree(tiny_model_dir, model)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SCONES_MODEL_DIR": str(model),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SCONES_HOST": "127.0.0.1",
    }
    process = subprocess.Popen(
        [str(REPO / "docker" / "serve"), "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url)
        answer = httpx.post(
            f"{url}/invocations",
            content=solid_png((200, 30, 30)),
            headers={"Content-Type": "application/x-image"},
        )
        assert answer.status_code == 200 and answer.json()[0] > 0.99
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output.decode()[-2000:]


def test_the_entry_point_refuses_unknown_arguments(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "scones.serving.container", "train"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "serve" in result.stderr


def test_default_capture_location_follows_the_store(monkeypatch, tmp_path):
    from scones.serving.server import default_capture_uri
    from scones.settings import get_settings

    assert default_capture_uri("s3://b/cap", "s3://b/store", {}) == "s3://b/cap"
    assert default_capture_uri(None, "s3://b/store/", {}) == "s3://b/store/data_capture"
    assert default_capture_uri(None, "s3://b/store", {"SCONES_CAPTURE_URI": "x"}) == (
        get_settings().capture_uri
    )
    monkeypatch.setenv("SCONES_STORE", str(tmp_path / "store"))
    get_settings.cache_clear()
    assert default_capture_uri(None, None, {}) == str(tmp_path / "store") + "/data_capture"


def test_the_cli_and_the_container_default_to_the_configured_batch_size() -> None:
    import inspect

    from scones.cli.serving import serve
    from scones.serving.config import DEFAULT_MAX_BATCH_SIZE, ServeConfig

    cli_default = inspect.signature(serve).parameters["max_batch_size"].default
    assert cli_default == DEFAULT_MAX_BATCH_SIZE
    assert ServeConfig(model_dir=Path(".")).max_batch_size == DEFAULT_MAX_BATCH_SIZE
