"""Evaluate a model artifact on any staged split: accuracy, calibration, risk-coverage.

The model runs on ONNX Runtime (:class:`OnnxClassifier`) over inputs made by the shared
preprocessing, exactly as the endpoint serves it. A prediction "reaches" a threshold when its
top calibrated probability is ``>= threshold``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from scones.data.layout import DATASET_JSON, LayoutError
from scones.errors import SconesError
from scones.model.artifact import OnnxClassifier
from scones.model.dataset import ImageSet, load_split
from scones.model.preprocess import normalize_hwc_uint8
from scones.model.registry import resolve_model
from scones.store import ObjectStore, join_key

RISK_COVERAGE_THRESHOLDS = (
    *(round(0.5 + 0.05 * i, 2) for i in range(9)),  # 0.50 .. 0.90
    0.93,
    0.95,
    0.96,
    0.97,
    0.98,
    0.99,
)
ECE_BINS = 15
EVAL_BATCH = 256
# Images per ONNX Runtime call are bounded by pixels too: at 224x224 one call of 256 images
# (512 views with the flip) held over 2 GB of activations in ONNX Runtime's arena.
EVAL_PIXELS = 16 * 224 * 224
# Coverage at 99 % selective accuracy on a few hundred images moves by tenths from one test
# set to the next (one error among the most confident decides it), so it is reported with a
# bootstrap interval.
COVERAGE_RESAMPLES = 1000
INTERVAL_CONFIDENCE = 0.95


class EvaluationError(SconesError):
    """The data cannot be evaluated with this model (class names differ, empty split, ...)."""


def risk_coverage_point(top: np.ndarray, correct: np.ndarray, threshold: float) -> dict[str, Any]:
    covered = top >= threshold
    n_covered = int(covered.sum())
    return {
        "threshold": threshold,
        "coverage": float(covered.mean()) if len(top) else 0.0,
        "selective_accuracy": float(correct[covered].mean()) if n_covered else None,
        "n_covered": n_covered,
    }


def lowest_threshold_reaching(
    top: np.ndarray, correct: np.ndarray, target_precision: float
) -> float | None:
    """The lowest top-probability threshold whose selective accuracy reaches the target.

    Candidates are the observed top probabilities: accepting every image at or above one of
    them. Among those that reach ``target_precision`` the lowest covers the most images.
    """
    if len(top) == 0:
        return None
    order = np.argsort(-top, kind="stable")
    sorted_top = top[order]
    cumulative_accuracy = np.cumsum(correct[order]) / np.arange(1, len(top) + 1)
    # Only the last position of a run of equal probabilities is a real cut.
    is_cut = np.append(sorted_top[1:] != sorted_top[:-1], True)
    reaching = np.flatnonzero(is_cut & (cumulative_accuracy >= target_precision))
    if len(reaching) == 0:
        return None
    return float(sorted_top[reaching[-1]])


def bootstrap_coverage(
    top: np.ndarray,
    correct: np.ndarray,
    target_precision: float,
    *,
    sample_size: int | None = None,
    resamples: int = COVERAGE_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """Coverage at ``target_precision`` on ``resamples`` test sets of ``sample_size`` images
    (default: as many as given) drawn with replacement from these predictions.

    Each resample chooses its own threshold, as the figure is measured on a real test set, so
    the spread says how far the figure moves from one test set of that size to the next.
    """
    n = len(top)
    if n == 0:
        raise ValueError("bootstrap_coverage needs at least one prediction, got none")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples!r}")
    size = n if sample_size is None else sample_size
    if size < 1:
        raise ValueError(f"sample_size must be at least 1, got {sample_size!r}")
    rng = np.random.default_rng(seed)
    coverage = np.empty(resamples)
    for r in range(resamples):
        rows = rng.integers(0, n, size)
        threshold = lowest_threshold_reaching(top[rows], correct[rows], target_precision)
        coverage[r] = 0.0 if threshold is None else float((top[rows] >= threshold).mean())
    return coverage


def coverage_interval(
    top: np.ndarray,
    correct: np.ndarray,
    target_precision: float,
    *,
    confidence: float = INTERVAL_CONFIDENCE,
    resamples: int = COVERAGE_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Percentile bootstrap interval of coverage at ``target_precision`` (None when empty)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    if len(top) == 0:
        return None
    samples = bootstrap_coverage(top, correct, target_precision, resamples=resamples, seed=seed)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return {
        "low": float(low),
        "high": float(high),
        "confidence": confidence,
        "resamples": resamples,
    }


def expected_calibration_error(top: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Share-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    if len(top) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - top[members].mean())
    return float(error)


def classification_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    *,
    threshold: float | None = None,
    target_precision: float = 0.99,
) -> dict[str, Any]:
    """Every figure `scones evaluate` reports, as one JSON-ready dict."""
    labels = np.asarray(labels, dtype=np.int64)
    n, classes = len(labels), len(class_names)
    predicted = probabilities.argmax(axis=1)
    top = probabilities.max(axis=1).astype(np.float64)
    correct = (predicted == labels).astype(np.float64)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for index, name in enumerate(class_names):
        predicted_as = int(confusion[:, index].sum())
        support = int(confusion[index].sum())
        per_class[name] = {
            "precision": float(confusion[index, index] / predicted_as) if predicted_as else None,
            "recall": float(confusion[index, index] / support) if support else None,
            "support": support,
        }
    true_probability = np.clip(probabilities[np.arange(n), labels].astype(np.float64), 1e-12, 1)
    recommended = lowest_threshold_reaching(top, correct, target_precision)
    result: dict[str, Any] = {
        "n": n,
        "accuracy": float(correct.mean()) if n else 0.0,
        "class_names": list(class_names),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "log_loss": float(-np.log(true_probability).mean()) if n else 0.0,
        "ece": expected_calibration_error(top, correct),
        "risk_coverage": [risk_coverage_point(top, correct, t) for t in RISK_COVERAGE_THRESHOLDS],
        "target_precision": target_precision,
        "recommended_threshold": recommended,
        "coverage_at_recommended": (
            risk_coverage_point(top, correct, recommended)["coverage"] if recommended else 0.0
        ),
        "coverage_interval": coverage_interval(top, correct, target_precision),
    }
    if threshold is not None:
        result["at_threshold"] = risk_coverage_point(top, correct, threshold)
    return result


def eval_batch_size(input_size: tuple[int, int]) -> int:
    """Images per ONNX Runtime call outside serving (evaluation, calibration, the trunk cached
    for training): at most EVAL_BATCH, at most EVAL_PIXELS."""
    height, width = input_size
    return max(1, min(EVAL_BATCH, EVAL_PIXELS // (height * width)))


def batched_logits(classifier: OnnxClassifier, inputs: np.ndarray) -> np.ndarray:
    """Raw logits of normalised NCHW inputs, in batches of :func:`eval_batch_size`."""
    size = eval_batch_size(classifier.preprocessing.input_size)
    outputs = [
        classifier.logits(inputs[start : start + size]) for start in range(0, len(inputs), size)
    ]
    if not outputs:
        return np.zeros((0, len(classifier.class_names)), dtype=np.float32)
    return np.concatenate(outputs)


def predict_pixels(classifier: OnnxClassifier, pixels: np.ndarray) -> np.ndarray:
    """Calibrated probabilities for uint8 (N, H, W, 3) pixels, in batches."""
    size = eval_batch_size(classifier.preprocessing.input_size)
    outputs = [
        classifier.predict(
            normalize_hwc_uint8(pixels[start : start + size], classifier.preprocessing)
        )
        for start in range(0, len(pixels), size)
    ]
    if not outputs:
        return np.zeros((0, len(classifier.class_names)), dtype=np.float64)
    return np.concatenate(outputs)


def check_class_names(store: ObjectStore, prefix: str, model_classes: list[str]) -> None:
    """A staged layout's dataset.json, when present, must name the model's classes in order."""
    key = join_key(prefix, DATASET_JSON)
    if not store.exists(key):
        return
    try:
        names = list(json.loads(store.get_text(key))["class_names"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LayoutError(f"{store.uri_for(key)} is malformed: {exc}") from None
    if names != model_classes:
        raise EvaluationError(
            f"{store.uri_for(key)} has class_names {names} but the model outputs {model_classes}"
        )


def evaluate_model(
    model_dir: Path,
    store: ObjectStore,
    *,
    split: str = "test",
    prefix: str = "",
    threshold: float | None = None,
    target_precision: float = 0.99,
) -> dict[str, Any]:
    classifier = OnnxClassifier(model_dir)
    check_class_names(store, prefix, classifier.class_names)
    images: ImageSet = load_split(
        store,
        split,
        prep=classifier.preprocessing,
        prefix=prefix,
        num_classes=len(classifier.class_names),
    )
    if len(images) == 0:
        raise EvaluationError(f"split {split!r} in {store.uri} has no images to evaluate")
    probabilities = predict_pixels(classifier, images.pixels)
    metrics = classification_metrics(
        probabilities,
        images.labels,
        classifier.class_names,
        threshold=threshold,
        target_precision=target_precision,
    )
    card = classifier.card
    metrics["model"] = {"name": card.name, "version": card.version, "path": str(model_dir)}
    metrics["data"] = {"uri": store.uri, "split": split, "fingerprint": images.fingerprint}
    return metrics


def evaluate_reference(
    ref: str,
    store: ObjectStore,
    *,
    registry: ObjectStore,
    cache_dir: Path,
    split: str = "test",
    threshold: float | None = None,
    target_precision: float = 0.99,
) -> dict[str, Any]:
    """Resolve model ``ref`` through ``registry``, then evaluate it on ``split`` of ``store``."""
    model_dir = resolve_model(ref, store=registry, cache_dir=cache_dir)
    return evaluate_model(
        model_dir, store, split=split, threshold=threshold, target_precision=target_precision
    )
