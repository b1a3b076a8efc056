"""The model every peer server in serve_peers.py serves, with only numpy, Pillow and ONNX Runtime.

The peers run in their own virtual environments (their pins clash with ours and with each
other), where scones is not installed, so this file re-implements the few lines of the
preprocessing contract that the benchmark's model uses (scones.model.preprocess): decode,
RGB, bilinear resize of the whole image, scale, normalise, CHW; then one ONNX Runtime call for
a batch and a float64 softmax, as scones.model.artifact does. The same work as `scones serve`
per image, so the table compares servers, not models.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


class VehicleModel:
    def __init__(self, model_dir: str | Path, intra_op_threads: int) -> None:
        folder = Path(model_dir)
        card = json.loads((folder / "model.json").read_text())
        prep = card["preprocessing"]
        if prep.get("resize", "bilinear") != "bilinear" or prep.get("layout", "NCHW") != "NCHW":
            raise ValueError(f"preprocessing {prep} is not the contract this file implements")
        self.height, self.width = prep["input_size"]
        self.scale = float(prep["scale"])
        self.mean = np.asarray(prep["mean"], np.float32)
        self.std = np.asarray(prep["std"], np.float32)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.class_names: list[str] = list(card["class_names"])

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (self.width, self.height):
            image = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) * self.scale
        return ((pixels - self.mean) / self.std).transpose(2, 0, 1)

    def preprocess(self, data: bytes) -> np.ndarray:
        return self.preprocess_image(Image.open(io.BytesIO(data)))

    def predict(self, batch: np.ndarray) -> list[list[float]]:
        logits = self.session.run(None, {self.input_name: batch})[0].astype(np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (exp / exp.sum(axis=1, keepdims=True)).tolist()


def from_env() -> VehicleModel:
    """The model serve_peers.py names in PEER_MODEL_DIR and PEER_INTRA_OP_THREADS."""
    return VehicleModel(os.environ["PEER_MODEL_DIR"], int(os.environ["PEER_INTRA_OP_THREADS"]))


def batching_from_env() -> tuple[int, float]:
    """(max batch size, max batch delay in seconds), the same for every server."""
    return int(os.environ["PEER_MAX_BATCH_SIZE"]), float(
        os.environ["PEER_MAX_BATCH_DELAY_MS"]
    ) / 1000
