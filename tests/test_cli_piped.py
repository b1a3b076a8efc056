"""Piped output: whole values, one row a line, tab-separated; --json carries every column.

Every command here runs as a real subprocess with stdout a pipe, as `... | grep KEY` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import REPO_ROOT
from scones.model.registry import register
from scones.store import open_store
from scones.workflow.executions import ExecutionStore

# Longer than any 80-column table cell: rich used to cut it to `incoming/does-n…`.
LONG_KEY = "incoming/does-not-fit-in-eighty-columns/" + "motorcycle-at-the-back-door-" * 3 + ".png"


def scones(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    env = {k: v for k, v in env.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-m", "scones", *args],
        capture_output=True,  # stdout is a pipe, not a terminal
        text=True,
        timeout=120,
        env=env,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result


def record_executions(db_path: Path) -> None:
    """Two finished executions as the workflow records them: one routed, one under threshold."""
    started = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    with ExecutionStore(db_path) as db:
        routed, _ = db.start("single", "routed-1", {"s3_bucket": "scones", "s3_key": LONG_KEY})
        db.finish(
            routed,
            status="SUCCEEDED",
            output={"inferences": [0.97, 0.03], "classes": ["bicycle", "motorcycle"]},
            error=None,
            cause=None,
            history=[],
            stopped_at=started + timedelta(seconds=1),
        )
        unsure, _ = db.start("single", "unsure-1", {"s3_bucket": "scones", "s3_key": "b.png"})
        body = json.dumps({"inferences": [0.4, 0.6], "classes": ["bicycle", "motorcycle"]})
        db.finish(
            unsure,
            status="FAILED",
            output=None,
            error="ThresholdConfidenceNotMet",
            cause="THRESHOLD_CONFIDENCE_NOT_MET",
            history=[
                {
                    "id": 5,
                    "type": "TaskStateExited",
                    "stateExitedEventDetails": {"name": "filter", "output": body},
                }
            ],
            stopped_at=started + timedelta(seconds=2),
        )


def test_executions_list_piped_is_one_whole_line_per_execution(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    record_executions(home / "scones.db")
    listed = scones("executions", "list", home=home)
    lines = listed.stdout.splitlines()
    assert len(lines) == 2  # no header, no borders, no wrapped continuation lines
    by_name = {line.split("\t")[1]: line.split("\t") for line in lines}
    assert by_name["routed-1"][2:6] == ["SUCCEEDED", LONG_KEY, "bicycle", "0.9700"]
    assert by_name["unsure-1"][2:] == [
        "FAILED",
        "b.png",
        "motorcycle",
        "0.6000",
        "ThresholdConfidenceNotMet",
    ]
    assert [line for line in lines if LONG_KEY in line] == ["\t".join(by_name["routed-1"])]


def test_executions_list_json_carries_every_column_of_the_table(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    record_executions(home / "scones.db")
    table = {
        line.split("\t")[1]: line.split("\t")
        for line in scones("executions", "list", home=home).stdout.splitlines()
    }
    as_json = scones("executions", "list", "--json", home=home).stdout
    rows = [json.loads(line) for line in as_json.splitlines()]
    assert len(rows) == len(table) == 2
    for row in rows:
        started, _, status, image, top_class, confidence, error = table[row["name"]]
        assert row["started_at"].startswith(started.replace(" ", "T"))
        assert (row["status"], row["image"], row["class"]) == (status, image, top_class)
        assert f"{row['confidence']:.4f}" == confidence
        assert (row["error"] or "") == error


def test_models_list_piped_keeps_the_whole_uri(tiny_model_dir: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / ("a-store-folder-with-a-name-long-enough-to-be-cut-" * 2)
    register(open_store(str(store_dir)), tiny_model_dir, "vehicle-classifier")
    listed = scones("models", "list", "--store", str(store_dir), home=tmp_path)
    [line] = listed.stdout.splitlines()
    version, aliases, registered, size, uri = line.split("\t")
    assert (version, aliases) == ("1", "") and size.endswith(" MB")
    assert uri.endswith(f"{store_dir.name}/models/vehicle-classifier/1/model.tar.gz")
    listed = scones("models", "list", "--json", "--store", str(store_dir), home=tmp_path)
    as_json = json.loads(listed.stdout)
    assert as_json["uri"] == uri and as_json["registered_at"][:19] == registered[:19]


def test_functions_package_piped_and_json(tmp_path: Path) -> None:
    out_dir = tmp_path / "zips"
    listed = scones("functions", "package", "--out", str(out_dir), home=tmp_path)
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert len(rows) == 3 and all(len(row) == 4 for row in rows)
    as_json = [
        json.loads(line)
        for line in scones(
            "functions", "package", "--out", str(out_dir), "--json", home=tmp_path
        ).stdout.splitlines()
    ]
    assert [[r["function"], r["handler"], r["zip"], str(r["bytes"])] for r in as_json] == rows
    assert all(Path(r["zip"]).is_file() for r in as_json)
