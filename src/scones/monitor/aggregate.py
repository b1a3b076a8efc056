"""Streaming aggregation of captured traffic: every number the report and dashboard show.

Everything here is incremental and bounded: counts and sums per hour (and minute), fixed
histograms, and seeded reservoir samples (:mod:`scones.monitor.sampling`) where a test needs
raw values (KS) or a chart needs points. Memory does not grow with the number of records.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from scones.images import DEFAULT_MAX_PIXELS, IMAGE_CONTENT_TYPES, IMAGE_STAT_NAMES
from scones.model.baseline import CONFIDENCE_BIN_EDGES
from scones.monitor.capture_reader import CaptureRecord
from scones.monitor.drift import LiveTraffic
from scones.monitor.sampling import ImageStatsCache, Reservoir

_SECONDS_PER_HOUR = 3600
_MAX_MINUTE_BUCKETS = 3 * 24 * 60  # finer chart series for the last few days of traffic
_MAX_PENDING_STATS = 4096
GalleryEntry = tuple[float, str, "str | None", list[float], int, str, int, bool]


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

    def live_traffic(self) -> LiveTraffic:
        """What the drift checks compare with the baseline."""
        self._fold_stats()
        return LiveTraffic(
            class_names=list(self.class_names or []),
            class_counts=list(self.class_counts or [0] * len(self.class_names or [])),
            predictions=self.predictions,
            under_threshold=self.under_threshold,
            threshold=self.config.threshold,
            confidence_counts=list(self.histogram),
            decoded_images=self.decoded_images,
            image_stats={name: self.image_stat_sample(name) for name in IMAGE_STAT_NAMES},
        )

    def confidence_points(
        self,
    ) -> tuple[list[tuple[float, float, int]], list[tuple[float, float, int]]]:
        """Sampled (time, top confidence, class) points: passed, and under the threshold."""
        return sorted(self.points.items), sorted(self.under_points.items)


# --- helpers ---------------------------------------------------------------------------


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
