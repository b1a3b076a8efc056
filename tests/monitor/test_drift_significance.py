"""Drift checks at the demo's sample sizes: quiet on in-distribution traffic, loud on a shift.

Images are the 1000 real CIFAR-100 vehicles of the shared data (their statistics by
scones.images); model outputs are drawn from a fixed, confident distribution. Baseline and
live samples are disjoint draws from the same pool, as a held-out split and new traffic are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scones.images import IMAGE_STAT_NAMES, decode_image, image_statistics
from scones.model.baseline import confidence_histogram
from scones.monitor.drift import (
    Baseline,
    DriftThresholds,
    LiveTraffic,
    evaluate_drift,
    population_stability_index,
)

SEEDS = range(200)
LIVE = 172  # the demo's traffic: its test split (166) and 6 out-of-distribution images
# Each of the (at most) 7 checks alarms with probability <= 0.01 under no drift.
MAX_FALSE_ALARM_SHARE = 0.06


def _statistics(shared: Path, darken: float) -> np.ndarray:
    rows = []
    for path in sorted((shared / "train").glob("*.png")):
        image = decode_image(path.read_bytes())
        if darken != 1.0:
            pixels = np.asarray(image, dtype=np.float64) * darken
            image = _from_array(pixels)
        stats = image_statistics(image)
        rows.append([stats[name] for name in IMAGE_STAT_NAMES])
    return np.asarray(rows)


def _from_array(pixels: np.ndarray):
    from PIL import Image

    return Image.fromarray(pixels.round().astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def pool(shared_vehicles: Path) -> dict[str, np.ndarray]:
    """Per-image statistics of every shared image, as they are and darkened to 60%."""
    return {"normal": _statistics(shared_vehicles, 1.0), "dark": _statistics(shared_vehicles, 0.6)}


def outputs(rng: np.random.Generator, n: int, *, unsure_share: float = 0.0, bicycles=0.5):
    """(predicted class, top confidence) of a confident two-class model, optionally with a
    share of unsure answers (top confidence uniform in 0.5..0.8, as out-of-distribution)."""
    predicted = (rng.random(n) >= bicycles).astype(np.int64)
    top = 1.0 - 0.5 * rng.beta(1.0, 12.0, n)
    unsure = rng.random(n) < unsure_share
    top[unsure] = rng.uniform(0.5, 0.8, int(unsure.sum()))
    return predicted, top


def baseline_of(stats: np.ndarray, predicted: np.ndarray, top: np.ndarray) -> Baseline:
    return Baseline(
        class_names=["bicycle", "motorcycle"],
        class_counts=[float(c) for c in np.bincount(predicted, minlength=2)],
        confidence_counts=[float(c) for c in confidence_histogram(top)],
        image_stats={name: stats[:, i] for i, name in enumerate(IMAGE_STAT_NAMES)},
        split="test",
        n=len(top),
    )


def live_of(stats: np.ndarray, predicted: np.ndarray, top: np.ndarray) -> LiveTraffic:
    return LiveTraffic(
        class_names=["bicycle", "motorcycle"],
        class_counts=[int(c) for c in np.bincount(predicted, minlength=2)],
        predictions=len(top),
        under_threshold=int((top < 0.93).sum()),
        threshold=0.93,
        confidence_counts=confidence_histogram(top),
        decoded_images=len(stats),
        image_stats={name: stats[:, i] for i, name in enumerate(IMAGE_STAT_NAMES)},
    )


def draw(pool, seed: int, baseline_n: int, *, images="normal", **shift):
    """A baseline and live traffic drawn from disjoint images of the pool."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool["normal"]))
    baseline = baseline_of(pool["normal"][order[:baseline_n]], *outputs(rng, baseline_n))
    live_rows = order[baseline_n : baseline_n + LIVE]
    live = live_of(pool[images][live_rows], *outputs(rng, LIVE, **shift))
    return baseline, live


def violated_features(baseline: Baseline, live: LiveTraffic) -> set[str]:
    report = evaluate_drift(live, baseline, DriftThresholds())
    assert report.status in ("ok", "violations")  # every check ran
    return {check.feature_name for check in report.violated}


@pytest.mark.parametrize("baseline_n", [84, 166])  # the validation and test split sizes
def test_in_distribution_traffic_almost_never_raises_a_violation(pool, baseline_n):
    alarms = [violated_features(*draw(pool, seed, baseline_n)) for seed in SEEDS]
    share = sum(1 for features in alarms if features) / len(SEEDS)
    assert share <= MAX_FALSE_ALARM_SHARE, alarms


def test_the_chi_square_gate_silences_psi_noise_at_these_sizes(pool):
    """The rule this replaces (confidence PSI > 0.2 over 20 bins against 84 images) alarms on
    in-distribution draws several times as often as the gated check on the same draws."""
    psi_alone = gated = 0
    for seed in SEEDS:
        baseline, live = draw(pool, seed, 84)
        psi = population_stability_index(baseline.confidence_counts, live.confidence_counts)
        psi_alone += psi > 0.2
        gated += "top_confidence_histogram" in violated_features(baseline, live)
    assert psi_alone >= 4 * max(gated, 1), (psi_alone, gated)


@pytest.mark.parametrize(
    ("shift", "feature"),
    [
        ({"images": "dark"}, "image_brightness"),
        ({"unsure_share": 0.4}, "top_confidence_histogram"),
        ({"bicycles": 0.8}, "predicted_class_mix"),
    ],
)
def test_shifted_traffic_raises_the_matching_violation(pool, shift, feature):
    hits = [feature in violated_features(*draw(pool, seed, 166, **shift)) for seed in SEEDS]
    assert sum(hits) / len(SEEDS) >= 0.95
