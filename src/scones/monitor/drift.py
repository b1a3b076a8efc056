"""Drift checks: live traffic against the model's ``baseline.json``, each a significance test.

Every check answers two questions, and is a violation only when both say yes:

- Is the difference real for the sample sizes at hand? A two-sample test whose null
  hypothesis is "both samples come from one distribution": chi-square on the binned counts
  (predicted class, top confidence), Kolmogorov-Smirnov on raw values (image statistics).
  Both sides are samples, so the baseline's own noise counts too.
- Is it large enough to matter? The effect size: population stability index (PSI) for the
  binned checks, the KS distance for the image statistics.

Each check object carries its own SageMaker-style violation text, so the constraint
violations are built from the checks, never parsed back out of the summary.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from scones.images import IMAGE_STAT_NAMES
from scones.model.baseline import CONFIDENCE_BIN_EDGES

DRIFT_CHECK = "baseline_drift_check"
THRESHOLD_CHECK = "confidence_threshold_check"
# Shares of zero make PSI infinite; the usual practice floors them at a small share.
PSI_FLOOR = 1e-4
# Chi-square's approximation needs expected counts of about 5 per cell: sparse bins merge.
MIN_EXPECTED_COUNT = 5.0


@dataclass(frozen=True)
class DriftThresholds:
    """When a drift test counts as a violation (see docs/monitor.md)."""

    psi: float = 0.2  # PSI above this: a large shift (the usual rule of thumb) ...
    chi2_p_value: float = 0.01  # ... and the binned counts differ significantly (chi-square)
    ks_p_value: float = 0.01  # KS: the shift is statistically real ...
    ks_statistic: float = 0.1  # ... and large enough to matter (max CDF distance)
    min_records: int = 30  # fewer live records than this: too noisy to judge, skipped
    max_under_threshold_share: float | None = None  # optional: alert on the failure rate

    def as_dict(self) -> dict[str, Any]:
        return {
            "psi": self.psi,
            "chi2_p_value": self.chi2_p_value,
            "ks_p_value": self.ks_p_value,
            "ks_statistic": self.ks_statistic,
            "min_records": self.min_records,
            "max_under_threshold_share": self.max_under_threshold_share,
        }


@dataclass(frozen=True)
class Baseline:
    """``baseline.json``, checked: what in-distribution traffic looked like to the model."""

    class_names: list[str]
    class_counts: list[float]
    confidence_counts: list[float]
    image_stats: dict[str, np.ndarray]
    split: str | None
    n: int


class BaselineProblem(ValueError):
    """A ``baseline.json`` that cannot be compared against; the message names the key."""


def parse_baseline(document: Any) -> Baseline:
    """The typed baseline, or :class:`BaselineProblem` naming what is wrong."""
    if not isinstance(document, dict):
        raise BaselineProblem("not a JSON object")
    names = document.get("class_names")
    if not isinstance(names, list) or not names:
        raise BaselineProblem("class_names is missing or empty")
    class_mix = document.get("class_mix")
    if not isinstance(class_mix, dict):
        raise BaselineProblem("class_mix is missing")
    histogram = document.get("confidence_histogram")
    bins = len(CONFIDENCE_BIN_EDGES) - 1
    if not isinstance(histogram, list) or len(histogram) != bins:
        raise BaselineProblem(
            f"confidence_histogram must have {bins} bins (edges {list(CONFIDENCE_BIN_EDGES)})"
        )
    edges = document.get("confidence_bin_edges")
    if edges is not None and [round(float(e), 6) for e in edges] != list(CONFIDENCE_BIN_EDGES):
        raise BaselineProblem(
            "confidence_bin_edges differ from scones.model.baseline.CONFIDENCE_BIN_EDGES"
        )
    image_stats = document.get("image_stats", {})
    if not isinstance(image_stats, dict):
        raise BaselineProblem("image_stats is not an object")
    try:
        confidence_counts = [float(count) for count in histogram]
        n = int(document.get("n") or sum(confidence_counts))
        # Counts when recorded (format 2), else the shares of the n images (format 1).
        counts = document.get("class_counts")
        if isinstance(counts, dict):
            class_counts = [float(counts.get(name, 0)) for name in names]
        else:
            class_counts = [float(class_mix.get(name, 0.0)) * n for name in names]
        stats = {
            name: np.asarray(values, dtype=np.float64)
            for name, values in image_stats.items()
            if isinstance(values, list) and values
        }
    except (TypeError, ValueError) as exc:
        raise BaselineProblem(f"a count or statistic is not a number ({exc})") from None
    if sum(class_counts) <= 0 or sum(confidence_counts) <= 0:
        raise BaselineProblem("class_mix and confidence_histogram must count some records")
    split = document.get("split")
    return Baseline(
        class_names=[str(name) for name in names],
        class_counts=class_counts,
        confidence_counts=confidence_counts,
        image_stats=stats,
        split=str(split) if split is not None else None,
        n=n,
    )


@dataclass(frozen=True)
class LiveTraffic:
    """What the aggregated traffic offers the checks (counts and bounded samples)."""

    class_names: list[str]
    class_counts: list[int]
    predictions: int
    under_threshold: int
    threshold: float
    confidence_counts: list[int]
    decoded_images: int
    image_stats: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftCheck:
    """One test's outcome, with the text a constraint violation carries."""

    feature_name: str
    test: str  # "psi" (chi-square + PSI), "ks" or "share"
    value: float | None
    p_value: float | None
    threshold: str
    violated: bool
    detail: str
    constraint_check_type: str
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature_name": self.feature_name,
            "check": self.test,
            "value": self.value,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "violated": self.violated,
            "detail": self.detail,
        }

    def violation(self) -> dict[str, str]:
        """SageMaker Model Monitor's shape of one entry of constraint_violations.json."""
        return {
            "feature_name": self.feature_name,
            "constraint_check_type": self.constraint_check_type,
            "description": self.description,
        }


@dataclass(frozen=True)
class DriftReport:
    """Every check, and the status: ok, violations, or skipped (with the reason)."""

    checks: list[DriftCheck]
    thresholds: DriftThresholds
    skipped_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def violated(self) -> list[DriftCheck]:
        return [check for check in self.checks if check.violated]

    @property
    def status(self) -> str:
        if self.violated:
            return "violations"
        return "skipped" if self.skipped_reason is not None else "ok"

    def skipped(self, reason: str) -> DriftReport:
        """The same checks, marked skipped for ``reason`` unless one already says why."""
        return replace(self, skipped_reason=self.skipped_reason or reason)

    def constraint_violations(self) -> dict[str, Any]:
        """SageMaker Model Monitor's constraint_violations.json shape."""
        return {"violations": [check.violation() for check in self.violated]}

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "skipped_reason": self.skipped_reason,
            "notes": list(self.notes),
            "thresholds": self.thresholds.as_dict(),
            "checks": [check.as_dict() for check in self.checks],
            "violations": len(self.violated),
        }


def evaluate_drift(
    live: LiveTraffic,
    baseline: Baseline | None,
    thresholds: DriftThresholds,
    *,
    skipped_reason: str | None = None,
) -> DriftReport:
    """Every check that can run; why drift was skipped when none could."""
    checks = [check for check in (under_threshold_share_check(live, thresholds),) if check]
    notes: list[str] = []
    if baseline is None:
        skipped_reason = skipped_reason or "no baseline"
    elif skipped_reason is None:
        drift_checks = baseline_checks(live, baseline, thresholds, notes)
        if not drift_checks:
            skipped_reason = "drift skipped: " + "; ".join(notes or ["no check could run"])
        checks.extend(drift_checks)
    return DriftReport(checks, thresholds, skipped_reason, notes)


def under_threshold_share_check(
    live: LiveTraffic, thresholds: DriftThresholds
) -> DriftCheck | None:
    """The optional alert on the share of predictions under the confidence threshold."""
    limit = thresholds.max_under_threshold_share
    if limit is None or not live.predictions:
        return None
    share = live.under_threshold / live.predictions
    detail = (
        f"{live.under_threshold} of {live.predictions} predictions under the confidence "
        f"threshold {live.threshold}"
    )
    return DriftCheck(
        feature_name="under_threshold_share",
        test="share",
        value=share,
        p_value=None,
        threshold=f"<= {limit}",
        violated=share > limit,
        detail=detail,
        constraint_check_type=THRESHOLD_CHECK,
        description=(
            f"Share under the confidence threshold: {share:.4f} exceeds threshold: {limit} "
            f"({detail})"
        ),
    )


def baseline_checks(
    live: LiveTraffic, baseline: Baseline, thresholds: DriftThresholds, notes: list[str]
) -> list[DriftCheck]:
    """The checks against the baseline that the traffic is large enough for; notes say why
    the others were skipped."""
    checks: list[DriftCheck] = []
    if live.predictions < thresholds.min_records:
        notes.append(
            f"class mix and confidence tests skipped: {live.predictions} predictions, fewer "
            f"than --min-records {thresholds.min_records}"
        )
    else:
        if live.class_names and len(live.class_names) != len(baseline.class_names):
            notes.append(
                f"class mix test skipped: the traffic has {len(live.class_names)} classes, the "
                f"baseline {len(baseline.class_names)} ({baseline.class_names})"
            )
        else:
            checks.append(
                binned_check(
                    "predicted_class_mix",
                    baseline.class_counts,
                    live.class_counts,
                    thresholds,
                    ordered=False,
                )
            )
        checks.append(
            binned_check(
                "top_confidence_histogram",
                baseline.confidence_counts,
                live.confidence_counts,
                thresholds,
                ordered=True,
            )
        )
    for name in IMAGE_STAT_NAMES:
        reference = baseline.image_stats.get(name)
        if reference is None:
            notes.append(
                f"KS test of image {name} skipped: baseline.json has no image_stats.{name}"
            )
        elif live.decoded_images < thresholds.min_records:
            notes.append(
                f"KS test of image {name} skipped: {live.decoded_images} decoded images, fewer "
                f"than --min-records {thresholds.min_records}"
            )
        else:
            checks.append(ks_check(name, live.image_stats[name], reference, thresholds))
    return checks


def binned_check(
    feature: str,
    expected: Sequence[float],
    actual: Sequence[float],
    thresholds: DriftThresholds,
    *,
    ordered: bool,
) -> DriftCheck:
    """Chi-square test of homogeneity on the two rows of counts (sparse bins merged), with
    the PSI over the same bins as the effect size."""
    baseline_counts, live_counts = merge_sparse_bins(expected, actual, ordered=ordered)
    if len(baseline_counts) < 2:  # everything in one bin: the binned shapes are the same
        psi, p_value = 0.0, 1.0
    else:
        psi = population_stability_index(baseline_counts, live_counts)
        p_value = chi_square_p_value(baseline_counts, live_counts)
    violated = p_value < thresholds.chi2_p_value and psi > thresholds.psi
    baseline_n, live_n = round(sum(expected)), round(sum(actual))
    return DriftCheck(
        feature_name=feature,
        test="psi",
        value=psi,
        p_value=p_value,
        threshold=f"PSI > {thresholds.psi} and chi-square p < {thresholds.chi2_p_value}",
        violated=violated,
        detail=(
            f"population stability index {psi:.4f} (chi-square p-value {p_value:.3g}) over "
            f"{len(baseline_counts)} bins, {live_n} live against {baseline_n} baseline records"
        ),
        constraint_check_type=DRIFT_CHECK,
        description=(
            f"Baseline drift distance (population stability index): {psi:.4f} exceeds "
            f"threshold: {thresholds.psi}, chi-square p-value {p_value:.3g} below "
            f"{thresholds.chi2_p_value} ({live_n} live, {baseline_n} baseline records)"
        ),
    )


def ks_check(
    name: str, live: np.ndarray, reference: np.ndarray, thresholds: DriftThresholds
) -> DriftCheck:
    statistic, p_value = ks_two_sample(live, reference)
    violated = p_value < thresholds.ks_p_value and statistic > thresholds.ks_statistic
    threshold = f"p < {thresholds.ks_p_value} and D > {thresholds.ks_statistic}"
    return DriftCheck(
        feature_name=f"image_{name}",
        test="ks",
        value=statistic,
        p_value=p_value,
        threshold=threshold,
        violated=violated,
        detail=(
            f"KS distance {statistic:.4f} (p-value {p_value:.3g}) between {len(live)} live "
            f"and {len(reference)} baseline images"
        ),
        constraint_check_type=DRIFT_CHECK,
        description=(
            f"Baseline drift distance (Kolmogorov-Smirnov): {statistic:.4f} with p-value "
            f"{p_value:.3g} exceeds threshold: {threshold}"
        ),
    )


def merge_sparse_bins(
    expected: Sequence[float], actual: Sequence[float], *, ordered: bool
) -> tuple[list[float], list[float]]:
    """Merge bins until every cell's expected count under homogeneity reaches
    MIN_EXPECTED_COUNT: neighbours for an ordered histogram, the rarest together otherwise."""
    if len(expected) != len(actual):
        raise ValueError(f"the bins differ: {len(expected)} vs {len(actual)}")
    rows = np.asarray([expected, actual], dtype=np.float64)
    row_totals = rows.sum(axis=1)
    if row_totals.min() <= 0:
        raise ValueError("a side has no records")
    # Expected cell = row total x column total / N: the smaller row needs the larger column.
    needed = MIN_EXPECTED_COUNT * row_totals.sum() / row_totals.min()
    order = list(range(rows.shape[1]))
    if not ordered:
        order.sort(key=lambda column: rows[:, column].sum())
    groups: list[list[int]] = [[]]
    for column in order:
        if groups[-1] and rows[:, groups[-1]].sum() >= needed:
            groups.append([])
        groups[-1].append(column)
    if len(groups) > 1 and rows[:, groups[-1]].sum() < needed:
        groups[-2].extend(groups.pop())  # a short last group joins its neighbour
    merged = np.stack([rows[:, group].sum(axis=1) for group in groups], axis=1)
    return merged[0].tolist(), merged[1].tolist()


def chi_square_p_value(expected: Sequence[float], actual: Sequence[float]) -> float:
    """p-value of the chi-square test that both rows of counts share one distribution."""
    from scipy.stats import chi2_contingency

    table = np.asarray([expected, actual], dtype=np.float64)
    return float(chi2_contingency(table).pvalue)


def population_stability_index(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins of two distributions (counts or shares).

    Both are normalised to shares; empty bins are floored at PSI_FLOOR so the index stays
    finite (a bin empty on one side still counts heavily, as it should).
    """
    if len(expected) != len(actual):
        raise ValueError(f"PSI needs the same bins: {len(expected)} vs {len(actual)}")
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("PSI needs non-empty distributions")
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    a = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_two_sample(live: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (scipy)."""
    from scipy.stats import ks_2samp

    with warnings.catch_warnings():
        # scipy falls back from the exact to the asymptotic p-value with a warning.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = ks_2samp(live, baseline)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    return statistic, (p_value if math.isfinite(p_value) else 1.0)
