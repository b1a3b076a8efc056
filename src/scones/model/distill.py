"""Knowledge distillation: the small network learns the pretrained model's soft labels.

The teacher is any registered artifact (``scones train --teacher production``). Before the
student trains, the teacher's served ONNX graph scores a fixed pool of views of every training
image: the image itself and ``views - 1`` augmented copies (random crop and cutout, as the
student's own augmentation makes them). The student then trains on those views, each with the
teacher's answer for *that* view: a teacher is only useful when it sees what the student sees
("consistent teaching", Beyer et al., CVPR 2022). One answer per image for every crop would
teach the student that a cut-out wheel changes nothing; scoring a new crop at every step would
run the slow teacher each step, which is what the student exists to avoid. Horizontal flips
are added at training time for free: the teacher's graph averages an image and its mirror, so
its answer is the same for both.

The teacher sees each view as the endpoint would show it that image: the student's pixels
(32x32), resized to the teacher's input size with the shared preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from scones.errors import SconesError
from scones.model.artifact import MODEL_ONNX, OnnxClassifier, softmax
from scones.model.augment import augment_batch
from scones.model.evaluate import eval_batch_size
from scones.model.preprocess import Preprocessing, normalize_hwc_uint8, resize_for
from scones.model.registry import artifact_file_sha256


class TeacherError(SconesError):
    """The teacher cannot teach this student (other classes)."""


@dataclass(frozen=True)
class TeacherTargets:
    """Views (N, K, 3, H, W) of the N training images as normalised student inputs (view 0 is
    the image itself), the teacher's probabilities for each (N, K, classes) at the
    distillation temperature, and what ``model.json`` records of the teacher."""

    views: torch.Tensor
    probabilities: torch.Tensor
    description: dict[str, Any]


def to_pixels(inputs: torch.Tensor, prep: Preprocessing) -> np.ndarray:
    """Normalised NCHW student inputs back to NHWC uint8 pixels (cut-out squares, which are 0
    after normalisation, become the mean colour)."""
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    values = (inputs * std + mean) / prep.scale
    return values.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def teacher_logits(teacher: OnnxClassifier, pixels: np.ndarray) -> np.ndarray:
    """The teacher's raw logits of NHWC uint8 pixels of any size, resized as the endpoint would."""
    prep = teacher.preprocessing
    size = eval_batch_size(prep.input_size)
    out = []
    for start in range(0, len(pixels), size):
        resized = np.stack(
            [np.asarray(resize_for(Image.fromarray(p), prep)) for p in pixels[start : start + size]]
        )
        out.append(teacher.logits(normalize_hwc_uint8(resized, prep)))
    return np.concatenate(out) if out else np.zeros((0, len(teacher.class_names)), np.float32)


def teacher_targets(
    teacher_dir: Path,
    inputs: torch.Tensor,
    labels: np.ndarray,
    class_names: list[str],
    student_prep: Preprocessing,
    *,
    views: int,
    temperature: float,
    crop_padding: int,
    cutout_size: int,
    seed: int,
    ref: str,
) -> TeacherTargets:
    """The pool of ``views`` views of ``inputs`` (normalised NCHW student inputs, on CPU) and
    the teacher's calibrated probabilities (its own temperature) softened by ``temperature``.

    The teacher must output ``class_names`` in the same order: a student cannot learn class
    probabilities it would read under other names.
    """
    teacher = OnnxClassifier(teacher_dir)
    if teacher.class_names != class_names:
        raise TeacherError(
            f"teacher {ref!r} ({teacher_dir}) outputs classes {teacher.class_names}, but the "
            f"training data has {class_names}: distil from a model of the same classes"
        )
    generator = torch.Generator().manual_seed(seed)
    pool = [inputs] + [
        augment_batch(
            inputs, generator, crop_padding=crop_padding, flip=False, cutout_size=cutout_size
        )
        for _ in range(views - 1)
    ]
    stacked = torch.stack(pool, dim=1)  # (N, K, 3, H, W)
    n, k = stacked.shape[:2]
    pixels = to_pixels(stacked.flatten(0, 1), student_prep)
    logits = teacher_logits(teacher, pixels)
    card = teacher.card
    # The teacher's calibrated probabilities, then softened: its raw logits may be far from
    # calibrated (the transfer models' fitted temperatures ranged 0.45-3.2 on the folds).
    probabilities = softmax(logits, card.temperature * temperature).astype(np.float32)
    probabilities = probabilities.reshape(n, k, -1)
    agreement = float((probabilities[:, 0].argmax(1) == labels).mean()) if n else 0.0
    description = {
        "ref": ref,
        "name": card.name,
        "version": card.version,
        "architecture": card.architecture.get("name"),
        "onnx_sha256": "sha256:" + artifact_file_sha256(teacher_dir / MODEL_ONNX),
        "input_size": list(teacher.preprocessing.input_size),
        "temperature": card.temperature,
        "views_per_image": k,
        "validation_accuracy": card.metrics.get("accuracy"),
        "train_agreement": round(agreement, 4),  # the teacher's top class = the label
    }
    return TeacherTargets(stacked, torch.from_numpy(probabilities), description)


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    soft_targets: torch.Tensor | None,
    *,
    weight: float,
    temperature: float,
    label_smoothing: float,
) -> torch.Tensor:
    """``(1 - weight)`` x cross-entropy with the labels + ``weight`` x T² x KL(teacher ‖ student)
    at temperature T; without soft targets, the cross-entropy alone.

    T² keeps the soft term's gradients on the scale of the hard term's whatever T is.
    """
    hard = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if soft_targets is None or weight == 0.0:
        return hard
    log_student = F.log_softmax(logits.float() / temperature, dim=1)
    soft = F.kl_div(log_student, soft_targets, reduction="batchmean") * temperature**2
    return (1.0 - weight) * hard + weight * soft
