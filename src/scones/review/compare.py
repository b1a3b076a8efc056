"""Champion/challenger: two models on the same images, side by side, with a paired test.

Both models are scored with :mod:`scones.model.evaluate`'s own functions, so each column
equals what ``scones evaluate`` reports for that model. The paired test is McNemar's exact
test: among the images exactly one model gets right, is the split between the two more
lopsided than a fair coin would make it?

A comparison is refused when the split shares an image with either model's training data
(its staged train and validation splits, and the reviewed images it was given), named by
checksum, and when the models' classes differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scones.data.layout import image_key, read_lst
from scones.errors import SconesError, UsageError
from scones.model.artifact import ModelCard, OnnxClassifier
from scones.model.dataset import load_split
from scones.model.evaluate import (
    EvaluationError,
    check_class_names,
    classification_metrics,
    predict_pixels,
)
from scones.model.registry import DEFAULT_ALIAS, promote, read_aliases, resolve_model
from scones.store import ObjectStore, open_store

TRAINING_SPLITS = ("train", "validation")
SHOWN_OVERLAP = 5


class ComparisonError(SconesError):
    """The two models cannot be compared fairly on this data."""


class DataOverlapError(ComparisonError):
    """The evaluation split holds images a model was trained (or selected) on."""


@dataclass(frozen=True)
class TrainingImages:
    """The checksums of the images a model saw in training, as far as they can be known."""

    checksums: dict[str, str]  # sha256 -> where (``train of <uri>``, ``reviewed``)
    unverified: list[str]  # what could not be checked, and why


def reviewed_checksums(card: ModelCard) -> list[str]:
    """The reviewed images a model was trained with, as ``scones train --include-reviewed``
    records them in ``model.json``."""
    reviewed = card.training.get("reviewed")
    if not isinstance(reviewed, dict):
        return []
    return [str(value) for value in reviewed.get("image_sha256") or []]


def training_images(card: ModelCard, *, s3_endpoint_url: str | None = None) -> TrainingImages:
    """Checksums of the images behind ``card``: its training source's train and validation
    splits (read again from ``training.source``) and the reviewed images it records."""
    checksums = {sha: "reviewed images" for sha in reviewed_checksums(card)}
    unverified: list[str] = []
    source = card.training.get("source")
    if not isinstance(source, str) or not source:
        unverified.append(f"model {card.name} v{card.version} records no training source")
        return TrainingImages(checksums, unverified)
    try:
        store = open_store(source, s3_endpoint_url=s3_endpoint_url)
        for split in TRAINING_SPLITS:
            for entry in read_lst(store, split):
                data = store.get(image_key(split, entry.path))
                checksums.setdefault(hashlib.sha256(data).hexdigest(), f"{split} of {source}")
    except (SconesError, OSError) as exc:
        unverified.append(f"training source {source} of {card.name} is not readable: {exc}")
    return TrainingImages(checksums, unverified)


def split_checksums(store: ObjectStore, split: str, prefix: str = "") -> list[str]:
    return [
        hashlib.sha256(store.get(image_key(split, entry.path, prefix))).hexdigest()
        for entry in read_lst(store, split, prefix)
    ]


def check_no_overlap(
    role: str, card: ModelCard, seen: TrainingImages, evaluated: list[str], where: str
) -> None:
    overlap = sorted({sha for sha in evaluated if sha in seen.checksums})
    if not overlap:
        return
    shown = ", ".join(
        f"sha256:{sha[:16]} ({seen.checksums[sha]})" for sha in overlap[:SHOWN_OVERLAP]
    )
    more = f" and {len(overlap) - SHOWN_OVERLAP} more" if len(overlap) > SHOWN_OVERLAP else ""
    raise DataOverlapError(
        f"{where} shares {len(overlap)} image(s) with the training data of the {role} "
        f"({card.name} v{card.version}): {shown}{more}; compare on a held-out split"
    )


def mcnemar_exact(champion_correct: np.ndarray, candidate_correct: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test: a two-sided binomial test on the discordant pairs."""
    from scipy.stats import binomtest

    champion_only = int(np.sum(champion_correct & ~candidate_correct))
    candidate_only = int(np.sum(candidate_correct & ~champion_correct))
    discordant = champion_only + candidate_only
    p_value = 1.0 if discordant == 0 else float(binomtest(champion_only, discordant, 0.5).pvalue)
    return {
        "test": "McNemar exact (two-sided binomial on discordant pairs)",
        "champion_only_correct": champion_only,
        "candidate_only_correct": candidate_only,
        "both_correct": int(np.sum(champion_correct & candidate_correct)),
        "both_wrong": int(np.sum(~champion_correct & ~candidate_correct)),
        "p_value": p_value,
    }


def _figures(metrics: dict[str, Any], card: ModelCard, model_dir: Path) -> dict[str, Any]:
    at = metrics["at_threshold"]
    return {
        "model": {"name": card.name, "version": card.version, "path": str(model_dir)},
        "accuracy": metrics["accuracy"],
        "coverage": at["coverage"],
        "selective_accuracy": at["selective_accuracy"],
        "n_covered": at["n_covered"],
        "ece": metrics["ece"],
        "log_loss": metrics["log_loss"],
    }


def compare_models(
    champion_dir: Path,
    candidate_dir: Path,
    store: ObjectStore,
    *,
    split: str = "test",
    prefix: str = "",
    threshold: float,
    s3_endpoint_url: str | None = None,
) -> dict[str, Any]:
    """Both models on ``split`` of the staged data in ``store``: figures, differences, test."""
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be between 0 and 1, got {threshold!r}")
    champion = OnnxClassifier(champion_dir)
    candidate = OnnxClassifier(candidate_dir)
    if champion.class_names != candidate.class_names:
        raise ComparisonError(
            f"the models' classes differ: champion {champion.card.name} v{champion.card.version}"
            f" has {champion.class_names}, candidate {candidate.card.name} "
            f"v{candidate.card.version} has {candidate.class_names}"
        )
    classes = champion.class_names
    check_class_names(store, prefix, classes)
    where = f"split {split!r} of {store.uri}"
    evaluated = split_checksums(store, split, prefix)
    if not evaluated:
        raise EvaluationError(f"{where} has no images to evaluate")
    unverified: list[str] = []
    for role, model in (("champion", champion), ("candidate", candidate)):
        seen = training_images(model.card, s3_endpoint_url=s3_endpoint_url)
        check_no_overlap(role, model.card, seen, evaluated, where)
        unverified += seen.unverified

    results: dict[str, dict[str, Any]] = {}
    correct: dict[str, np.ndarray] = {}
    fingerprint = ""
    for role, model, model_dir in (
        ("champion", champion, champion_dir),
        ("candidate", candidate, candidate_dir),
    ):
        images = load_split(
            store, split, prep=model.preprocessing, prefix=prefix, num_classes=len(classes)
        )
        probabilities = predict_pixels(model, images.pixels)
        metrics = classification_metrics(probabilities, images.labels, classes, threshold=threshold)
        results[role] = _figures(metrics, model.card, model_dir)
        correct[role] = probabilities.argmax(axis=1) == images.labels
        fingerprint = images.fingerprint
    champion_figures, candidate_figures = results["champion"], results["candidate"]
    return {
        "data": {"uri": store.uri, "split": split, "n": len(evaluated), "fingerprint": fingerprint},
        "threshold": threshold,
        "champion": champion_figures,
        "candidate": candidate_figures,
        "difference": {
            name: _difference(candidate_figures[name], champion_figures[name])
            for name in ("accuracy", "coverage", "selective_accuracy", "ece")
        },
        "mcnemar": mcnemar_exact(correct["champion"], correct["candidate"]),
        "overlap": {"checked": True, "unverified": unverified},
    }


def _difference(candidate: float | None, champion: float | None) -> float | None:
    if candidate is None or champion is None:
        return None
    return candidate - champion


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def promotion_decision(comparison: dict[str, Any], margin: float = 0.0) -> PromotionDecision:
    """Promote unless the candidate's accuracy is below the champion's by more than margin."""
    if not 0.0 <= margin <= 1.0:
        raise UsageError(f"--margin must be between 0 and 1, got {margin!r}")
    champion = comparison["champion"]["accuracy"]
    candidate = comparison["candidate"]["accuracy"]
    test = comparison["mcnemar"]
    numbers = (
        f"accuracy on {comparison['data']['split']} ({comparison['data']['n']} images): "
        f"candidate {candidate:.4f}, production {champion:.4f} "
        f"(difference {candidate - champion:+.4f}, margin {margin:g}); McNemar p = "
        f"{test['p_value']:.3g} ({test['candidate_only_correct']} images only the candidate "
        f"gets right, {test['champion_only_correct']} only production)"
    )
    if candidate < champion - margin:
        return PromotionDecision(False, f"the candidate is worse than production: {numbers}")
    return PromotionDecision(True, f"the candidate is not worse than production: {numbers}")


class PromotionRefusedError(SconesError):
    """``--if-better``: the candidate is worse than production by more than the margin."""


def compare_references(
    champion_ref: str,
    candidate_ref: str,
    data: ObjectStore,
    *,
    registry: ObjectStore,
    cache_dir: Path,
    name: str | None = None,
    split: str = "test",
    threshold: float,
    s3_endpoint_url: str | None = None,
) -> dict[str, Any]:
    """Resolve both model references through ``registry``, then :func:`compare_models`."""
    champion_dir = resolve_model(champion_ref, store=registry, cache_dir=cache_dir, name=name)
    candidate_dir = resolve_model(candidate_ref, store=registry, cache_dir=cache_dir, name=name)
    return compare_models(
        champion_dir,
        candidate_dir,
        data,
        split=split,
        threshold=threshold,
        s3_endpoint_url=s3_endpoint_url,
    )


@dataclass(frozen=True)
class Promotion:
    version: int
    alias: str
    previous: int | None
    decision: PromotionDecision
    comparison: dict[str, Any] | None  # None: no model held the alias, nothing to beat


def promote_if_better(
    registry: ObjectStore,
    name: str,
    version: int,
    *,
    data: ObjectStore,
    cache_dir: Path,
    split: str = "test",
    threshold: float,
    margin: float = 0.0,
    alias: str = DEFAULT_ALIAS,
    s3_endpoint_url: str | None = None,
) -> Promotion:
    """Point ``alias`` at ``version`` only when it is not worse than the model there now.

    Refused (PromotionRefusedError, with the numbers) when its accuracy on the held-out
    ``split`` is below the current model's by more than ``margin``; a comparison that cannot
    be fair (shared images, other classes) is refused by :func:`compare_models`.
    """
    if not 0.0 <= margin <= 1.0:
        raise UsageError(f"--margin must be between 0 and 1, got {margin!r}")
    current = read_aliases(registry, name).get(alias)
    if current is None:
        decision = PromotionDecision(True, f"no version of {name} is {alias} yet")
        previous = promote(registry, name, version, alias)
        return Promotion(version, alias, previous, decision, None)
    comparison = compare_references(
        str(current),
        str(version),
        data,
        registry=registry,
        cache_dir=cache_dir,
        name=name,
        split=split,
        threshold=threshold,
        s3_endpoint_url=s3_endpoint_url,
    )
    decision = promotion_decision(comparison, margin)
    if not decision.promote:
        raise PromotionRefusedError(
            f"not promoting {name} version {version} to {alias} (version {current}): "
            f"{decision.reason}"
        )
    previous = promote(registry, name, version, alias)
    return Promotion(version, alias, previous, decision, comparison)
