"""Capture files and baselines written by hand, in exactly the SageMaker / scones contracts."""

from __future__ import annotations

import base64
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from scones.images import image_statistics
from scones.model.artifact import BASELINE_JSON
from scones.model.baseline import CONFIDENCE_BIN_EDGES, confidence_histogram

ENDPOINT = "scones-endpoint"
VARIANT = "AllTraffic"
T0 = datetime(2026, 11, 26, 15, 4, 5, 123000, tzinfo=UTC)


def sagemaker_time(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def capture_record(
    image: bytes,
    probabilities: list[float] | None,
    moment: datetime,
    *,
    content_type: str = "image/png",
    event_id: str | None = None,
    inference_id: str | None = None,
) -> dict[str, Any]:
    capture: dict[str, Any] = {
        "endpointInput": {
            "observedContentType": content_type,
            "mode": "INPUT",
            "data": base64.b64encode(image).decode(),
            "encoding": "BASE64",
        }
    }
    if probabilities is not None:
        capture["endpointOutput"] = {
            "observedContentType": "application/json",
            "mode": "OUTPUT",
            "data": json.dumps(probabilities),
            "encoding": "JSON",
        }
    metadata = {"eventId": event_id or str(uuid.uuid4()), "inferenceTime": sagemaker_time(moment)}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}


def capture_key(moment: datetime, endpoint: str = ENDPOINT, variant: str = VARIANT) -> str:
    moment = moment.astimezone(UTC)
    name = f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{uuid.uuid4().hex}.jsonl"
    return f"{endpoint}/{variant}/{moment:%Y/%m/%d/%H}/{name}"


def write_capture_file(
    capture_root: Path, records: list[dict[str, Any] | str], *, endpoint: str = ENDPOINT
) -> Path:
    """One .jsonl file named after its first record's time; str items are raw (bad) lines."""
    first = next(r for r in records if isinstance(r, dict))
    moment = datetime.fromisoformat(first["eventMetadata"]["inferenceTime"])
    path = capture_root / capture_key(moment, endpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def varied_pngs(count: int, *, seed: int, brightness: float = 0.0, size: int = 32) -> list[bytes]:
    """Distinct natural-ish images: smooth random colour fields, optionally brightened."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        base = rng.uniform(40, 200, 3)
        noise = rng.normal(0, 25, (size, size, 3))
        pixels = np.clip(base + noise + brightness, 0, 255)
        images.append(png(pixels))
    return images


def baseline_for(
    images: list[bytes], top_probs: list[float], class_names: list[str], predicted: list[int]
) -> dict[str, Any]:
    """A baseline.json per the contract, computed with the shared statistics functions."""
    stats = [image_statistics(Image.open(io.BytesIO(data)).convert("RGB")) for data in images]
    n = len(images)
    return {
        "format_version": 1,
        "split": "validation",
        "n": n,
        "class_names": class_names,
        "class_mix": {name: predicted.count(i) / n for i, name in enumerate(class_names)},
        "label_mix": {name: predicted.count(i) / n for i, name in enumerate(class_names)},
        "confidence_bin_edges": list(CONFIDENCE_BIN_EDGES),
        "confidence_histogram": confidence_histogram(np.asarray(top_probs)),
        "image_stats": {name: [s[name] for s in stats] for name in stats[0]},
    }


def model_with_baseline(model_dir: Path, target: Path, baseline: dict[str, Any] | None) -> Path:
    """A copy of an extracted model folder with (or without) a baseline.json."""
    target.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():
        if item.is_file() and item.name != BASELINE_JSON:
            (target / item.name).write_bytes(item.read_bytes())
    if baseline is not None:
        (target / BASELINE_JSON).write_text(json.dumps(baseline))
    return target


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
