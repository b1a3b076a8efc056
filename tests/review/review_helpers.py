"""Real traffic for the review tests: the endpoint with data capture, the real workflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import SHARED_VEHICLES, free_port, noise_png, solid_png, wait_http
from scones.data.layout import parse_lst

SCONES = str(Path(sys.executable).with_name("scones"))
BUCKET = "scones-review-test"
RED, BLUE = solid_png((200, 30, 30)), solid_png((30, 30, 200))


@contextmanager
def capturing_endpoint(model_dir: Path, home: Path) -> Iterator[tuple[str, Path]]:
    """`scones serve` with data capture into home/capture; yields (url, capture folder)."""
    capture = home / "capture"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    process = subprocess.Popen(
        [
            *(SCONES, "serve", "--model", str(model_dir), "--port", str(port)),
            *("--capture-uri", str(capture), "--log-level", "warning"),
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
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # graceful: the endpoint flushes its capture
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def shared_images(count: int) -> dict[str, bytes]:
    """``count`` real CIFAR-100 images of the shared data, by file name."""
    entries = parse_lst((SHARED_VEHICLES / "train.lst").read_text(), source="train.lst")
    return {e.path: (SHARED_VEHICLES / "train" / e.path).read_bytes() for e in entries[:count]}


def traffic_images() -> dict[str, bytes]:
    """Shared photos (most unsure for the colour model), two confident colours, noise."""
    images = {f"photo-{name}": data for name, data in shared_images(6).items()}
    images.update({"red.png": RED, "blue.png": BLUE, "noise.png": noise_png(5)})
    return images


def run_workflow(store_root: Path, db_path: Path, url: str, images: dict[str, bytes], monkeypatch):
    """One execution per image through the real state machine, functions and endpoint."""
    from scones.functions.classify_image import close_idle_connections
    from scones.store import open_store
    from scones.workflow.executions import ExecutionStore
    from scones.workflow.runs import bucket_env_name, run_single_executions

    store = open_store(str(store_root))
    for name, data in images.items():
        store.put(f"incoming/{name}", data)
    monkeypatch.setenv("SCONES_ENDPOINT_URL", url)
    monkeypatch.setenv("THRESHOLD", "0.93")
    monkeypatch.setenv(bucket_env_name(BUCKET), str(store_root))
    try:
        with ExecutionStore(db_path) as db:
            records = run_single_executions(
                db, BUCKET, [f"incoming/{name}" for name in images], concurrency=2
            )
    finally:
        close_idle_connections()
    return {r.input["s3_key"]: r for r in records}


def wait_captured(capture: Path, expected: int, timeout: float = 30.0) -> None:
    def count() -> int:
        return sum(len(p.read_text().splitlines()) for p in capture.rglob("*.jsonl"))

    deadline = time.monotonic() + timeout
    while count() < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert count() == expected


def colour_model(
    model_dir: Path,
    *,
    strength: float = 4.0,
    version: int = 1,
    class_names: tuple[str, ...] = ("bicycle", "motorcycle"),
    training: dict | None = None,
) -> Path:
    """The conftest's tiny colour model with its strength as a knob: negative is backwards
    (red says motorcycle), so it is a deliberately worse candidate."""
    import json

    from conftest import build_tiny_model
    from scones.model.artifact import MODEL_JSON, MODEL_ONNX

    build_tiny_model(model_dir, version=version)
    if strength != 4.0:
        import numpy as np
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(model_dir / MODEL_ONNX))
        for tensor in model.graph.initializer:
            values = numpy_helper.to_array(tensor) * np.float32(strength / 4.0)
            tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float32), tensor.name))
        (model_dir / MODEL_ONNX).write_bytes(model.SerializeToString())
    card = json.loads((model_dir / MODEL_JSON).read_text())
    card["class_names"] = list(class_names)
    card["training"] = training or {}
    (model_dir / MODEL_JSON).write_text(json.dumps(card))
    return model_dir


def colour_layout(root: Path, *, per_class: int = 12, seed: int = 1) -> Path:
    """A staged layout of textured reddish (bicycle) and bluish (motorcycle) images, some
    faint enough to be unsure, in train, validation and test."""
    import io
    import json

    import numpy as np
    from PIL import Image

    from scones.data.layout import LstEntry, format_lst

    rng = np.random.default_rng(seed)
    folders = {"train": "train", "validation": "train", "test": "test"}
    for split, count in (("train", per_class), ("validation", per_class // 2), ("test", per_class)):
        entries = []
        for index in range(2 * count):
            label = index % 2
            tint = rng.uniform(-6, 45)  # below 0: the image leans the other way
            pixels = rng.integers(70, 186, (32, 32, 3)).astype(np.float64)
            pixels[..., 0 if label == 0 else 2] += tint
            pixels[..., 2 if label == 0 else 0] -= tint
            buffer = io.BytesIO()
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB").save(buffer, "PNG")
            name = f"{split}-{index:03d}.png"
            (root / folders[split]).mkdir(parents=True, exist_ok=True)
            (root / folders[split] / name).write_bytes(buffer.getvalue())
            entries.append(LstEntry(index, label, name))
        (root / f"{split}.lst").write_text(format_lst(entries))
    (root / "dataset.json").write_text(json.dumps({"class_names": ["bicycle", "motorcycle"]}))
    return root


def queue_with_photos(
    db_path: Path, store_root: Path, count: int, classes=("bicycle", "motorcycle")
):
    """A review queue of ``count`` real photos in a local store, as threshold failures would
    leave them (pending, unsure, closest to the boundary first)."""
    import hashlib
    from datetime import UTC, datetime, timedelta

    from scones.review.queue import ItemCandidate, ReviewQueue
    from scones.store import open_store

    store = open_store(str(store_root))
    queue = ReviewQueue(db_path, classes=classes)
    for number, (name, data) in enumerate(shared_images(count).items()):
        store.put(f"incoming/{name}", data)
        confidence = 0.55 + 0.02 * number
        queue.add(
            ItemCandidate(
                image_sha256=hashlib.sha256(data).hexdigest(),
                store_uri=store.uri,
                image_key=f"incoming/{name}",
                capture_line=None,
                predicted_class=classes[number % 2],
                confidence=confidence,
                margin=2 * confidence - 1,
                threshold=0.93,
                model_version="1",
                observed_at=datetime(2026, 11, 26, tzinfo=UTC) + timedelta(minutes=number),
            ),
            source="execution",
            ref=f"execution-{number}",
        )
    return queue


def http(url: str, body: bytes | None = None, method: str | None = None):
    """(status, headers, body) of one request; 4xx and 5xx answers too."""
    import urllib.error

    request = urllib.request.Request(
        url, data=body, method=method or ("POST" if body is not None else "GET")
    )
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()
