"""Champion/challenger: the same figures as `scones evaluate`, the paired test, the refusals."""

from __future__ import annotations

import hashlib

import pytest
from review_helpers import colour_layout, colour_model

from scones.errors import UsageError
from scones.model.evaluate import evaluate_model
from scones.review.compare import (
    ComparisonError,
    DataOverlapError,
    compare_models,
    mcnemar_exact,
    promotion_decision,
)
from scones.store import open_store


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    data = colour_layout(root / "data")
    return {
        "data": data,
        "store": open_store(str(data)),
        "champion": colour_model(root / "champion"),
        "weaker": colour_model(root / "weaker", strength=1.0, version=2),
        "backwards": colour_model(root / "backwards", strength=-4.0, version=3),
    }


def test_each_column_equals_what_evaluate_reports(setup):
    result = compare_models(setup["champion"], setup["weaker"], setup["store"], threshold=0.93)
    for role in ("champion", "candidate"):
        model_dir = setup["champion"] if role == "champion" else setup["weaker"]
        evaluated = evaluate_model(model_dir, setup["store"], split="test", threshold=0.93)
        figures = result[role]
        assert figures["accuracy"] == evaluated["accuracy"]
        assert figures["ece"] == evaluated["ece"]
        assert figures["coverage"] == evaluated["at_threshold"]["coverage"]
        assert figures["selective_accuracy"] == evaluated["at_threshold"]["selective_accuracy"]
    assert result["data"]["n"] == evaluated["n"] == 24
    assert result["data"]["fingerprint"] == evaluated["data"]["fingerprint"]
    # The same argmax, less confident: equal accuracy, no discordant pairs, lower coverage.
    assert result["difference"]["accuracy"] == 0.0
    assert result["candidate"]["coverage"] < result["champion"]["coverage"]
    assert result["mcnemar"]["p_value"] == 1.0
    assert result["mcnemar"]["champion_only_correct"] == 0
    assert result["mcnemar"]["candidate_only_correct"] == 0


def test_a_backwards_candidate_loses_significantly_and_is_not_promoted(setup):
    result = compare_models(setup["champion"], setup["backwards"], setup["store"], threshold=0.93)
    test = result["mcnemar"]
    assert test["both_correct"] == 0  # it disagrees on every image
    assert test["champion_only_correct"] > test["candidate_only_correct"]
    assert test["p_value"] < 0.05
    decision = promotion_decision(result, margin=0.02)
    assert not decision.promote
    assert "worse than production" in decision.reason
    assert f"{result['candidate']['accuracy']:.4f}" in decision.reason
    # The reverse comparison: the better model is promoted over the backwards one.
    reverse = compare_models(setup["backwards"], setup["champion"], setup["store"], threshold=0.93)
    assert promotion_decision(reverse).promote


def test_the_margin_admits_a_slightly_worse_candidate():
    result = {
        "data": {"split": "test", "n": 100},
        "champion": {"accuracy": 0.90},
        "candidate": {"accuracy": 0.89},
        "mcnemar": {"p_value": 0.5, "candidate_only_correct": 1, "champion_only_correct": 2},
    }
    assert not promotion_decision(result, margin=0.0).promote
    assert promotion_decision(result, margin=0.02).promote
    with pytest.raises(UsageError, match="--margin must be between 0 and 1"):
        promotion_decision(result, margin=-0.1)


def test_mcnemar_exact_matches_the_binomial_by_hand():
    import numpy as np

    champion = np.array([True] * 8 + [False] * 2 + [True] * 5)
    candidate = np.array([False] * 8 + [True] * 2 + [True] * 5)
    test = mcnemar_exact(champion, candidate)
    # 8 vs 2 discordant: two-sided P = 2 * P(X <= 2 | n=10, p=1/2) = 2 * 56/1024
    assert test["p_value"] == pytest.approx(2 * 56 / 1024)
    assert (test["champion_only_correct"], test["candidate_only_correct"]) == (8, 2)


def test_a_split_the_candidate_was_trained_on_is_refused_by_checksum(setup, tmp_path):
    data = setup["data"]
    trained = colour_model(tmp_path / "trained", version=4, training={"source": str(data)})
    with pytest.raises(DataOverlapError) as caught:
        compare_models(setup["champion"], trained, setup["store"], split="train", threshold=0.9)
    message = str(caught.value)
    train = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in data.glob("train/train-*"))
    named = [sha for sha in train if f"sha256:{sha[:16]} (train of {data})" in message]
    assert named == train[:5] and "and 19 more" in message
    assert "shares 24 image(s)" in message and "candidate" in message
    # The held-out test split of the same data is fine.
    compare_models(setup["champion"], trained, setup["store"], split="test", threshold=0.9)


def test_reviewed_images_in_the_candidates_training_are_an_overlap_too(setup, tmp_path):
    test_image = (setup["data"] / "test" / "test-005.png").read_bytes()
    digest = hashlib.sha256(test_image).hexdigest()
    retrained = colour_model(
        tmp_path / "retrained",
        version=5,
        training={"reviewed": {"count": 1, "image_sha256": [digest]}},
    )
    with pytest.raises(DataOverlapError, match=rf"sha256:{digest[:16]} \(reviewed images\)"):
        compare_models(setup["champion"], retrained, setup["store"], threshold=0.93)


def test_models_with_different_classes_are_refused(setup, tmp_path):
    other = colour_model(tmp_path / "other", class_names=("cat", "dog"))
    with pytest.raises(ComparisonError, match=r"classes differ.*\['cat', 'dog'\]"):
        compare_models(setup["champion"], other, setup["store"], threshold=0.93)
