"""The self-describing model artifact and the ONNX Runtime classifier that serves it.

``model.tar.gz`` extracts (as SageMaker extracts it into ``/opt/ml/model``) to:

- ``model.onnx``: input ``input`` (N, 3, H, W) float32, output ``logits`` (N, classes)
- ``model.safetensors``: the PyTorch weights, for fine-tuning
- ``model.json``: the :class:`ModelCard` (classes, input shape, preprocessing, temperature, ...)
- ``baseline.json``: the validation split's statistics, for drift monitoring (optional)

Inference needs only this folder, onnxruntime, numpy and Pillow.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from scones.errors import SconesError
from scones.model.preprocess import Preprocessing

MODEL_JSON = "model.json"
MODEL_ONNX = "model.onnx"
MODEL_WEIGHTS = "model.safetensors"
BASELINE_JSON = "baseline.json"
ARTIFACT_MEMBERS = (MODEL_JSON, MODEL_ONNX, MODEL_WEIGHTS, BASELINE_JSON)
# An artifact of this small model is a few MB; refuse to unpack anything far larger.
MAX_ARTIFACT_MEMBER_BYTES = 512 * 1024 * 1024


class ArtifactError(SconesError):
    """A model artifact that is missing, malformed or inconsistent with itself."""


class ModelCard(BaseModel):
    """``model.json``: everything needed to use the model, inside the artifact."""

    format_version: int = 1
    name: str
    version: int | None = None
    class_names: list[str] = Field(min_length=2)
    input_name: str = "input"
    output_name: str = "logits"
    input_shape: tuple[int, int, int] = (3, 32, 32)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    temperature: float = Field(default=1.0, gt=0.0)
    architecture: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    data_fingerprint: str = ""
    code_version: str = ""
    created_at: str = ""


def read_card(model_dir: Path) -> ModelCard:
    path = model_dir / MODEL_JSON
    if not path.is_file():
        raise ArtifactError(f"{model_dir} is not a model: it has no {MODEL_JSON}")
    try:
        return ModelCard.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            if err["loc"][:1] == ("preprocessing",)
            else f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        if any(err["loc"][:1] == ("preprocessing",) for err in exc.errors()):
            raise ArtifactError(
                f"{path}: the model's preprocessing contract is not one this code knows "
                f"({problems}); refusing to load it"
            ) from None
        raise ArtifactError(f"{path} is malformed: {problems}") from None


def extract_artifact(archive: Path, dest: Path) -> Path:
    """Unpack ``model.tar.gz`` into ``dest`` safely (regular files at the top level only)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                if not member.isfile() or "/" in name or name not in ARTIFACT_MEMBERS:
                    if member.isdir() and name in ("", "."):
                        continue
                    raise ArtifactError(
                        f"{archive}: unexpected member {member.name!r}; a model artifact holds "
                        f"only {', '.join(ARTIFACT_MEMBERS)}"
                    )
                if member.size > MAX_ARTIFACT_MEMBER_BYTES:
                    raise ArtifactError(f"{archive}: member {name!r} is too large")
                source = tar.extractfile(member)
                assert source is not None
                (dest / name).write_bytes(source.read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArtifactError(f"{archive} is not a readable model.tar.gz: {exc}") from None
    return dest


def pack_artifact(model_dir: Path, archive: Path) -> Path:
    """Write ``model.tar.gz`` with the artifact's files at the top level."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name in ARTIFACT_MEMBERS:
            path = model_dir / name
            if path.is_file():
                tar.add(path, arcname=name)
    return archive


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Float64 probabilities: in float32 every margin above ~17 rounds to exactly 1.0, and a
    confident model's best images would tie, so no threshold could rank them (routing and
    coverage at 99 % selective accuracy both need that order)."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


class OnnxClassifier:
    """Calibrated class probabilities from an extracted artifact, on ONNX Runtime.

    Set up once (load and check the graph against ``model.json``); then ``predict``.
    """

    def __init__(self, model_dir: str | Path, *, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self.card = read_card(self.model_dir)
        onnx_path = self.model_dir / MODEL_ONNX
        if not onnx_path.is_file():
            raise ArtifactError(f"{self.model_dir} has {MODEL_JSON} but no {MODEL_ONNX}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=ort.get_available_providers()
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"{onnx_path} is not a loadable ONNX model: {exc}") from None
        self._check_graph()

    def _check_graph(self) -> None:
        card = self.card
        inputs = {node.name: node for node in self.session.get_inputs()}
        outputs = {node.name: node for node in self.session.get_outputs()}
        where = self.model_dir / MODEL_JSON
        if card.input_name not in inputs:
            raise ArtifactError(
                f"{where}: input_name {card.input_name!r} is not an input of the ONNX graph "
                f"(inputs: {sorted(inputs)})"
            )
        if card.output_name not in outputs:
            raise ArtifactError(
                f"{where}: output_name {card.output_name!r} is not an output of the ONNX graph "
                f"(outputs: {sorted(outputs)})"
            )
        shape = list(inputs[card.input_name].shape)
        if len(shape) != 4 or [d for d in shape[1:] if isinstance(d, int)] != list(
            card.input_shape
        ):
            raise ArtifactError(
                f"{where}: input_shape {list(card.input_shape)} does not match the ONNX input "
                f"shape {shape}"
            )
        height, width = card.preprocessing.input_size
        if (card.input_shape[1], card.input_shape[2]) != (height, width):
            raise ArtifactError(
                f"{where}: preprocessing.input_size {[height, width]} does not match "
                f"input_shape {list(card.input_shape)}"
            )
        out_shape = outputs[card.output_name].shape
        classes = out_shape[-1] if out_shape else None
        if isinstance(classes, int) and classes != len(card.class_names):
            raise ArtifactError(
                f"{where}: class_names has {len(card.class_names)} names but the ONNX graph "
                f"outputs {classes} classes"
            )

    @property
    def class_names(self) -> list[str]:
        return self.card.class_names

    @property
    def preprocessing(self) -> Preprocessing:
        return self.card.preprocessing

    def logits(self, batch: np.ndarray) -> np.ndarray:
        (result,) = self.session.run(
            [self.card.output_name], {self.card.input_name: batch.astype(np.float32, copy=False)}
        )
        return result

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) preprocessed inputs -> (N, classes) calibrated probabilities."""
        return softmax(self.logits(batch), self.card.temperature)


def read_baseline(model_dir: Path) -> dict[str, Any] | None:
    """The artifact's ``baseline.json``, or None for artifacts made before it existed."""
    path = model_dir / BASELINE_JSON
    if not path.is_file():
        return None
    return json.loads(path.read_text())
