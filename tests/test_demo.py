"""`scones demo --fast` end to end on the shared data, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scones.review.queue import ReviewQueue
from scones.workflow.executions import ExecutionStore


@pytest.mark.slow
@pytest.mark.timeout(900)  # the subprocess's own limit: training runs inside it
def test_demo_fast_runs_every_stage_and_reports_consistent_numbers(
    shared_vehicles: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env.update(SCONES_HOME=str(tmp_path / "home"), SCONES_SOURCE=str(shared_vehicles))
    result = subprocess.run(
        [sys.executable, "-m", "scones", "demo", "--fast", "--epochs", "3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    home = tmp_path / "home"
    dataset = json.loads((home / "store" / "dataset.json").read_text())
    n_test = sum(dataset["counts"]["test"].values())

    with ExecutionStore(home / "scones.db") as executions:
        records = executions.list(limit=10_000)
    assert len(records) == n_test + 6  # the test split plus the out-of-distribution images
    passed = sum(record.status == "SUCCEEDED" for record in records)
    failed = [record for record in records if record.status == "FAILED"]
    assert passed + len(failed) == len(records)
    assert f"{passed} passed, {len(failed)} failed" in result.stdout
    # the business number, with how far it could move on another test set of this size
    coverage = re.search(
        r"coverage at 99% \(test\)\W+([\d.]+) \(95% interval ([\d.]+)-([\d.]+)\)",
        result.stdout,
    )
    assert coverage is not None, result.stdout
    low, value, high = (float(coverage[i]) for i in (2, 1, 3))
    assert 0.0 <= low <= value + 0.005 and value <= high + 0.005 and high <= 1.0

    # every failure is the loud threshold failure, and its image is kept for review
    assert {record.error for record in failed} <= {"ThresholdConfidenceNotMet"}
    assert len(list((home / "failed-images").iterdir())) == len(failed)
    # ... and is a review item (one per distinct image), announced with the page to open
    with ReviewQueue(home / "scones.db", classes=("bicycle", "motorcycle")) as queue:
        pending = queue.counts()["pending"]
        assert {item.image_key for item in queue.items(limit=10_000)} == {
            record.input["s3_key"] for record in failed
        }
    assert f"{pending} items await review: run `scones dashboard`" in result.stdout
    assert "http://127.0.0.1:8090/review" in result.stdout

    # the monitoring report saw exactly the traffic the workflow sent
    report = home / "report"
    for name in ("report.html", "confidence.png", "summary.json", "constraint_violations.json"):
        assert (report / name).is_file(), name
    summary = json.loads((report / "summary.json").read_text())
    assert summary["records"]["total"] == len(records)
    assert summary["records"]["under_threshold"] == len(failed)
    # ... named by its registered version, against a baseline of held-out images, and its
    # own in-distribution traffic raises no drift alarm
    assert summary["model"]["label"] == "vehicle-classifier v1"
    assert summary["model"]["baseline_split"] == "test"
    assert summary["drift"]["status"] == "ok", summary["drift"]
    violations = json.loads((report / "constraint_violations.json").read_text())
    assert violations == {"violations": []}

    # the model was registered and promoted
    aliases = json.loads(
        (home / "store" / "models" / "vehicle-classifier" / "aliases.json").read_text()
    )
    assert aliases == {"production": 1}
