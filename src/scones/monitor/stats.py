"""Streaming aggregation of captured traffic, and drift tests against the training baseline.

Everything here is incremental and bounded: counts and sums per hour, fixed histograms, and
seeded reservoir samples (uniform samples of fixed size) where a test needs raw values (KS)
or a chart needs points. Memory does not grow with the number of records.

Per-image statistics are cached by a digest of the captured payload: identical images (real
traffic repeats, retries, the benchmark's reused payloads) are decoded once. The result is
the same as decoding every record; only the time differs.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import warnings
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from scones.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_CONTENT_TYPES,
    IMAGE_STAT_NAMES,
    ImageDecodeError,
    decode_image,
    image_statistics,
)
from scones.model.baseline import CONFIDENCE_BIN_EDGES
from scones.monitor.capture_reader import CaptureRecord, decode_input_bytes

# Shares of zero make PSI infinite; the usual practice floors them at a small share.
PSI_FLOOR = 1e-4
DRIFT_CHECK = "baseline_drift_check"
THRESHOLD_CHECK = "confidence_threshold_check"
_SECONDS_PER_HOUR = 3600
_MAX_MINUTE_BUCKETS = 3 * 24 * 60  # finer chart series for the last few days of traffic
_MAX_PENDING_STATS = 4096
GalleryEntry = tuple[float, str, "str | None", list[float], int, str, int, bool]


@dataclass(frozen=True)
class DriftThresholds:
    """When a drift test counts as a violation (see docs/monitor.md)."""

    psi: float = 0.2  # PSI above this: a significant shift (the usual rule of thumb)
    ks_p_value: float = 0.01  # KS: the shift is statistically real ...
    ks_statistic: float = 0.1  # ... and large enough to matter (max CDF distance)
    min_records: int = 30  # fewer live records than this: too noisy to judge, skipped
    max_under_threshold_share: float | None = None  # optional: alert on the failure rate


@dataclass(frozen=True)
class MonitorConfig:
    threshold: float = 0.93
    class_names: tuple[str, ...] | None = None  # the model's; None: named by index
    sample_size: int = 10_000  # reservoir of per-image statistics for the KS tests
    point_sample_size: int = 5_000  # confidence points drawn on the chart
    gallery_size: int = 48  # newest under-threshold records kept for review
    cache_size: int = 65_536  # distinct payloads whose statistics are remembered
    max_pixels: int = DEFAULT_MAX_PIXELS
    seed: int = 0


class Reservoir:
    """A uniform random sample of fixed size from a stream, seeded.

    Li's algorithm L: once full, it draws how many items to skip before the next
    replacement, so most additions cost a counter increment rather than a random draw.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seen = 0
        self.items: list[Any] = []
        self._random = random.Random(seed)
        self._weight = 1.0
        self._next = 0  # 1-based index of the next item that enters a full reservoir

    def add(self, item: Any) -> None:
        self.seen += 1
        if self.seen == self._next:
            self.items[self._random.randrange(self.size)] = item
            self._advance()
        elif len(self.items) < self.size:
            self.items.append(item)
            if len(self.items) == self.size:
                self._advance()

    def merge(self, other: Reservoir) -> None:
        """Become a uniform sample of both streams (each side a uniform sample of its own).

        How many come from each side is hypergeometric in the streams' sizes; then a random
        subset of each side's sample.
        """
        total = self.seen + other.seen
        if len(self.items) + len(other.items) <= self.size:
            self.items = self.items + other.items
        else:
            rng = np.random.default_rng(self._random.getrandbits(64))
            from_self = int(rng.hypergeometric(self.seen, other.seen, self.size))
            from_self = min(from_self, len(self.items))
            from_other = min(self.size - from_self, len(other.items))
            pick_self = rng.choice(len(self.items), from_self, replace=False)
            pick_other = rng.choice(len(other.items), from_other, replace=False)
            self.items = [self.items[i] for i in pick_self] + [other.items[i] for i in pick_other]
        self.seen = total
        self._weight = 1.0
        self._next = 0
        if len(self.items) == self.size:
            self._advance()

    def _advance(self) -> None:
        draw = self._random.random
        self._weight *= math.exp(math.log(1.0 - draw()) / self.size)
        if self._weight >= 1.0:  # only when size is huge; never skip then
            self._next = self.seen + 1
            return
        skip = math.floor(math.log(1.0 - draw()) / math.log1p(-self._weight))
        self._next = self.seen + skip + 1


class ImageStatsCache:
    """Per-image statistics (or the decode error code) by payload digest; LRU-bounded."""

    def __init__(self, size: int, max_pixels: int) -> None:
        self.size = size
        self.max_pixels = max_pixels
        self.hits = 0
        self.decodes = 0
        self._entries: OrderedDict[bytes, tuple[float, ...] | str] = OrderedDict()

    def statistics(self, record: CaptureRecord) -> tuple[float, ...] | str:
        """The image's statistics in IMAGE_STAT_NAMES order, or a decode error code."""
        digest = hashlib.blake2b(record.input_data.encode(), digest_size=16).digest()
        entries = self._entries
        found = entries.get(digest)
        if found is not None:
            self.hits += 1
            entries.move_to_end(digest)
            return found
        self.decodes += 1
        result = _image_stats_or_error(record, self.max_pixels)
        entries[digest] = result
        if len(entries) > self.size:
            entries.popitem(last=False)
        return result


def _image_stats_or_error(record: CaptureRecord, max_pixels: int) -> tuple[float, ...] | str:
    try:
        body = decode_input_bytes(record)
    except ValueError:
        return "invalid_base64"
    try:
        image = decode_image(body, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return exc.code
    stats = image_statistics(image)
    return tuple(stats[name] for name in IMAGE_STAT_NAMES)


@dataclass
class TimeBucket:
    """Counts for one hour (or minute) of traffic."""

    records: int = 0
    predictions: int = 0
    under_threshold: int = 0
    confidence_sum: float = 0.0
    confidence_min: float = 1.0
    class_counts: list[int] = field(default_factory=list)

    def merge(self, other: TimeBucket) -> None:
        self.records += other.records
        self.predictions += other.predictions
        self.under_threshold += other.under_threshold
        self.confidence_sum += other.confidence_sum
        self.confidence_min = min(self.confidence_min, other.confidence_min)
        self.class_counts = _add_lists(self.class_counts, other.class_counts)

    def as_dict(self, start: float, class_names: Sequence[str]) -> dict[str, Any]:
        return {
            "start": iso(start),
            "records": self.records,
            "predictions": self.predictions,
            "under_threshold": self.under_threshold,
            "under_threshold_share": _share(self.under_threshold, self.predictions),
            "mean_confidence": (
                self.confidence_sum / self.predictions if self.predictions else None
            ),
            "min_confidence": self.confidence_min if self.predictions else None,
            "class_counts": dict(zip(class_names, self.class_counts, strict=False)),
        }


class TrafficAggregator:
    """Feed records in time order with :meth:`add`; :meth:`summary` gives every number."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.class_names: list[str] | None = (
            list(config.class_names) if config.class_names else None
        )
        self.records = 0
        self.predictions = 0
        self.under_threshold = 0
        self.confidence_sum = 0.0
        self.first: float | None = None
        self.last: float | None = None
        self.content_types: Counter[str] = Counter()
        self.unknown_content_type = 0
        self.invalid_output: Counter[str] = Counter()
        self.undecodable: Counter[str] = Counter()
        self.decoded_images = 0
        self.class_counts: list[int] = []
        self.histogram = [0] * (len(CONFIDENCE_BIN_EDGES) - 1)
        self.hours: dict[int, TimeBucket] = {}
        self.minutes: dict[int, TimeBucket] | None = {}
        self.stat_sums = [0.0] * len(IMAGE_STAT_NAMES)
        self.stat_min = [math.inf] * len(IMAGE_STAT_NAMES)
        self.stat_max = [-math.inf] * len(IMAGE_STAT_NAMES)
        self.image_sample = Reservoir(config.sample_size, config.seed)
        self.points = Reservoir(config.point_sample_size, config.seed + 1)
        self.under_points = Reservoir(config.point_sample_size, config.seed + 2)
        self.confidence_sample = Reservoir(config.sample_size, config.seed + 3)
        # (time, event id, inference id, probabilities, predicted, file key, line, decodable):
        # no payload, so the gallery stays small whatever the image sizes.
        self.gallery: deque[GalleryEntry] = deque(maxlen=config.gallery_size)
        self._content_type_names: dict[str, str] = {}
        self._hour_index = -1
        self._hour = TimeBucket()
        self._minute_index = -1
        self._minute = TimeBucket()
        self._pending_stats: dict[tuple[float, ...], int] = {}
        self.cache = ImageStatsCache(config.cache_size, config.max_pixels)
        self._edges = CONFIDENCE_BIN_EDGES[1:-1]  # inner edges: bisect gives the bin

    def add_all(self, records: Iterable[CaptureRecord]) -> TrafficAggregator:
        for record in records:
            self.add(record)
        return self

    def add(self, record: CaptureRecord) -> None:
        self.records += 1
        moment = record.timestamp
        if self.first is None or moment < self.first:
            self.first = moment
        if self.last is None or moment > self.last:
            self.last = moment
        content_type = self._content_type_names.get(record.content_type)
        if content_type is None:
            content_type = record.content_type.split(";", 1)[0].strip().lower()
            if len(self._content_type_names) < 1000:  # bounded: content types are free text
                self._content_type_names[record.content_type] = content_type
        self.content_types[content_type] += 1
        hour_index = int(moment // _SECONDS_PER_HOUR)
        if hour_index != self._hour_index:  # records come in time order: usually the same
            self._hour_index = hour_index
            self._hour = self._bucket(self.hours, hour_index)
        hour = self._hour
        hour.records += 1
        minute = None
        if self.minutes is not None:
            minute_index = int(moment // 60)
            if minute_index != self._minute_index:
                self._minute_index = minute_index
                self._minute = self._bucket(self.minutes, minute_index)
                if len(self.minutes) > _MAX_MINUTE_BUCKETS:
                    self.minutes = None  # a long span: charts use hours instead
            minute = self._minute
            minute.records += 1
        decodable = False
        if content_type in IMAGE_CONTENT_TYPES:
            decodable = self._add_image(record)
        else:
            self.unknown_content_type += 1
        self._add_prediction(record, hour, minute, decodable)

    def _bucket(self, buckets: dict[int, TimeBucket], index: int) -> TimeBucket:
        bucket = buckets.get(index)
        if bucket is None:
            bucket = buckets[index] = TimeBucket()
        return bucket

    def _add_image(self, record: CaptureRecord) -> bool:
        stats = self.cache.statistics(record)
        if isinstance(stats, str):
            self.undecodable[stats] += 1
            return False
        self.decoded_images += 1
        # Count identical statistics and fold them into sums/min/max in bulk: repeated
        # images then cost one dictionary update each.
        pending = self._pending_stats
        pending[stats] = pending.get(stats, 0) + 1
        if len(pending) >= _MAX_PENDING_STATS:
            self._fold_stats()
        self.image_sample.add(stats)
        return True

    def _fold_stats(self) -> None:
        for stats, count in self._pending_stats.items():
            for index, value in enumerate(stats):
                self.stat_sums[index] += value * count
                if value < self.stat_min[index]:
                    self.stat_min[index] = value
                if value > self.stat_max[index]:
                    self.stat_max[index] = value
        self._pending_stats.clear()

    def _add_prediction(
        self, record: CaptureRecord, hour: TimeBucket, minute: TimeBucket | None, decodable: bool
    ) -> None:
        probabilities = record.probabilities
        if probabilities is None:
            self.invalid_output[record.output_problem or "no output"] += 1
            return
        class_names = self.class_names
        if class_names is None:
            class_names = self.class_names = [f"class_{i}" for i in range(len(probabilities))]
        if len(probabilities) != len(class_names):
            self.invalid_output[
                f"{len(probabilities)} probabilities for {len(class_names)} classes"
            ] += 1
            return
        top = max(probabilities)
        predicted = probabilities.index(top)
        under = top < self.config.threshold
        self.predictions += 1
        self.confidence_sum += top
        self.histogram[bisect.bisect_right(self._edges, top)] += 1
        if not self.class_counts:
            self.class_counts = [0] * len(class_names)
        self.class_counts[predicted] += 1
        for bucket in (hour, minute):
            if bucket is None:
                continue
            if not bucket.class_counts:
                bucket.class_counts = [0] * len(class_names)
            bucket.predictions += 1
            bucket.confidence_sum += top
            if top < bucket.confidence_min:
                bucket.confidence_min = top
            bucket.class_counts[predicted] += 1
            if under:
                bucket.under_threshold += 1
        self.confidence_sample.add(top)
        if under:
            self.under_threshold += 1
            self.under_points.add((record.timestamp, top, predicted))
            self.gallery.append(
                (
                    record.timestamp,
                    record.event_id,
                    record.inference_id,
                    probabilities,
                    predicted,
                    record.file_key,
                    record.line_number,
                    decodable,
                )
            )
        else:
            self.points.add((record.timestamp, top, predicted))

    def _gallery_items(self) -> list[dict[str, Any]]:
        """The newest records under the threshold, newest first, for review."""
        class_names = self.class_names or []
        return [
            {
                "event_id": event_id,
                "inference_id": inference_id,
                "time": iso(timestamp),
                "confidence": max(probabilities),
                "predicted_class": class_names[predicted],
                "probabilities": probabilities,
                "file_key": file_key,
                "line_number": line_number,
                "decodable": decodable,
            }
            for (
                timestamp,
                event_id,
                inference_id,
                probabilities,
                predicted,
                file_key,
                line_number,
                decodable,
            ) in reversed(self.gallery)
        ]

    def merge(self, other: TrafficAggregator) -> None:
        """Add another aggregator's traffic (a parallel worker's share of the files)."""
        other._fold_stats()
        self._fold_stats()
        self.records += other.records
        self.predictions += other.predictions
        self.under_threshold += other.under_threshold
        self.confidence_sum += other.confidence_sum
        firsts = [t for t in (self.first, other.first) if t is not None]
        lasts = [t for t in (self.last, other.last) if t is not None]
        self.first = min(firsts) if firsts else None
        self.last = max(lasts) if lasts else None
        self.content_types.update(other.content_types)
        self.unknown_content_type += other.unknown_content_type
        self.invalid_output.update(other.invalid_output)
        self.undecodable.update(other.undecodable)
        self.decoded_images += other.decoded_images
        if self.class_names is None:
            self.class_names = other.class_names
        self.class_counts = _add_lists(self.class_counts, other.class_counts)
        self.histogram = _add_lists(self.histogram, other.histogram)
        _merge_buckets(self.hours, other.hours)
        if self.minutes is None or other.minutes is None:
            self.minutes = None
        else:
            _merge_buckets(self.minutes, other.minutes)
            if len(self.minutes) > _MAX_MINUTE_BUCKETS:
                self.minutes = None
        self._hour_index = self._minute_index = -1  # cached buckets may have been replaced
        for index in range(len(IMAGE_STAT_NAMES)):
            self.stat_sums[index] += other.stat_sums[index]
            self.stat_min[index] = min(self.stat_min[index], other.stat_min[index])
            self.stat_max[index] = max(self.stat_max[index], other.stat_max[index])
        for mine, theirs in (
            (self.image_sample, other.image_sample),
            (self.points, other.points),
            (self.under_points, other.under_points),
            (self.confidence_sample, other.confidence_sample),
        ):
            mine.merge(theirs)
        newest = sorted([*self.gallery, *other.gallery], key=lambda entry: entry[0])
        self.gallery = deque(newest[-self.config.gallery_size :], maxlen=self.config.gallery_size)
        self.cache.decodes += other.cache.decodes
        self.cache.hits += other.cache.hits

    def __getstate__(self) -> dict[str, Any]:
        # Sent between worker processes: the statistics cache stays behind (it is large).
        self._fold_stats()
        state = self.__dict__.copy()
        cache = ImageStatsCache(self.cache.size, self.cache.max_pixels)
        cache.decodes, cache.hits = self.cache.decodes, self.cache.hits
        state["cache"] = cache
        return state

    # --- results --------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Every number the report and the dashboard show (JSON-ready)."""
        self._fold_stats()
        class_names = self.class_names or []
        counts = self.class_counts or [0] * len(class_names)
        series = self.minutes if self.minutes is not None and len(self.hours) <= 6 else None
        series_seconds = 60 if series is not None else _SECONDS_PER_HOUR
        return {
            "records": {
                "total": self.records,
                "with_predictions": self.predictions,
                "under_threshold": self.under_threshold,
                "passed": self.predictions - self.under_threshold,
                "under_threshold_share": _share(self.under_threshold, self.predictions),
                "invalid_output": sum(self.invalid_output.values()),
                "invalid_output_by_reason": dict(self.invalid_output),
                "content_types": dict(self.content_types),
                "unknown_content_type": self.unknown_content_type,
                "undecodable_images": sum(self.undecodable.values()),
                "undecodable_images_by_reason": dict(self.undecodable),
                "decoded_images": self.decoded_images,
            },
            "threshold": self.config.threshold,
            "class_names": class_names,
            "time_range": {
                "first": iso(self.first) if self.first is not None else None,
                "last": iso(self.last) if self.last is not None else None,
            },
            "mean_confidence": (
                self.confidence_sum / self.predictions if self.predictions else None
            ),
            "confidence_quantiles": _quantiles(self.confidence_sample.items),
            "confidence_histogram": {
                "bin_edges": list(CONFIDENCE_BIN_EDGES),
                "counts": list(self.histogram),
            },
            "class_mix": {
                "counts": dict(zip(class_names, counts, strict=False)),
                "shares": {
                    name: _share(count, self.predictions)
                    for name, count in zip(class_names, counts, strict=False)
                },
            },
            "volume_per_hour": [
                self.hours[index].as_dict(index * _SECONDS_PER_HOUR, class_names)
                for index in sorted(self.hours)
            ],
            "series": {
                "bucket_seconds": series_seconds,
                "buckets": [
                    bucket.as_dict(index * series_seconds, class_names)
                    for index, bucket in sorted((series or self.hours).items())
                ],
            },
            "image_statistics": self._image_statistics_summary(),
            "image_stats_cache": {"decodes": self.cache.decodes, "hits": self.cache.hits},
            "gallery": self._gallery_items(),
        }

    def _image_statistics_summary(self) -> dict[str, Any]:
        sample = np.asarray(self.image_sample.items, dtype=np.float64).reshape(
            -1, len(IMAGE_STAT_NAMES)
        )
        result: dict[str, Any] = {}
        for index, name in enumerate(IMAGE_STAT_NAMES):
            if not self.decoded_images:
                result[name] = {"count": 0}
                continue
            column = sample[:, index]
            result[name] = {
                "count": self.decoded_images,
                "mean": self.stat_sums[index] / self.decoded_images,
                "min": self.stat_min[index],
                "max": self.stat_max[index],
                "p05": float(np.quantile(column, 0.05)),
                "p50": float(np.quantile(column, 0.5)),
                "p95": float(np.quantile(column, 0.95)),
                "sample_size": len(column),
            }
        return result

    def image_stat_sample(self, name: str) -> np.ndarray:
        index = IMAGE_STAT_NAMES.index(name)
        sample = np.asarray(self.image_sample.items, dtype=np.float64)
        return sample[:, index] if len(sample) else np.empty(0)

    def confidence_points(
        self,
    ) -> tuple[list[tuple[float, float, int]], list[tuple[float, float, int]]]:
        """Sampled (time, top confidence, class) points: passed, and under the threshold."""
        return sorted(self.points.items), sorted(self.under_points.items)


# --- drift --------------------------------------------------------------------------------


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
    return float(result.statistic), float(result.pvalue)


@dataclass
class DriftCheck:
    feature_name: str
    check: str  # "psi" | "ks" | "share"
    value: float | None
    threshold: str
    violated: bool
    detail: str
    p_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature_name": self.feature_name,
            "check": self.check,
            "value": self.value,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "violated": self.violated,
            "detail": self.detail,
        }


def evaluate_drift(
    aggregator: TrafficAggregator,
    baseline: dict[str, Any] | None,
    thresholds: DriftThresholds,
    *,
    skipped_reason: str | None = None,
) -> dict[str, Any]:
    """Drift checks against ``baseline.json``; ``status`` is ok, violations or skipped."""
    checks: list[DriftCheck] = []
    notes: list[str] = []
    if thresholds.max_under_threshold_share is not None and aggregator.predictions:
        share = aggregator.under_threshold / aggregator.predictions
        limit = thresholds.max_under_threshold_share
        checks.append(
            DriftCheck(
                "under_threshold_share",
                "share",
                share,
                f"<= {limit}",
                share > limit,
                f"{aggregator.under_threshold} of {aggregator.predictions} predictions under "
                f"the confidence threshold {aggregator.config.threshold}",
            )
        )
    status_reason = skipped_reason
    if baseline is None:
        status_reason = status_reason or "no baseline"
    else:
        problem = baseline_problem(baseline)
        if problem:
            status_reason = f"baseline.json is unusable: {problem}"
    drift_checks: list[DriftCheck] = []
    if status_reason is None and baseline is not None:
        drift_checks = _baseline_checks(aggregator, baseline, thresholds, notes)
        if not drift_checks:
            status_reason = "drift skipped: " + "; ".join(notes or ["no check could run"])
    checks.extend(drift_checks)
    violated = [check for check in checks if check.violated]
    if violated:
        status = "violations"
    elif status_reason is not None:
        status = "skipped"
    else:
        status = "ok"
    return {
        "status": status,
        "skipped_reason": status_reason,
        "notes": notes,
        "thresholds": {
            "psi": thresholds.psi,
            "ks_p_value": thresholds.ks_p_value,
            "ks_statistic": thresholds.ks_statistic,
            "min_records": thresholds.min_records,
            "max_under_threshold_share": thresholds.max_under_threshold_share,
        },
        "checks": [check.as_dict() for check in checks],
        "violations": len(violated),
    }


def baseline_problem(baseline: dict[str, Any]) -> str | None:
    """Why a baseline cannot be compared against, naming the key; None when it can."""
    if not isinstance(baseline, dict):
        return "not a JSON object"
    names = baseline.get("class_names")
    if not isinstance(names, list) or not names:
        return "class_names is missing or empty"
    if not isinstance(baseline.get("class_mix"), dict):
        return "class_mix is missing"
    histogram = baseline.get("confidence_histogram")
    if not isinstance(histogram, list) or len(histogram) != len(CONFIDENCE_BIN_EDGES) - 1:
        return (
            f"confidence_histogram must have {len(CONFIDENCE_BIN_EDGES) - 1} bins "
            f"(edges {list(CONFIDENCE_BIN_EDGES)})"
        )
    edges = baseline.get("confidence_bin_edges")
    if edges is not None and [round(float(e), 6) for e in edges] != list(CONFIDENCE_BIN_EDGES):
        return "confidence_bin_edges differ from scones.model.baseline.CONFIDENCE_BIN_EDGES"
    if not isinstance(baseline.get("image_stats", {}), dict):
        return "image_stats is not an object"
    return None


def _baseline_checks(
    aggregator: TrafficAggregator,
    baseline: dict[str, Any],
    thresholds: DriftThresholds,
    notes: list[str],
) -> list[DriftCheck]:
    checks: list[DriftCheck] = []
    baseline_names = [str(name) for name in baseline["class_names"]]
    live_names = aggregator.class_names or []
    predictions = aggregator.predictions
    if predictions < thresholds.min_records:
        notes.append(
            f"class mix and confidence PSI skipped: {predictions} predictions, fewer than "
            f"--min-records {thresholds.min_records}"
        )
    elif live_names and len(live_names) != len(baseline_names):
        notes.append(
            f"class mix PSI skipped: the traffic has {len(live_names)} classes, the baseline "
            f"{len(baseline_names)} ({baseline_names})"
        )
    else:
        expected = [float(baseline["class_mix"].get(name, 0.0)) for name in baseline_names]
        checks.append(
            _psi_check("predicted_class_mix", expected, aggregator.class_counts, thresholds)
        )
    if predictions >= thresholds.min_records:
        checks.append(
            _psi_check(
                "top_confidence_histogram",
                [float(c) for c in baseline["confidence_histogram"]],
                aggregator.histogram,
                thresholds,
            )
        )
    image_stats = baseline.get("image_stats") or {}
    decoded = aggregator.decoded_images
    for name in IMAGE_STAT_NAMES:
        values = image_stats.get(name)
        if not isinstance(values, list) or not values:
            notes.append(
                f"KS test of image {name} skipped: baseline.json has no image_stats.{name}"
            )
            continue
        if decoded < thresholds.min_records:
            notes.append(
                f"KS test of image {name} skipped: {decoded} decoded images, fewer than "
                f"--min-records {thresholds.min_records}"
            )
            continue
        statistic, p_value = ks_two_sample(
            aggregator.image_stat_sample(name), np.asarray(values, dtype=np.float64)
        )
        violated = p_value < thresholds.ks_p_value and statistic > thresholds.ks_statistic
        checks.append(
            DriftCheck(
                f"image_{name}",
                "ks",
                statistic,
                f"p < {thresholds.ks_p_value} and D > {thresholds.ks_statistic}",
                violated,
                f"KS distance {statistic:.4f} (p-value {p_value:.3g}) between "
                f"{len(aggregator.image_stat_sample(name))} live and {len(values)} baseline "
                f"images",
                p_value=p_value,
            )
        )
    return checks


def _psi_check(
    feature: str, expected: Sequence[float], actual: Sequence[int], thresholds: DriftThresholds
) -> DriftCheck:
    value = population_stability_index(expected, actual)
    return DriftCheck(
        feature,
        "psi",
        value,
        f"<= {thresholds.psi}",
        value > thresholds.psi,
        f"population stability index {value:.4f} against the baseline",
    )


def constraint_violations(drift: dict[str, Any]) -> dict[str, Any]:
    """SageMaker Model Monitor's constraint_violations.json shape."""
    violations = []
    for check in drift["checks"]:
        if not check["violated"]:
            continue
        if check["check"] == "share":
            kind = THRESHOLD_CHECK
            description = (
                f"Share under the confidence threshold: {check['value']:.4f} exceeds "
                f"threshold: {check['threshold'].removeprefix('<= ')} ({check['detail']})"
            )
        elif check["check"] == "psi":
            kind = DRIFT_CHECK
            description = (
                f"Baseline drift distance (population stability index): {check['value']:.4f} "
                f"exceeds threshold: {check['threshold'].removeprefix('<= ')}"
            )
        else:
            kind = DRIFT_CHECK
            description = (
                f"Baseline drift distance (Kolmogorov-Smirnov): {check['value']:.4f} with "
                f"p-value {check['p_value']:.3g} exceeds threshold: {check['threshold']}"
            )
        violations.append(
            {
                "feature_name": check["feature_name"],
                "constraint_check_type": kind,
                "description": description,
            }
        )
    return {"violations": violations}


# --- helpers --------------------------------------------------------------------------------


def iso(timestamp: float) -> str:
    """UTC ISO 8601 with milliseconds and a Z, as SageMaker writes times."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _add_lists(left: list[int], right: list[int]) -> list[int]:
    if not left:
        return list(right)
    if not right:
        return left
    return [a + b for a, b in zip(left, right, strict=True)]


def _merge_buckets(mine: dict[int, TimeBucket], theirs: dict[int, TimeBucket]) -> None:
    for index, bucket in theirs.items():
        if index in mine:
            mine[index].merge(bucket)
        else:
            mine[index] = bucket


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values, dtype=np.float64)
    return {
        f"p{int(q * 100):02d}": float(np.quantile(array, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
    }
