"""ExecutionStore (SQLite) and ExecutionRunner on the real ASL runtime with small handlers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from wf_helpers import ECHO

from scones.asl import FakeClock, Resources
from scones.workflow.executions import (
    ExecutionAlreadyExistsError,
    ExecutionNotFoundError,
    ExecutionRunner,
    ExecutionStore,
    InvalidExecutionInputError,
)


@pytest.fixture
def db(tmp_path: Path):
    with ExecutionStore(tmp_path / "scones.db") as store:
        yield store


def _runner(db: ExecutionStore, handler, **kwargs) -> ExecutionRunner:
    resources = Resources().register_lambda("echo", handler)
    return ExecutionRunner(
        db, ECHO, resources, state_machine="echo-machine", clock=FakeClock(), **kwargs
    )


def test_a_run_is_persisted_with_input_output_timestamps_and_history(db, tmp_path) -> None:
    with _runner(db, lambda event, context: {"seen": event["n"]}) as runner:
        record = runner.start({"n": 1}, name="first")
    assert record.status == "SUCCEEDED"
    assert record.execution_id.endswith(":execution:echo-machine:first")
    assert record.output == {"seen": 1}
    assert record.stopped_at is not None and record.stopped_at >= record.started_at
    types = [event["type"] for event in record.history]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert "LambdaFunctionSucceeded" in types or "TaskSucceeded" in types
    # a second store on the same file (another process, e.g. the CLI) sees it all
    with ExecutionStore(tmp_path / "scones.db") as again:
        assert again.get(record.execution_id) == record


def test_a_failing_handler_records_error_and_cause(db) -> None:
    class Broken(Exception):
        pass

    def handler(event, context):
        raise Broken("the image is a teapot")

    with _runner(db, handler) as runner:
        record = runner.start({"n": 1})
    assert record.status == "FAILED"
    assert record.error == "Broken"
    assert json.loads(record.cause)["errorMessage"] == "the image is a teapot"
    assert db.list(status="FAILED") == [record]
    assert db.list(status="SUCCEEDED") == []


def test_same_name_and_input_return_the_existing_execution(db) -> None:
    calls = []
    with _runner(db, lambda event, context: calls.append(event) or event) as runner:
        first = runner.start({"n": 1}, name="once")
        second = runner.start({"n": 1}, name="once")
        assert second == first
        assert len(calls) == 1
        with pytest.raises(ExecutionAlreadyExistsError, match=r"'once'.*different input"):
            runner.start({"n": 2}, name="once")
    assert len(db.list()) == 1


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 81, "ünï"])
def test_invalid_names_are_refused(db, name: str) -> None:
    with pytest.raises(InvalidExecutionInputError, match="invalid execution name"):
        db.start("m", name, {})
    assert db.list() == []


def test_oversized_input_is_refused_before_anything_is_written(db) -> None:
    with pytest.raises(InvalidExecutionInputError, match="byte limit"):
        db.start("m", "big", {"blob": "x" * (256 * 1024)})
    assert db.list() == []


def test_list_filters_by_status_and_since_newest_first(db) -> None:
    with _runner(db, lambda event, context: event) as runner:
        records = [runner.start({"n": n}, name=f"run-{n}") for n in range(3)]
    assert [r.name for r in db.list()] == ["run-2", "run-1", "run-0"]
    assert [r.name for r in db.list(limit=2)] == ["run-2", "run-1"]
    assert db.list(since=datetime.now(UTC) + timedelta(seconds=5)) == []
    assert len(db.list(since=records[1].started_at)) == 2
    with pytest.raises(InvalidExecutionInputError, match="'DONE'"):
        db.list(status="DONE")
    with pytest.raises(InvalidExecutionInputError, match="limit"):
        db.list(limit=0)


def test_get_and_find_name_what_is_missing(db) -> None:
    with pytest.raises(ExecutionNotFoundError, match="'arn:nope'"):
        db.get("arn:nope")
    with _runner(db, lambda event, context: event) as runner:
        record = runner.start({"n": 1}, name="findme")
    assert db.find("findme") == record
    assert db.find(record.execution_id) == record
    with pytest.raises(ExecutionNotFoundError, match="'other'"):
        db.find("other")


def test_pool_runs_concurrently_up_to_the_limit(db) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    # Handlers meet in threes: each round proves 3 ran at once (fewer would break the
    # barrier), and the peak count proves never more. The timeout only bounds a hang.
    meet = threading.Barrier(3, timeout=30)

    def handler(event, context):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        meet.wait()
        with lock:
            active -= 1
        return event

    with _runner(db, handler, max_concurrency=3) as runner:
        records = runner.run_all([(None, {"n": n}) for n in range(9)])
    assert [r.status for r in records] == ["SUCCEEDED"] * 9
    assert [r.input["n"] for r in records] == list(range(9))  # in the order given
    assert peak == 3


def test_concurrency_limit_must_be_positive(db) -> None:
    with pytest.raises(InvalidExecutionInputError, match="concurrency"):
        _runner(db, lambda event, context: event, max_concurrency=0)


CRASH = r"""
import os, sys
from scones.asl import Resources
from scones.workflow.executions import ExecutionRunner, ExecutionStore
definition = {"StartAt": "Crash", "States": {"Crash": {
    "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
    "Parameters": {"FunctionName": "crash", "Payload.$": "$"}, "End": True}}}
def crash(event, context):
    os._exit(17)  # the process dies mid-execution: no finally, no atexit
store = ExecutionStore(sys.argv[1])
runner = ExecutionRunner(store, definition, Resources().register_lambda("crash", crash),
                         state_machine="crashy")
runner.start({"image": "test/x.png"}, name="doomed")
"""


def test_a_crash_mid_run_leaves_the_execution_running_not_lost(tmp_path: Path) -> None:
    db_path = tmp_path / "scones.db"
    result = subprocess.run([sys.executable, "-c", CRASH, str(db_path)], timeout=60)
    assert result.returncode == 17
    with ExecutionStore(db_path) as db:
        [record] = db.list()
        assert record.name == "doomed" and record.status == "RUNNING"
        assert record.input == {"image": "test/x.png"}
        assert record.stopped_at is None
        assert db.list(status="RUNNING") == [record]


def test_a_database_from_a_newer_scones_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from scones.workflow.executions import ExecutionError

    path = tmp_path / "scones.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version=99")
    connection.close()
    with pytest.raises(ExecutionError, match="schema version 99"):
        ExecutionStore(path)


def test_since_takes_iso_times_and_ages_in_the_shared_grammar() -> None:
    from scones.errors import ParameterError
    from scones.times import parse_moment

    now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    assert parse_moment("30m", now=now) == now - timedelta(minutes=30)
    assert parse_moment("2h", now=now) == now - timedelta(hours=2)
    assert parse_moment("1d", now=now) == now - timedelta(days=1)
    assert parse_moment("1w", now=now) == now - timedelta(weeks=1)
    assert parse_moment("2026-11-26T14:00:00Z") == datetime(2026, 11, 26, 14, tzinfo=UTC)
    assert parse_moment("2026-11-26T14:00:00") == datetime(2026, 11, 26, 14, tzinfo=UTC)
    with pytest.raises(ParameterError, match="since 'yesterday'"):
        parse_moment("yesterday")


@pytest.mark.parametrize("bad_input", [{"n": float("nan")}, {"when": object()}, {1, 2}])
def test_input_that_is_not_json_is_refused(db, bad_input: object) -> None:
    with pytest.raises(InvalidExecutionInputError, match="not JSON"):
        db.start("m", "bad", bad_input)
    assert db.list() == []
