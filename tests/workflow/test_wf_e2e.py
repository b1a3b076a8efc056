"""The whole workflow: real handlers, the real definitions, the real endpoint (tiny model)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from wf_helpers import FlakyProxy, running_endpoint

from conftest import REPO_ROOT, noise_png, solid_png
from scones.asl import FakeClock
from scones.functions import classify_image
from scones.settings import get_settings
from scones.store import open_store
from scones.workflow.executions import ExecutionStore
from scones.workflow.local import local_runner
from scones.workflow.runs import map_outcomes, outcome_of

RED = solid_png((200, 30, 30))
BLUE = solid_png((30, 30, 200))


@pytest.fixture(scope="module")
def endpoint(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_endpoint(tiny_model_dir, tmp_path_factory.mktemp("serve-home")) as url:
        yield url


@pytest.fixture
def workflow_env(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A store with a red (bicycle), a blue (motorcycle) and a noise (unsure) image."""
    store_root = tmp_path / "store"
    store = open_store(str(store_root))
    store.put("test/red.png", RED)
    store.put("test/blue.png", BLUE)
    store.put("test/noise.png", noise_png(3))
    monkeypatch.setenv("SCONES_STORE", str(store_root))
    monkeypatch.setenv("SCONES_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("THRESHOLD", raising=False)
    get_settings.cache_clear()
    yield store
    classify_image.close_idle_connections()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ExecutionStore]:
    with ExecutionStore(tmp_path / "scones.db") as store:
        yield store


def _input(key: str) -> dict:
    return {"s3_bucket": "scones", "s3_key": key, "image_data": ""}


def _events(record, event_type: str) -> list[dict]:
    return [event for event in record.history if event["type"] == event_type]


def test_a_confident_image_succeeds(workflow_env, db) -> None:
    with local_runner(db, clock=FakeClock()) as runner:
        record = runner.start(_input("test/red.png"))
    assert record.status == "SUCCEEDED", record.cause
    assert record.output["s3_key"] == "test/red.png"
    assert record.output["classes"] == ["bicycle", "motorcycle"]
    assert record.output["inferences"][0] >= 0.93
    outcome = outcome_of(record)
    assert (outcome.status, outcome.top_class) == ("ROUTED", "bicycle")
    assert db.get(record.execution_id) == record


def test_an_unsure_image_fails_loudly_with_the_threshold_error_in_history(workflow_env, db):
    with local_runner(db, clock=FakeClock()) as runner:
        record = runner.start(_input("test/noise.png"))
    assert record.status == "FAILED"
    assert record.error == "ThresholdConfidenceNotMet"
    assert "test/noise.png" in record.cause and "threshold 0.93" in record.cause
    [task_failed] = _events(record, "TaskFailed")
    assert task_failed["taskFailedEventDetails"]["error"] == "ThresholdConfidenceNotMet"
    [fail_entered] = _events(record, "FailStateEntered")
    assert fail_entered["stateEnteredEventDetails"]["name"] == "LowConfidence"
    [failed] = _events(record, "ExecutionFailed")
    assert failed["executionFailedEventDetails"]["cause"] == record.cause
    outcome = outcome_of(record)
    assert outcome.status == "LOW_CONFIDENCE" and outcome.confidence < 0.93
    assert outcome.top_class in ("bicycle", "motorcycle")
    assert db.list(status="FAILED") == [record]


def test_the_threshold_is_the_filter_function_setting(workflow_env, db, monkeypatch) -> None:
    monkeypatch.setenv("THRESHOLD", "0.5")
    with local_runner(db, clock=FakeClock()) as runner:
        assert runner.start(_input("test/noise.png")).status == "SUCCEEDED"


def test_a_missing_key_fails_with_a_clear_error(workflow_env, db) -> None:
    with local_runner(db, clock=FakeClock()) as runner:
        record = runner.start(_input("test/missing.png"))
    assert record.status == "FAILED"
    assert record.error == "ImageNotFound"
    assert "test/missing.png" in json.loads(record.cause)["errorMessage"]
    assert not _events(record, "FailStateEntered")  # not the low-confidence path


def test_a_flaky_endpoint_is_retried_with_backoff_then_succeeds(
    workflow_env, db, endpoint, monkeypatch
) -> None:
    clock = FakeClock()
    with FlakyProxy(endpoint, failures=2) as proxy:
        monkeypatch.setenv("SCONES_ENDPOINT_URL", proxy.url)
        with local_runner(db, clock=clock) as runner:
            record = runner.start(_input("test/blue.png"))
    assert record.status == "SUCCEEDED", record.cause
    assert record.output["inferences"][1] >= 0.93
    assert proxy.posts == 3 and proxy.forwarded == 1
    failures = [e["taskFailedEventDetails"]["error"] for e in _events(record, "TaskFailed")]
    assert failures == ["EndpointTransientError", "EndpointTransientError"]
    assert clock.sleeps == [1.0, 2.0]  # IntervalSeconds 1, BackoffRate 2: fake time, no wait


def test_an_endpoint_that_stays_down_fails_after_the_retries(
    workflow_env, db, endpoint, monkeypatch
) -> None:
    clock = FakeClock()
    with FlakyProxy(endpoint, failures=100) as proxy:
        monkeypatch.setenv("SCONES_ENDPOINT_URL", proxy.url)
        with local_runner(db, clock=clock) as runner:
            record = runner.start(_input("test/red.png"))
    assert record.status == "FAILED" and record.error == "EndpointTransientError"
    assert proxy.posts == 5  # the first try and MaxAttempts 4 retries
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]


def test_an_image_the_endpoint_refuses_fails_without_retries(workflow_env, db) -> None:
    workflow_env.put("test/not-an-image.png", b"this is text, not a PNG")
    clock = FakeClock()
    with local_runner(db, clock=clock) as runner:
        record = runner.start(_input("test/not-an-image.png"))
    assert record.status == "FAILED"
    assert record.error == "EndpointRequestError"
    assert "answered 4" in json.loads(record.cause)["errorMessage"]
    assert len(_events(record, "TaskFailed")) == 1  # a 4xx is not retried
    assert clock.sleeps == []


def test_an_s3_store_is_read_through_its_bucket_name(endpoint, s3_bucket, db, monkeypatch):
    open_store(f"s3://{s3_bucket}/staged").put("test/red.png", RED)
    monkeypatch.setenv("SCONES_STORE", f"s3://{s3_bucket}/staged")
    monkeypatch.setenv("SCONES_ENDPOINT_URL", endpoint)
    get_settings.cache_clear()
    try:
        with local_runner(db, clock=FakeClock()) as runner:
            record = runner.start({"s3_bucket": s3_bucket, "s3_key": "test/red.png"})
    finally:
        classify_image.close_idle_connections()
    assert record.status == "SUCCEEDED", record.cause
    assert record.output["classes"][0] == "bicycle"


def test_the_map_variant_returns_one_result_per_key(workflow_env, db) -> None:
    keys = ["test/red.png", "test/noise.png", "test/missing.png", "test/blue.png"]
    with local_runner(db, "map", clock=FakeClock()) as runner:
        record = runner.start({"s3_bucket": "scones", "keys": keys})
    assert record.status == "SUCCEEDED", record.cause
    results = record.output["results"]
    assert [r["s3_key"] for r in results] == keys
    assert [r["status"] for r in results] == ["ROUTED", "LOW_CONFIDENCE", "FAILED", "ROUTED"]
    assert "threshold" in results[1]["cause"] and results[1]["error"] == (
        "ThresholdConfidenceNotMet"
    )
    assert results[2]["error"] == "ImageNotFound"
    outcomes = map_outcomes(record, ["bicycle", "motorcycle"])
    assert [o.top_class for o in outcomes] == ["bicycle", outcomes[1].top_class, None, "motorcycle"]


def test_many_executions_run_concurrently_and_all_persist(workflow_env, db) -> None:
    keys = ["test/red.png", "test/blue.png", "test/noise.png"] * 6
    with local_runner(db, max_concurrency=8) as runner:
        records = runner.run_all([(None, _input(key)) for key in keys])
    assert [r.status for r in records] == ["SUCCEEDED", "SUCCEEDED", "FAILED"] * 6
    assert len(db.list(limit=100)) == 18
    assert len(db.list(status="FAILED", limit=100)) == 6


# --- the CLI, as a user runs it ----------------------------------------------------------


def _scones(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    full_env.update(env)
    full_env["SCONES_HOME"] = str(home)
    return subprocess.run(
        [str(REPO_ROOT / ".venv/bin/scones"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        cwd=home,
    )


@pytest.fixture
def cli_home(endpoint: str, tmp_path: Path):
    home = tmp_path / "home"
    store = open_store(str(home / "store"))
    store.put("test/red.png", RED)
    store.put("test/blue.png", BLUE)
    store.put("test/noise.png", noise_png(5))
    store.put_text("test.lst", "0\t0\tred.png\n1\t1\tblue.png\n2\t0\tnoise.png\n")
    store.put_text("dataset.json", json.dumps({"class_names": ["bicycle", "motorcycle"]}))
    return home, {"SCONES_ENDPOINT_URL": endpoint, "COLUMNS": "200"}


def test_cli_run_key_prints_class_and_confidence(cli_home) -> None:
    home, env = cli_home
    result = _scones(home, "run", "--key", "test/red.png", env=env)
    assert result.returncode == 0, result.stderr
    key, status, top_class, confidence = result.stdout.split()
    assert (key, status, top_class) == ("test/red.png", "SUCCEEDED", "bicycle")
    assert float(confidence) >= 0.93


def test_cli_low_confidence_exits_non_zero_and_is_listed_as_failed(cli_home) -> None:
    home, env = cli_home
    result = _scones(home, "run", "--key", "test/noise.png", "--name", "noisy", env=env)
    assert result.returncode == 1
    assert "ThresholdConfidenceNotMet" in result.stdout
    assert "below the threshold" in result.stderr
    listed = _scones(home, "executions", "list", "--status", "FAILED", "--json", env=env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["name"], r["error"]) for r in rows] == [("noisy", "ThresholdConfidenceNotMet")]
    shown = _scones(home, "executions", "show", "noisy", env=env)
    assert json.loads(shown.stdout)["status"] == "FAILED"
    history = _scones(home, "executions", "history", "noisy", "--json", env=env)
    types = [event["type"] for event in json.loads(history.stdout)]
    assert types[-2:] == ["FailStateEntered", "ExecutionFailed"]


def test_cli_run_by_name_is_idempotent(cli_home) -> None:
    home, env = cli_home
    first = _scones(home, "run", "--key", "test/blue.png", "--name", "blue-1", env=env)
    again = _scones(home, "run", "--key", "test/blue.png", "--name", "blue-1", env=env)
    assert first.returncode == again.returncode == 0
    assert first.stdout == again.stdout
    listed = _scones(home, "executions", "list", "--json", env=env)
    assert len(listed.stdout.splitlines()) == 1
    other = _scones(home, "run", "--key", "test/red.png", "--name", "blue-1", env=env)
    assert other.returncode != 0 and "different input" in other.stderr


def test_cli_random_runs_test_images_concurrently(cli_home) -> None:
    home, env = cli_home
    result = _scones(home, "run", "--random", "3", env=env)
    assert result.returncode == 1  # the noise image is not routed
    assert "2 of 3 routed" in result.stderr
    for key in ("test/red.png", "test/blue.png", "test/noise.png"):
        assert key in result.stdout
    listed = _scones(home, "executions", "list", "--json", "--since", "10m", env=env)
    assert len(listed.stdout.splitlines()) == 3
    future = _scones(home, "executions", "list", "--json", "--since", "2999-01-01", env=env)
    assert future.stdout == ""


def test_cli_run_json_prints_one_object_per_image(cli_home) -> None:
    home, env = cli_home
    result = _scones(home, "run", "--random", "3", "--seed", "7", "--json", env=env)
    rows = {row["s3_key"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["test/red.png"]["status"] == "ROUTED"
    assert rows["test/red.png"]["top_class"] == rows["test/red.png"]["true_class"] == "bicycle"
    assert rows["test/noise.png"]["status"] == "LOW_CONFIDENCE"
    assert rows["test/noise.png"]["error"] == "ThresholdConfidenceNotMet"
    assert result.returncode == 1


def test_cli_map_classifies_keys_in_one_execution(cli_home) -> None:
    home, env = cli_home
    result = _scones(
        home, "run", "--map", "--key", "test/red.png", "--key", "test/blue.png", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "2 of 2 routed" in result.stderr
    assert "bicycle" in result.stdout and "motorcycle" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "give --key"),
        (["run", "--random", "5"], "more than the 3 images"),
        (["run", "--key", "test/red.png", "--threshold", "2"], "--threshold"),
        (["executions", "show", "nope"], "'nope'"),
        (["executions", "list", "--status", "DONE"], "'DONE'"),
    ],
)
def test_cli_bad_input_is_one_clear_line_and_non_zero(cli_home, args, message) -> None:
    home, env = cli_home
    result = _scones(home, *args, env=env)
    assert result.returncode != 0
    assert message in result.stderr


def test_cli_run_without_an_endpoint_says_how_to_start_one(cli_home) -> None:
    from conftest import free_port

    home, env = cli_home
    env = env | {"SCONES_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    result = _scones(home, "run", "--key", "test/red.png", env=env)
    assert result.returncode != 0
    assert "scones serve" in result.stderr


def test_cli_run_piped_prints_one_whole_line_per_image(cli_home) -> None:
    home, env = cli_home
    env = {k: v for k, v in env.items() if k != "COLUMNS"}  # as a pipe really is: no width
    long_key = "test/" + "a-red-bicycle-photographed-at-the-back-door-" * 3 + "red.png"
    open_store(str(home / "store")).put(long_key, RED)
    result = _scones(home, "run", "--key", long_key, "--key", "test/noise.png", env=env)
    assert result.returncode == 1  # the noise image is not routed
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[:3] for row in rows] == [
        [long_key, "ROUTED", "bicycle"],
        ["test/noise.png", "LOW_CONFIDENCE", rows[1][2]],
    ]
    assert rows[1][-1] == "under the threshold 0.93"
    assert "1 of 2 routed" in result.stderr


@pytest.fixture(scope="module")
def lenient_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tiny model recording a routing threshold of 0.4 (noise, ~0.5, passes it)."""
    from conftest import build_tiny_model
    from scones.model.artifact import MODEL_JSON, ModelCard

    model_dir = build_tiny_model(tmp_path_factory.mktemp("lenient") / "model")
    card = ModelCard.model_validate_json((model_dir / MODEL_JSON).read_text())
    card.metrics["recommended_threshold"] = 0.4
    (model_dir / MODEL_JSON).write_text(card.model_dump_json(indent=2))
    with running_endpoint(model_dir, tmp_path_factory.mktemp("lenient-home")) as url:
        yield url


def test_threshold_model_routes_with_the_threshold_the_served_model_records(
    cli_home, lenient_endpoint
) -> None:
    home, env = cli_home
    env = {**env, "SCONES_ENDPOINT_URL": lenient_endpoint, "SCONES_THRESHOLD": "model"}
    routed = _scones(home, "run", "--key", "test/noise.png", "--json", env=env)
    assert routed.returncode == 0, routed.stderr
    assert json.loads(routed.stdout)["status"] == "ROUTED"
    # --threshold still wins over the model's.
    strict = _scones(home, "run", "--key", "test/noise.png", "--threshold", "0.93", env=env)
    assert strict.returncode == 1 and "below the threshold 0.93" in strict.stderr


def test_threshold_model_falls_back_to_the_default_when_the_model_records_none(cli_home) -> None:
    home, env = cli_home  # the tiny model records no threshold
    result = _scones(
        home, "run", "--key", "test/noise.png", env={**env, "SCONES_THRESHOLD": "model"}
    )
    assert result.returncode == 1 and "below the threshold 0.93" in result.stderr


def test_threshold_model_with_an_unreachable_endpoint_is_a_clear_error(cli_home) -> None:
    from conftest import free_port

    home, env = cli_home
    env = {
        **env,
        "SCONES_THRESHOLD": "model",
        "SCONES_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
    }
    result = _scones(home, "run", "--key", "test/red.png", env=env)
    assert result.returncode != 0
    assert "SCONES_THRESHOLD=model" in result.stderr and "unreachable" in result.stderr
    assert "Traceback" not in result.stderr
