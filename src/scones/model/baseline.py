"""``baseline.json``: what in-distribution images looked like to the model, for drift monitoring.

Monitoring compares live traffic with it, using the same statistics and bins
(:func:`scones.images.image_statistics` and :data:`CONFIDENCE_BIN_EDGES`).

The images are the staged ``test`` split when there is one: nothing in training looked at
it, so the model's confidences on it are what new in-distribution traffic should get. The
validation split chose the checkpoint and fitted the temperature, so its confidences are
biased upwards; it is used only for a layout without a test split, and the baseline says so
(``split``, ``selection_saw_it``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from scones.data.layout import lst_key
from scones.images import IMAGE_STAT_NAMES
from scones.model.artifact import BASELINE_JSON, OnnxClassifier
from scones.model.dataset import ImageSet, load_split
from scones.model.evaluate import predict_pixels
from scones.model.preprocess import Preprocessing
from scones.store import ObjectStore

# The split a baseline is taken from when the layout has it; validation otherwise.
BASELINE_SPLIT = "test"

BASELINE_FORMAT_VERSION = 1
# The fixed bins of every confidence histogram (top probability), baseline and live alike.
CONFIDENCE_BIN_EDGES = tuple(round(i / 20, 2) for i in range(21))


def confidence_histogram(top_probabilities: np.ndarray) -> list[int]:
    """Counts of top probabilities in CONFIDENCE_BIN_EDGES (the last bin includes 1.0)."""
    counts, _ = np.histogram(np.asarray(top_probabilities, dtype=np.float64), CONFIDENCE_BIN_EDGES)
    return [int(c) for c in counts]


def baseline_images(
    store: ObjectStore,
    *,
    prep: Preprocessing,
    num_classes: int,
    validation: ImageSet,
    prefix: str = "",
) -> ImageSet:
    """The test split with image statistics when the layout has a non-empty one, else
    ``validation`` (which must carry statistics)."""
    if store.exists(lst_key(BASELINE_SPLIT, prefix)):
        test = load_split(
            store,
            BASELINE_SPLIT,
            prep=prep,
            prefix=prefix,
            num_classes=num_classes,
            with_statistics=True,
        )
        if len(test):
            return test
    return validation


def write_baseline(
    model_dir: Path,
    store: ObjectStore,
    *,
    class_names: list[str],
    prep: Preprocessing,
    validation: ImageSet,
    prefix: str = "",
) -> dict[str, Any]:
    """Write ``baseline.json`` of the model in ``model_dir`` (calibrated, as served) on
    held-out images of the staged layout in ``store``; returns it."""
    images = baseline_images(
        store, prep=prep, num_classes=len(class_names), validation=validation, prefix=prefix
    )
    probabilities = predict_pixels(OnnxClassifier(model_dir), images.pixels)
    baseline = build_baseline(
        class_names=class_names,
        labels=images.labels,
        probabilities=probabilities,
        statistics=images.statistics,
        split=images.split,
    )
    (model_dir / BASELINE_JSON).write_text(json.dumps(baseline))
    return baseline


def class_shares(indices: np.ndarray, class_names: list[str]) -> dict[str, float]:
    counts = np.bincount(np.asarray(indices, dtype=np.int64), minlength=len(class_names))
    total = max(int(counts.sum()), 1)
    return {name: float(counts[i] / total) for i, name in enumerate(class_names)}


def build_baseline(
    *,
    class_names: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    statistics: list[dict[str, float]],
    split: str = "validation",
) -> dict[str, Any]:
    """The baseline document from the split's labels, calibrated outputs and image statistics."""
    if len(statistics) != len(labels) or len(probabilities) != len(labels):
        raise ValueError(
            f"baseline inputs disagree: {len(labels)} labels, {len(probabilities)} predictions, "
            f"{len(statistics)} image statistics"
        )
    predicted = np.asarray(probabilities.argmax(axis=1), dtype=np.int64)
    counts = np.bincount(predicted, minlength=len(class_names))
    return {
        "format_version": BASELINE_FORMAT_VERSION,
        "split": split,
        # Whether checkpoint selection or calibration saw these images (biased confidences).
        "selection_saw_it": split != BASELINE_SPLIT,
        "n": len(labels),
        "class_names": list(class_names),
        "class_mix": class_shares(predicted, class_names),
        "class_counts": {name: int(counts[i]) for i, name in enumerate(class_names)},
        "label_mix": class_shares(labels, class_names),
        "confidence_bin_edges": list(CONFIDENCE_BIN_EDGES),
        "confidence_histogram": confidence_histogram(probabilities.max(axis=1)),
        "image_stats": {
            name: [float(stats[name]) for stats in statistics] for name in IMAGE_STAT_NAMES
        },
    }
