"""Aggregation, PSI and KS: the numbers behind the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from monitor_helpers import T0, capture_record, minutes, varied_pngs, write_capture_file

from conftest import noise_png, solid_png
from scones.model.baseline import confidence_histogram
from scones.monitor.aggregate import MonitorConfig, TrafficAggregator
from scones.monitor.capture_reader import ReadCounters, iter_capture_records, list_capture_files
from scones.monitor.drift import (
    BaselineProblem,
    DriftReport,
    DriftThresholds,
    evaluate_drift,
    parse_baseline,
    population_stability_index,
)
from scones.monitor.sampling import Reservoir
from scones.store import open_store


def aggregate(root, config=MonitorConfig(class_names=("bicycle", "motorcycle"))):
    store = open_store(str(root))
    files = list_capture_files(store, "scones-endpoint")
    return TrafficAggregator(config).add_all(
        iter_capture_records(store, files, counters=ReadCounters())
    )


def drift_of(aggregator, baseline, thresholds, **kwargs) -> DriftReport:
    parsed = parse_baseline(baseline) if baseline is not None else None
    return evaluate_drift(aggregator.live_traffic(), parsed, thresholds, **kwargs)


def test_psi_matches_the_formula_and_floors_empty_bins():
    expected, actual = [0.5, 0.5], [0.8, 0.2]
    by_hand = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert population_stability_index(expected, actual) == pytest.approx(by_hand)
    assert population_stability_index([10, 10], [1, 1]) == pytest.approx(0.0)
    assert math.isfinite(population_stability_index([1, 0], [0, 1]))
    with pytest.raises(ValueError, match="same bins"):
        population_stability_index([1, 2], [1, 2, 3])


def test_reservoir_is_bounded_and_uniform():
    reservoir = Reservoir(100, seed=1)
    for i in range(10_000):
        reservoir.add(i)
    assert len(reservoir.items) == 100
    assert reservoir.seen == 10_000
    assert 3_000 < float(np.mean(reservoir.items)) < 7_000  # not the first or last 100


def test_aggregator_counts_threshold_classes_hours_and_images(tmp_path):
    red, blue, grey = solid_png((200, 30, 30)), solid_png((30, 30, 200)), solid_png((128,) * 3)
    outputs = [[0.99, 0.01]] * 5 + [[0.02, 0.98]] * 3 + [[0.55, 0.45]] * 2 + [[0.93, 0.07]]
    images = [red] * 5 + [blue] * 3 + [grey] * 2 + [red]
    records = [
        capture_record(img, out, T0 + minutes(10 * i))
        for i, (img, out) in enumerate(zip(images, outputs, strict=True))
    ]
    records.append(capture_record(b"not an image", [0.6, 0.4], T0 + minutes(200)))
    records.append(
        capture_record(b"{}", [0.99, 0.01], T0 + minutes(201), content_type="application/json")
    )
    records.append(capture_record(red, [0.3, 0.3, 0.4], T0 + minutes(202)))  # wrong class count
    write_capture_file(tmp_path, records)
    aggregator = aggregate(tmp_path)
    summary = aggregator.summary()
    counts = summary["records"]
    assert counts["total"] == 14
    assert counts["with_predictions"] == 13
    # 0.93 passes (the filter passes top >= threshold); 0.55 x2 and 0.6 fail.
    assert counts["under_threshold"] == 3
    assert counts["passed"] == 10
    assert counts["unknown_content_type"] == 1
    assert counts["undecodable_images_by_reason"] == {"not_an_image": 1}
    assert counts["invalid_output_by_reason"] == {"3 probabilities for 2 classes": 1}
    assert summary["class_mix"]["counts"] == {"bicycle": 10, "motorcycle": 3}
    tops = [max(o) for o in outputs] + [0.6, 0.99]
    assert summary["confidence_histogram"]["counts"] == confidence_histogram(np.array(tops))
    hours = summary["volume_per_hour"]
    assert [(h["start"], h["records"], h["under_threshold"]) for h in hours] == [
        ("2026-11-26T15:00:00.000Z", 6, 0),
        ("2026-11-26T16:00:00.000Z", 5, 2),
        ("2026-11-26T18:00:00.000Z", 3, 1),
    ]
    assert summary["image_statistics"]["width"]["mean"] == 32.0
    assert summary["image_stats_cache"]["decodes"] == 4  # red, blue, grey, junk: once each
    gallery = summary["gallery"]
    assert [g["confidence"] for g in gallery] == [0.6, 0.55, 0.55]  # newest first
    assert gallery[0]["decodable"] is False and gallery[1]["decodable"] is True


def baseline_from(images, tops, class_mix):
    from monitor_helpers import baseline_for

    predicted = [0] * round(class_mix[0] * len(images)) + [1] * (
        len(images) - round(class_mix[0] * len(images))
    )
    return baseline_for(images, tops, ["bicycle", "motorcycle"], predicted)


def test_same_distribution_is_within_bounds_and_shifted_images_violate(tmp_path):
    baseline = baseline_from(varied_pngs(120, seed=1), [0.97] * 120, (0.5, 0.5))
    same = tmp_path / "same"
    write_capture_file(
        same,
        [
            capture_record(img, [0.97, 0.03] if i % 2 else [0.03, 0.97], T0 + minutes(i))
            for i, img in enumerate(varied_pngs(120, seed=2))
        ],
    )
    drift = drift_of(aggregate(same), baseline, DriftThresholds())
    assert drift.status == "ok", drift
    assert drift.constraint_violations() == {"violations": []}

    shifted = tmp_path / "shifted"
    write_capture_file(
        shifted,
        [
            capture_record(img, [0.97, 0.03], T0 + minutes(i))
            for i, img in enumerate(varied_pngs(120, seed=3, brightness=70, size=48))
        ],
    )
    drift = drift_of(aggregate(shifted), baseline, DriftThresholds())
    assert drift.status == "violations"
    violated = {v["feature_name"] for v in drift.constraint_violations()["violations"]}
    assert {"predicted_class_mix", "image_brightness", "image_width", "image_height"} <= violated
    assert "top_confidence_histogram" not in violated
    for violation in drift.constraint_violations()["violations"]:
        assert set(violation) == {"feature_name", "constraint_check_type", "description"}
        assert violation["constraint_check_type"] == "baseline_drift_check"


def test_thresholds_are_configurable(tmp_path):
    baseline = baseline_from(varied_pngs(60, seed=1), [0.97] * 60, (0.5, 0.5))
    write_capture_file(
        tmp_path,
        [
            capture_record(img, [0.97, 0.03], T0 + minutes(i))
            for i, img in enumerate(varied_pngs(60, seed=2))
        ],
    )
    aggregator = aggregate(tmp_path)
    strict = drift_of(aggregator, baseline, DriftThresholds())
    lenient = drift_of(aggregator, baseline, DriftThresholds(psi=100.0))
    assert "predicted_class_mix" in {c.feature_name for c in strict.violated}
    assert lenient.status == "ok"
    unsure = drift_of(aggregator, baseline, DriftThresholds(chi2_p_value=1e-30))
    assert "predicted_class_mix" not in {c.feature_name for c in unsure.violated}
    few = drift_of(aggregator, baseline, DriftThresholds(min_records=1000))
    assert few.status == "skipped"
    assert "fewer than --min-records 1000" in (few.skipped_reason or "")
    share = drift_of(aggregator, None, DriftThresholds(max_under_threshold_share=0.0))
    assert share.as_dict()["violations"] == 0  # nothing under 0.93
    strict_threshold = aggregate(tmp_path, MonitorConfig(threshold=0.99))
    share = drift_of(strict_threshold, None, DriftThresholds(max_under_threshold_share=0.5))
    assert share.status == "violations"
    (violation,) = share.constraint_violations()["violations"]
    assert violation["feature_name"] == "under_threshold_share"
    assert violation["constraint_check_type"] == "confidence_threshold_check"


def test_missing_or_malformed_baseline_skips_drift_and_says_why(tmp_path):
    write_capture_file(tmp_path, [capture_record(noise_png(0), [0.5, 0.5], T0)])
    aggregator = aggregate(tmp_path)
    skipped = drift_of(aggregator, None, DriftThresholds(), skipped_reason="no baseline.json")
    assert skipped.status == "skipped" and skipped.skipped_reason == "no baseline.json"
    with pytest.raises(BaselineProblem, match="confidence_histogram must have 20 bins"):
        parse_baseline({"class_names": ["a", "b"], "class_mix": {}, "confidence_histogram": [1]})
    with pytest.raises(BaselineProblem, match="class_names is missing"):
        parse_baseline({"class_mix": {}})
    empty = {"class_names": ["a", "b"], "class_mix": {}, "confidence_histogram": [0] * 20}
    with pytest.raises(BaselineProblem, match="must count some records"):
        parse_baseline(empty)


def test_parallel_workers_give_the_same_numbers_as_one_process(tmp_path):
    from scones.monitor.runner import MonitorOptions, run_monitor

    for part in range(4):
        write_capture_file(
            tmp_path,
            [
                capture_record(
                    img,
                    [0.6, 0.4] if i % 7 == 0 else [0.97, 0.03],
                    T0 + minutes(40 * part + i),
                )
                for i, img in enumerate(varied_pngs(40, seed=part))
            ],
        )
    write_capture_file(tmp_path, ["not json", capture_record(b"junk", [0.5, 0.5], T0)])

    def summary(workers: int) -> dict:
        options = MonitorOptions(
            capture_uri=str(tmp_path),
            endpoint_name="scones-endpoint",
            workers=workers,
            parallel_min_bytes=0,
        )
        return run_monitor(options).summary

    serial, parallel = summary(1), summary(2)
    for key in ("records", "class_mix", "confidence_histogram", "time_range"):
        assert parallel[key] == serial[key], key

    def rounded(hours: list[dict]) -> list[dict]:  # sums in another order: last-digit noise
        return [{**h, "mean_confidence": round(h["mean_confidence"], 9)} for h in hours]

    assert rounded(parallel["volume_per_hour"]) == rounded(serial["volume_per_hour"])
    for name, stats in serial["image_statistics"].items():
        for field in ("count", "min", "max"):
            assert parallel["image_statistics"][name][field] == stats[field]
        assert parallel["image_statistics"][name]["mean"] == pytest.approx(stats["mean"])
    assert parallel["reader"]["malformed_lines"] == serial["reader"]["malformed_lines"] == 1
    assert [g["event_id"] for g in parallel["gallery"]] == [
        g["event_id"] for g in serial["gallery"]
    ]
