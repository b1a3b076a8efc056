"""Fixtures shared by every test package: the shared data folder, a real S3 API server."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
SHARED_VEHICLES = SHARED_DIR / "data" / "cifar100-vehicles"


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own SCONES_HOME, so no test reads or writes ./.scones."""
    from scones.settings import get_settings

    home = tmp_path_factory.mktemp("scones-home")
    for name in list(os.environ):
        if name.startswith("SCONES_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SCONES_HOME", str(home))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def shared_vehicles() -> Path:
    """The 1000 real CIFAR-100 training images of the two classes, in the staged layout."""
    if not (SHARED_VEHICLES / "train.lst").is_file():
        pytest.fail(f"shared data missing: {SHARED_VEHICLES} (it sits beside the repo root)")
    return SHARED_VEHICLES


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 90.0, process: subprocess.Popen | None = None) -> None:
    """Until ``url`` answers 200; fails at once when ``process`` (the server) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"nothing answered {url} within {timeout} s")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 API server on 127.0.0.1, over real HTTP; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server; AWS variables point boto3 at it."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("SCONES_S3_ENDPOINT_URL", s3_server)
    bucket = f"scones-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return bucket


# --- a tiny, real ONNX model for the serving, workflow and monitoring tests -----------------
# logits = k * (mean red - mean blue) for "bicycle" and the negative for "motorcycle", on the
# normalised input: a red image is a confident bicycle, a blue one a confident motorcycle,
# and a grey or noise image is unsure (about 0.5 each), so it fails any real threshold.


def build_tiny_model(model_dir: Path, *, name: str = "tiny", version: int | None = 1) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from scones.model.artifact import MODEL_JSON, MODEL_ONNX, ModelCard
    from scones.model.preprocess import CIFAR100_MEAN, CIFAR100_STD

    model_dir.mkdir(parents=True, exist_ok=True)
    k = 4.0
    weight = np.array([[k, 0.0, -k], [-k, 0.0, k]], dtype=np.float32).T  # (3, 2)
    # Centre the decision on mid-grey, so grey and noise are unsure rather than leaning.
    grey = (128 / 255 - np.asarray(CIFAR100_MEAN)) / np.asarray(CIFAR100_STD)
    bias = -(grey @ weight).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (model_dir / MODEL_ONNX).write_bytes(model.SerializeToString())
    card = ModelCard(name=name, version=version, class_names=["bicycle", "motorcycle"])
    (model_dir / MODEL_JSON).write_text(card.model_dump_json(indent=2))
    return model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An extracted artifact folder (model.onnx + model.json) of the tiny colour model."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


def solid_png(rgb: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    """A PNG of one colour: (200, 30, 30) is a confident bicycle for the tiny model."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(seed: int = 0, size: tuple[int, int] = (32, 32)) -> bytes:
    """Uniform noise: unsure for any sensible model."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()
