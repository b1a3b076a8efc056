"""`scones monitor` end to end on hand-written capture: the four outputs, exit codes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from monitor_helpers import (
    T0,
    baseline_for,
    capture_record,
    minutes,
    model_with_baseline,
    varied_pngs,
    write_capture_file,
)
from typer.testing import CliRunner

from scones.cli import app

SCONES = str(Path(sys.executable).with_name("scones"))
OUTPUTS = {"report.html", "confidence.png", "summary.json", "constraint_violations.json"}


@pytest.fixture(scope="module")
def baseline_model(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with a baseline.json of 'normal' images, predicted half and half."""
    images = varied_pngs(120, seed=1)
    tops = [0.97] * 108 + [0.6] * 12  # a tenth of validation images is unsure
    baseline = baseline_for(images, tops, ["bicycle", "motorcycle"], [0] * 60 + [1] * 60)
    return model_with_baseline(tiny_model_dir, tmp_path_factory.mktemp("with-baseline"), baseline)


def run(*args: str):
    return CliRunner().invoke(app, ["monitor", *args], catch_exceptions=False)


def output(i: int) -> list[float]:
    if i % 10 == 0:
        return [0.6, 0.4]
    return [0.97, 0.03] if i % 2 else [0.03, 0.97]


def normal_traffic(root: Path, count: int = 120) -> list[dict]:
    """Like the baseline: half each class, a tenth unsure (top 0.6, under the threshold)."""
    records = [
        capture_record(img, output(i), T0 + minutes(i))
        for i, img in enumerate(varied_pngs(count, seed=2))
    ]
    write_capture_file(root, records[: count // 2])
    write_capture_file(root, records[count // 2 :])
    return records


def test_writes_four_outputs_with_numbers_that_match_the_traffic(tmp_path, baseline_model):
    capture = tmp_path / "capture"
    records = normal_traffic(capture)
    unsure = [
        capture_record(img, [0.6, 0.4], T0 + minutes(200 + i))
        for i, img in enumerate(varied_pngs(7, seed=5))
    ]
    write_capture_file(capture, unsure)
    out = tmp_path / "report"
    result = run("--capture-uri", str(capture), "--model", str(baseline_model), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == OUTPUTS
    summary = json.loads((out / "summary.json").read_text())
    total = len(records) + len(unsure)
    assert summary["records"]["total"] == total
    under = 120 // 10 + 7
    assert summary["records"]["under_threshold"] == under
    assert summary["records"]["passed"] == total - under
    assert summary["records"]["under_threshold_share"] == pytest.approx(under / total)
    assert sum(h["records"] for h in summary["volume_per_hour"]) == total
    assert summary["drift"]["status"] == "ok"
    assert summary["model"]["name"] == "tiny"
    assert json.loads((out / "constraint_violations.json").read_text()) == {"violations": []}
    assert (out / "confidence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # charts embedded: readable offline
    assert "http://" not in html and "https://" not in html
    assert "127 records" not in html and f"<td>{total}</td>" in html


def test_shifted_images_are_flagged_with_exit_code_3(tmp_path, baseline_model):
    capture = tmp_path / "capture"
    shifted = [
        capture_record(img, [0.97, 0.03], T0 + minutes(i))
        for i, img in enumerate(varied_pngs(100, seed=4, brightness=80, size=64))
    ]
    write_capture_file(capture, shifted)
    out = tmp_path / "report"
    result = run("--capture-uri", str(capture), "--model", str(baseline_model), "--out", str(out))
    assert result.exit_code == 3, result.output
    violations = json.loads((out / "constraint_violations.json").read_text())["violations"]
    names = {v["feature_name"] for v in violations}
    assert {"image_brightness", "image_width", "image_height", "predicted_class_mix"} <= names
    assert "VIOLATION image_brightness" in result.output
    # A looser threshold on the same traffic: the class mix no longer counts.
    again = run(
        "--capture-uri",
        str(capture),
        "--model",
        str(baseline_model),
        "--out",
        str(out),
        "--psi-threshold",
        "50",
    )
    assert again.exit_code == 3
    names = {
        v["feature_name"]
        for v in json.loads((out / "constraint_violations.json").read_text())["violations"]
    }
    assert "predicted_class_mix" not in names and "image_brightness" in names
    # A stricter significance level: the class mix shift is real but not that sure.
    stricter = run(
        "--capture-uri",
        str(capture),
        "--model",
        str(baseline_model),
        "--out",
        str(out),
        "--chi2-p-value",
        "1e-300",
    )
    assert stricter.exit_code == 3
    summary = json.loads((out / "summary.json").read_text())
    (mix,) = [c for c in summary["drift"]["checks"] if c["feature_name"] == "predicted_class_mix"]
    assert mix["value"] > 0.2 and mix["p_value"] > 1e-300 and not mix["violated"]


def test_empty_prefix_gives_a_clear_message_and_an_empty_report(tmp_path, baseline_model):
    out = tmp_path / "report"
    result = run(
        "--capture-uri", str(tmp_path / "empty"), "--model", str(baseline_model), "--out", str(out)
    )
    assert result.exit_code == 0
    assert "no capture records under" in result.output
    assert {p.name for p in out.iterdir()} == OUTPUTS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"]["total"] == 0
    assert summary["drift"]["status"] == "skipped"


def gif_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="GIF")
    return buffer.getvalue()


def test_unknown_content_types_and_undecodable_images_are_counted(tmp_path, baseline_model):
    capture = tmp_path / "capture"
    normal_traffic(capture, 40)
    odd = [
        capture_record(
            b"%PDF-1.4 not an image",
            [0.99, 0.01],
            T0 + minutes(300),
            content_type="application/pdf",
        ),
        capture_record(b"\x89PNG\r\n\x1a\ntruncated", [0.99, 0.01], T0 + minutes(301)),
        capture_record(gif_bytes(), [0.99, 0.01], T0 + minutes(302), content_type="image/jpeg"),
    ]
    write_capture_file(capture, [*odd, "this line is not JSON"])
    out = tmp_path / "report"
    result = run("--capture-uri", str(capture), "--model", str(baseline_model), "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"]["total"] == 43
    assert summary["records"]["unknown_content_type"] == 1
    assert summary["records"]["undecodable_images"] == 2
    assert summary["reader"]["malformed_lines"] == 1
    assert "1 unknown content type, 2 undecodable, 1 malformed lines" in result.output
    assert summary["records"]["undecodable_images_by_reason"] == {
        "not_an_image": 1,
        "unsupported_image_format": 1,
    }


def test_a_model_without_baseline_skips_drift_and_says_so(tmp_path, tiny_model_dir):
    capture = tmp_path / "capture"
    normal_traffic(capture, 40)
    old_model = model_with_baseline(tiny_model_dir, tmp_path / "old-model", None)
    out = tmp_path / "report"
    result = run("--capture-uri", str(capture), "--model", str(old_model), "--out", str(out))
    assert result.exit_code == 0
    assert "has no baseline.json" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["drift"]["status"] == "skipped"
    assert summary["records"]["total"] == 40


def test_without_model_the_default_is_production_and_drift_is_skipped(tmp_path):
    capture = tmp_path / "capture"
    normal_traffic(capture, 40)
    out = tmp_path / "report"
    result = run("--capture-uri", str(capture), "--out", str(out))
    assert result.exit_code == 0
    assert "default model 'production' cannot be resolved" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_names"] == ["class_0", "class_1"]


def test_since_until_limit_the_window(tmp_path, baseline_model):
    capture = tmp_path / "capture"
    normal_traffic(capture, 120)  # one record a minute from T0
    out = tmp_path / "report"
    since = (T0 + minutes(60)).isoformat()
    until = (T0 + minutes(89)).isoformat()
    result = run(
        "--capture-uri",
        str(capture),
        "--model",
        str(baseline_model),
        "--out",
        str(out),
        "--since",
        since,
        "--until",
        until,
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["records"]["total"] == 30


def test_capture_on_s3(s3_bucket, tmp_path, baseline_model):
    import boto3

    local = tmp_path / "capture"
    normal_traffic(local, 40)
    s3 = boto3.client("s3")
    for path in local.rglob("*.jsonl"):
        s3.upload_file(str(path), s3_bucket, "data_capture/" + path.relative_to(local).as_posix())
    out = tmp_path / "report"
    result = run(
        "--capture-uri",
        f"s3://{s3_bucket}/data_capture",
        "--model",
        str(baseline_model),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["records"]["total"] == 40


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "--since 'last tuesday' is not a time"),
        (["--since", "2026-11-27", "--until", "2026-11-26"], "is after --until"),
        (["--threshold", "1.5"], "--threshold 1.5 is outside 0..1"),
        (["--chi2-p-value", "0"], "--chi2-p-value 0.0 is outside 0..1"),
        (["--ks-p-value", "2"], "--ks-p-value 2.0 is outside 0..1"),
        (["--model", "/no/such/model"], "--model '/no/such/model' cannot be used"),
        (["--capture-uri", "ftp://host/x"], "unsupported store URI scheme 'ftp'"),
        (["--workers", "0"], "--workers 0 must be at least 1"),
    ],
)
def test_bad_flags_fail_with_one_line_naming_the_value(tmp_path, args, message):
    env = {**os.environ, "SCONES_HOME": str(tmp_path / "home")}
    out = tmp_path / "report"
    result = subprocess.run(
        [SCONES, "monitor", "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode not in (0, 3)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()  # nothing half-written


def test_an_out_path_that_is_a_file_is_refused(tmp_path):
    env = {**os.environ, "SCONES_HOME": str(tmp_path / "home")}
    blocker = tmp_path / "report"
    blocker.write_text("keep me")
    result = subprocess.run(
        [SCONES, "monitor", "--capture-uri", str(tmp_path / "empty"), "--out", str(blocker)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot be used as a folder" in result.stderr and "Traceback" not in result.stderr
    assert blocker.read_text() == "keep me"


def test_the_report_names_the_model_version_never_vnone(tmp_path, baseline_model):
    from conftest import build_tiny_model
    from scones.model.registry import register
    from scones.store import open_store

    store_dir = tmp_path / "store"
    version = register(open_store(str(store_dir)), baseline_model, "tiny").version
    baseline = json.loads((baseline_model / "baseline.json").read_text())
    bare = build_tiny_model(tmp_path / "bare", version=None)  # trained, never registered
    unregistered_model = model_with_baseline(bare, tmp_path / "unregistered-model", baseline)
    capture = tmp_path / "capture"
    normal_traffic(capture, 40)
    registered, unregistered = tmp_path / "registered", tmp_path / "unregistered"
    args = ["--capture-uri", str(capture), "--store", str(store_dir)]
    assert run(*args, "--model", f"tiny:{version}", "--out", str(registered)).exit_code == 0
    assert run(*args, "--model", str(unregistered_model), "--out", str(unregistered)).exit_code == 0
    summary = json.loads((registered / "summary.json").read_text())
    assert summary["model"]["version"] == version
    assert summary["model"]["label"] == f"tiny v{version}"
    assert f"<td>tiny v{version}</td>" in (registered / "report.html").read_text()
    html = (unregistered / "report.html").read_text()
    assert "vNone<" not in html  # (the base64 charts may spell anything)
    assert f"<td>tiny (unregistered: {unregistered_model.resolve()})</td>" in html
