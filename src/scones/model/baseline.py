"""``baseline.json``: what the validation split looked like to the model, for drift monitoring.

Monitoring compares live traffic with it, using the same statistics and bins
(:func:`scones.images.image_statistics` and :data:`CONFIDENCE_BIN_EDGES`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scones.images import IMAGE_STAT_NAMES

BASELINE_FORMAT_VERSION = 1
# The fixed bins of every confidence histogram (top probability), baseline and live alike.
CONFIDENCE_BIN_EDGES = tuple(round(i / 20, 2) for i in range(21))


def confidence_histogram(top_probabilities: np.ndarray) -> list[int]:
    """Counts of top probabilities in CONFIDENCE_BIN_EDGES (the last bin includes 1.0)."""
    counts, _ = np.histogram(np.asarray(top_probabilities, dtype=np.float64), CONFIDENCE_BIN_EDGES)
    return [int(c) for c in counts]


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
