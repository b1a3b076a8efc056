"""Evaluation: metrics on known numbers, the served preprocessing, the CLI, bad data."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from model_helpers import shared_sample, write_layout
from PIL import Image

from conftest import noise_png, solid_png
from scones.model.artifact import OnnxClassifier
from scones.model.augment import cutout, random_crop, random_flip
from scones.model.calibrate import fit_temperature, fit_temperature_mle, platt_targets
from scones.model.dataset import load_split
from scones.model.evaluate import (
    EvaluationError,
    batched_logits,
    bootstrap_coverage,
    classification_metrics,
    coverage_interval,
    eval_batch_size,
    evaluate_model,
    expected_calibration_error,
    lowest_threshold_reaching,
)
from scones.model.preprocess import Preprocessing, normalize_hwc_uint8, preprocess_batch
from scones.store import open_store

RED, BLUE = (200, 30, 30), (30, 30, 200)


def rgba_png(rgb: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (32, 32), (*rgb, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_metrics_on_known_predictions() -> None:
    probabilities = np.array(
        [[0.99, 0.01], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.05, 0.95]], dtype=np.float32
    )
    labels = np.array([0, 0, 1, 1, 1])
    result = classification_metrics(probabilities, labels, ["a", "b"], threshold=0.75)
    assert result["n"] == 5 and result["accuracy"] == pytest.approx(0.8)
    assert result["confusion_matrix"] == [[2, 0], [1, 2]]
    assert result["per_class"]["a"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "support": 2,
    }
    assert result["per_class"]["b"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "support": 3,
    }
    expected_loss = -np.mean(np.log([0.99, 0.8, 0.7, 0.4, 0.95]))
    assert result["log_loss"] == pytest.approx(expected_loss, rel=1e-5)
    at = result["at_threshold"]
    assert (at["coverage"], at["selective_accuracy"], at["n_covered"]) == (0.6, 1.0, 3)
    # 0.7 is the lowest cut with no mistakes above it (0.6 lets the wrong answer in).
    assert result["recommended_threshold"] == pytest.approx(0.7)
    assert result["coverage_at_recommended"] == pytest.approx(0.8)
    rows = {row["threshold"]: row for row in result["risk_coverage"]}
    assert rows[0.5]["coverage"] == 1.0 and rows[0.99]["n_covered"] == 1
    assert set(result) >= {
        "accuracy",
        "n",
        "per_class",
        "confusion_matrix",
        "ece",
        "risk_coverage",
        "recommended_threshold",
    }


def test_threshold_search_edges() -> None:
    top = np.array([0.9, 0.9, 0.8])
    assert lowest_threshold_reaching(top, np.array([1.0, 0.0, 1.0]), 0.99) is None
    assert lowest_threshold_reaching(top, np.array([1.0, 1.0, 0.0]), 0.99) == pytest.approx(0.9)
    assert lowest_threshold_reaching(np.array([]), np.array([]), 0.99) is None
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0
    assert expected_calibration_error(np.array([0.9]), np.array([0.0])) == pytest.approx(0.9)


def test_temperature_is_recovered() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(4000, 2))
    true_t = 2.5
    p1 = 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0]) / true_t))
    labels = (rng.random(4000) < p1).astype(np.int64)
    assert fit_temperature_mle(logits, labels) == pytest.approx(true_t, rel=0.05)
    # The one-standard-error rule errs towards less confidence, by little with many images.
    assert true_t * 0.95 < fit_temperature(logits, labels) < true_t * 1.15
    assert fit_temperature(logits[:0], labels[:0]) == 1.0


def test_temperature_does_not_oversharpen_on_a_small_split() -> None:
    # 89 confident right answers and one wrong: the plain optimum sharpens hard.
    rng = np.random.default_rng(1)
    logits = np.zeros((90, 2))
    logits[:, 0] = rng.normal(2.0, 0.5, 90)
    labels = np.zeros(90, dtype=np.int64)
    labels[0] = 1
    plain, guarded = fit_temperature_mle(logits, labels), fit_temperature(logits, labels)
    assert plain < 0.5
    assert guarded > 1.3 * plain


def test_temperature_stays_finite_when_validation_has_no_mistake() -> None:
    # 84 right answers with wide margins: the plain NLL optimum is the smallest temperature
    # there is, and every unseen answer would be served as certain.
    rng = np.random.default_rng(2)
    labels = np.arange(84) % 2
    margins = rng.normal(6.0, 2.0, 84).clip(0.5)
    logits = np.zeros((84, 2))
    logits[np.arange(84), labels] = margins
    assert fit_temperature_mle(logits, labels) == pytest.approx(0.05, rel=0.02)
    temperature = fit_temperature(logits, labels)
    assert temperature > 0.5
    # No more confident on average than the rule of succession allows: 43 of 44 per class.
    shifted = logits / temperature
    top = np.exp(shifted.max(1)) / np.exp(shifted).sum(1)
    assert 0.9 < top.mean() <= 43 / 44


def test_platt_targets_follow_the_rule_of_succession() -> None:
    targets = platt_targets(np.array([0, 0, 0, 1, 2]), 3)
    np.testing.assert_allclose(targets[0], [4 / 5, 1 / 10, 1 / 10])
    np.testing.assert_allclose(targets[3], [1 / 6, 2 / 3, 1 / 6])
    np.testing.assert_allclose(targets.sum(1), 1.0)


def test_augmentations_keep_shape_and_are_seeded() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop(images, 0, gen), images)
    cropped = random_crop(images, 2, torch.Generator().manual_seed(5))
    assert cropped.shape == images.shape
    assert torch.equal(cropped, random_crop(images, 2, torch.Generator().manual_seed(5)))
    flipped = random_flip(images, torch.Generator().manual_seed(1))
    for i in range(2):
        assert torch.equal(flipped[i], images[i]) or torch.equal(flipped[i], images[i].flip(2))
    holes = cutout(images + 1, 4, torch.Generator().manual_seed(2))
    zeros_per_image = (holes == 0).reshape(2, -1).sum(1)
    assert all(0 < z <= 3 * 16 for z in zeros_per_image.tolist())


def test_training_pixels_match_the_endpoint_preprocessing(
    tmp_path: Path, shared_vehicles: Path
) -> None:
    rows = shared_sample(shared_vehicles, 3)
    rows.append((0, rgba_png(RED)))
    root = write_layout(tmp_path, {"test": rows})
    prep = Preprocessing()
    loaded = load_split(open_store(str(root)), "test", prep=prep)
    served = preprocess_batch([data for _, data in rows], prep)
    np.testing.assert_array_equal(normalize_hwc_uint8(loaded.pixels, prep), served)


@pytest.mark.parametrize("shape", [(32, 32, 3), (4, 128, 96, 3)])
def test_byte_pixels_normalise_bit_for_bit_as_the_float_arithmetic(shape) -> None:
    # The endpoint looks bytes up in per-channel tables; training and evaluation of float
    # pixels use the arithmetic. Both must give the very same float32 inputs.
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for prep in (Preprocessing(), Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))):
        by_table = normalize_hwc_uint8(pixels, prep)
        by_arithmetic = normalize_hwc_uint8(pixels.astype(np.float32), prep)
        assert by_table.dtype == np.float32 and by_table.flags.c_contiguous
        assert by_table.shape == (*shape[:-3], 3, *shape[-3:-1])
        np.testing.assert_array_equal(by_table, by_arithmetic)


def colour_layout(root: Path) -> Path:
    rows = [
        (0, solid_png(RED)),
        (0, rgba_png(RED)),
        (1, solid_png(BLUE)),
        (1, rgba_png(BLUE)),
        (0, noise_png(1)),
        (1, noise_png(2)),
    ]
    return write_layout(root, {"test": rows})


def test_evaluate_model_on_a_colour_layout(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = open_store(str(colour_layout(tmp_path)))
    result = evaluate_model(tiny_model_dir, store, split="test", threshold=0.93)
    assert result["n"] == 6
    assert result["confusion_matrix"][0][0] == 3 - result["confusion_matrix"][0][1]
    # The four solid images are confident and right; the noise ones are unsure.
    assert result["at_threshold"]["n_covered"] == 4
    assert result["at_threshold"]["selective_accuracy"] == 1.0
    assert result["recommended_threshold"] is not None
    assert result["coverage_at_recommended"] >= 4 / 6
    assert result["data"]["split"] == "test"


def test_evaluation_batches_are_bounded_by_pixels(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 256 images of 32x32, but only 16 of 224x224 per ONNX Runtime call (memory).
    assert eval_batch_size((32, 32)) == 256
    assert eval_batch_size((224, 224)) == 16
    assert eval_batch_size((4096, 4096)) == 1
    classifier = OnnxClassifier(tiny_model_dir)
    inputs = np.random.default_rng(0).uniform(-1, 1, (7, *classifier.card.input_shape))
    inputs = inputs.astype(np.float32)
    whole = classifier.logits(inputs)
    monkeypatch.setattr("scones.model.evaluate.EVAL_BATCH", 3)
    np.testing.assert_allclose(batched_logits(classifier, inputs), whole, atol=1e-5)
    assert batched_logits(classifier, inputs[:0]).shape == (0, 2)


def test_evaluate_refuses_other_class_names(tiny_model_dir: Path, tmp_path: Path) -> None:
    root = write_layout(tmp_path, {"test": [(0, solid_png(RED))]}, class_names=["cat", "dog"])
    with pytest.raises(EvaluationError, match=r"class_names \['cat', 'dog'\]"):
        evaluate_model(tiny_model_dir, open_store(str(root)), split="test")


def test_evaluate_refuses_an_empty_split(tiny_model_dir: Path, tmp_path: Path) -> None:
    root = write_layout(tmp_path, {"test": []})
    with pytest.raises(EvaluationError, match="no images"):
        evaluate_model(tiny_model_dir, open_store(str(root)), split="test")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scones.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_evaluate_json_and_table(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = colour_layout(tmp_path / "data")
    result = run_cli("evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 6 and report["at_threshold"]["threshold"] == 0.93
    table = run_cli(
        "evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--threshold", "0.9"
    )
    assert table.returncode == 0, table.stderr
    assert "risk-coverage" in table.stdout and "recommended threshold" in table.stdout
    interval = report["coverage_interval"]
    assert 0.0 <= interval["low"] <= report["coverage_at_recommended"] <= interval["high"] <= 1
    assert "another set of 6 images like this one" in " ".join(table.stdout.split())


def test_cli_evaluate_missing_images_and_bad_ref(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = colour_layout(tmp_path / "data")
    (data / "test" / "test_0002.png").unlink()
    result = run_cli("evaluate", "--model", str(tiny_model_dir), "--data", str(data))
    assert result.returncode != 0
    assert "test_0002.png" in result.stderr and "not in the store" in result.stderr
    bad = run_cli(
        "evaluate", "--model", "nightly", "--data", str(data), "--store", str(tmp_path / "empty")
    )
    assert bad.returncode != 0 and "has no alias 'nightly'" in bad.stderr


def test_evaluate_reads_a_layout_from_s3(
    tiny_model_dir: Path, tmp_path: Path, s3_bucket: str
) -> None:
    local = colour_layout(tmp_path / "data")
    store = open_store(f"s3://{s3_bucket}/staged")
    for path in sorted(local.rglob("*")):
        if path.is_file():
            store.put(path.relative_to(local).as_posix(), path.read_bytes())
    result = evaluate_model(tiny_model_dir, store, split="test", threshold=0.93)
    assert result["n"] == 6 and result["at_threshold"]["n_covered"] == 4


def test_oversized_image_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scones.model.dataset as dataset

    root = write_layout(tmp_path, {"test": [(0, solid_png(RED)), (1, noise_png(3))]})
    monkeypatch.setattr(dataset, "MAX_IMAGE_BYTES", 200)  # the noise PNG is ~3 KB
    with pytest.raises(dataset.LayoutError, match=r"test_0001\.png is over the 200 byte limit"):
        load_split(open_store(str(root)), "test", prep=Preprocessing())


def test_confident_probabilities_keep_their_order() -> None:
    # Margins of 20 and 25 both round to exactly 1.0 in float32; the threshold search and
    # the routing threshold need them apart.
    from scones.model.artifact import softmax

    probabilities = softmax(np.array([[0.0, 20.0], [0.0, 25.0], [0.0, 30.0]], dtype=np.float32))
    top = probabilities.max(axis=1)
    assert top[0] < top[1] < top[2] < 1.0
    correct = np.array([0.0, 1.0, 1.0])  # the least confident image is wrong
    assert lowest_threshold_reaching(top, correct, 0.99) == pytest.approx(top[1])


def ranked(correct: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Top probabilities falling from 1.0, with these answers right or wrong in that order."""
    top = np.linspace(1.0, 0.5, len(correct))
    return top, np.asarray(correct, dtype=np.float64)


def test_coverage_interval_is_a_point_when_every_answer_is_right() -> None:
    top, correct = ranked([True] * 40)
    interval = coverage_interval(top, correct, 0.99)
    assert interval is not None
    assert (interval["low"], interval["high"]) == (1.0, 1.0)
    assert interval["confidence"] == 0.95 and interval["resamples"] == 1000


def test_one_confident_error_makes_the_figure_swing() -> None:
    # The most confident answer is wrong: on this set nothing reaches 99 %, but test sets
    # drawn without that image route everything.
    top, correct = ranked([False] + [True] * 59)
    assert (
        classification_metrics(
            np.stack([top, 1 - top], 1), np.where(correct == 1, 0, 1), ["a", "b"]
        )["coverage_at_recommended"]
        == 0.0
    )
    interval = coverage_interval(top, correct, 0.99)
    assert interval is not None and interval["low"] == 0.0 and interval["high"] == 1.0
    samples = bootstrap_coverage(top, correct, 0.99, resamples=2000)
    # A resample leaves the image out with probability (59/60)^60 ~ 0.36.
    assert 0.30 < (samples == 1.0).mean() < 0.42


def test_bootstrap_coverage_repeats_for_a_seed_and_follows_the_sample_size() -> None:
    top, correct = ranked([i % 7 != 3 for i in range(70)])
    first = bootstrap_coverage(top, correct, 0.99, seed=1)
    assert np.array_equal(first, bootstrap_coverage(top, correct, 0.99, seed=1))
    assert not np.array_equal(first, bootstrap_coverage(top, correct, 0.99, seed=2))
    # One image per test set: covered exactly when it is right.
    single = bootstrap_coverage(top, correct, 0.99, sample_size=1, resamples=4000)
    assert abs(single.mean() - correct.mean()) < 0.03


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bootstrap_coverage(np.array([]), np.array([]), 0.99), "at least one prediction"),
        (lambda: bootstrap_coverage(*ranked([True]), 0.99, resamples=0), "resamples .* got 0"),
        (lambda: bootstrap_coverage(*ranked([True]), 0.99, sample_size=0), "sample_size .* 0"),
        (lambda: coverage_interval(*ranked([True]), 0.99, confidence=1.5), "confidence .* 1.5"),
    ],
)
def test_bootstrap_refuses_bad_arguments(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_no_interval_without_predictions() -> None:
    assert coverage_interval(np.array([]), np.array([]), 0.99) is None
