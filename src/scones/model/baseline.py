"""``baseline.json``: what the validation split looked like to the model, for drift monitoring.

Monitoring compares live traffic with it, using the same statistics and bins
(:mod:`scones.model.image_stats`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scones.model.image_stats import (
    CONFIDENCE_BIN_EDGES,
    IMAGE_STAT_NAMES,
    confidence_histogram,
)

BASELINE_FORMAT_VERSION = 1


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
    return {
        "format_version": BASELINE_FORMAT_VERSION,
        "split": split,
        "n": len(labels),
        "class_names": list(class_names),
        "class_mix": class_shares(probabilities.argmax(axis=1), class_names),
        "label_mix": class_shares(labels, class_names),
        "confidence_bin_edges": list(CONFIDENCE_BIN_EDGES),
        "confidence_histogram": confidence_histogram(probabilities.max(axis=1)),
        "image_stats": {
            name: [float(stats[name]) for stats in statistics] for name in IMAGE_STAT_NAMES
        },
    }
