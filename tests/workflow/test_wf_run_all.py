"""ExecutionRunner.run_all: order, the on_done hook, and an execution that cannot start."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from wf_helpers import ECHO

from scones.asl import FakeClock, Resources
from scones.workflow import executions
from scones.workflow.executions import (
    ExecutionAlreadyExistsError,
    ExecutionError,
    ExecutionRunner,
    ExecutionStore,
    new_execution_name,
)


def _runner(db: ExecutionStore, handler, concurrency: int = 4) -> ExecutionRunner:
    resources = Resources().register_lambda("echo", handler)
    return ExecutionRunner(
        db, ECHO, resources, state_machine="m", clock=FakeClock(), max_concurrency=concurrency
    )


def test_on_done_hears_every_record_in_input_order_in_the_calling_thread(
    tmp_path: Path,
) -> None:
    heard: list[tuple[int, threading.Thread]] = []
    with ExecutionStore(tmp_path / "s.db") as db, _runner(db, lambda e, c: e) as runner:
        records = runner.run_all(
            [(None, {"n": n}) for n in range(50)],
            on_done=lambda record: heard.append((record.input["n"], threading.current_thread())),
        )
        assert [record.input["n"] for record in records] == list(range(50))
        assert [n for n, _ in heard] == list(range(50))
        assert {thread for _, thread in heard} == {threading.current_thread()}
        assert len({record.name for record in records}) == 50
        assert db.count_by_status() == {"SUCCEEDED": 50}
        assert runner.run_all([]) == []


def test_keep_returns_what_it_takes_of_each_record_while_on_done_hears_the_records(
    tmp_path: Path,
) -> None:
    heard: list[str] = []
    with ExecutionStore(tmp_path / "s.db") as db, _runner(db, lambda e, c: e) as runner:
        kept = runner.run_all(
            [(None, {"n": n}) for n in range(30)],
            on_done=lambda record: heard.append(record.status),
            keep=lambda record: (record.input["n"], record.status, len(record.history)),
        )
        assert [n for n, _, _ in kept] == list(range(30))
        assert {(status, length) for _, status, length in kept} == {
            ("SUCCEEDED", len(db.list(limit=1)[0].history))
        }
        assert heard == ["SUCCEEDED"] * 30


def test_an_execution_that_cannot_start_raises_after_those_before_it(tmp_path: Path) -> None:
    heard: list[int] = []
    with ExecutionStore(tmp_path / "s.db") as db, _runner(db, lambda e, c: e) as runner:
        runner.start({"n": -1}, name="taken")
        inputs = [(None, {"n": n}) for n in range(10)]
        inputs[4] = ("taken", {"n": 4})  # the name exists with another input
        with pytest.raises(ExecutionAlreadyExistsError, match="taken"):
            runner.run_all(inputs, on_done=lambda record: heard.append(record.input["n"]))
        assert heard == [0, 1, 2, 3]
        runner.close()  # the rest still ran to the end
        assert db.count_by_status() == {"SUCCEEDED": 10}


def test_generated_names_are_distinct_uuids() -> None:
    names = {new_execution_name() for _ in range(1000)}
    assert len(names) == 1000 and all(len(name) == 36 for name in names)


def test_finish_later_is_stored_once_its_result_returns(tmp_path: Path) -> None:
    with ExecutionStore(tmp_path / "s.db") as db:
        running, _ = db.start("m", "e1", {"n": 1})
        pending = db.finish_later(
            running, status="SUCCEEDED", output={"n": 1}, error=None, cause=None, history=[]
        )
        record = pending.result()
        assert record == db.get(running.execution_id) == pending.result()
        assert record.status == "SUCCEEDED" and record.output == {"n": 1}
        again = db.finish_later(
            running, status="FAILED", output=None, error="E", cause="c", history=[]
        )
        with pytest.raises(ExecutionError, match="not RUNNING"):
            again.result()


def test_the_input_limit_counts_utf8_bytes_not_characters(tmp_path: Path) -> None:
    from scones.workflow.executions import InvalidExecutionInputError

    with ExecutionStore(tmp_path / "s.db") as db:
        db.start("m", "fits", {"text": "€" * 80_000})  # 240,000 bytes
        with pytest.raises(InvalidExecutionInputError, match="byte limit"):
            db.start("m", "too-big", {"text": "€" * 90_000})  # 270,000 bytes


def test_executions_with_generated_names_are_all_stored_whole(tmp_path: Path) -> None:
    # Their inserts are not waited for: each must still be committed, before its finish.
    with ExecutionStore(tmp_path / "s.db") as db:
        with _runner(db, lambda e, c: e, concurrency=8) as runner:
            records = runner.run_all([(None, {"n": n}) for n in range(40)])
        assert {record.status for record in records} == {"SUCCEEDED"}
        assert db.count_by_status() == {"SUCCEEDED": 40}
        for record in records:
            stored = db.get(record.execution_id)
            assert (stored.input, stored.history) == (record.input, record.history)


def test_a_failed_insert_of_a_generated_name_fails_the_execution_s_result(tmp_path: Path) -> None:
    with ExecutionStore(tmp_path / "s.db") as db:
        db._conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON executions "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
        with _runner(db, lambda e, c: e) as runner, pytest.raises(Exception, match="disk says no"):
            runner.run_all([(None, {"n": 1})])
        assert db.count_by_status() == {}


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_a_quick_unnamed_execution_is_written_by_one_insert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executions, "DEFERRED_START_SECONDS", 60.0)  # none ages meanwhile
    with ExecutionStore(tmp_path / "s.db") as db:
        with _runner(db, lambda e, c: e) as runner:
            records = runner.run_all([(None, {"n": n}) for n in range(20)])
            runner.start({"n": 20}, name="named")  # a named one: its insert, then its update
        assert db._writes.writes == 20 + 2
        assert db.count_by_status() == {"SUCCEEDED": 21}
        for record in records:
            assert db.get(record.execution_id) == record


def test_an_unnamed_execution_still_running_is_shown_as_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executions, "DEFERRED_START_SECONDS", 0.05)
    release = threading.Event()

    def slow(event, context):
        release.wait(30)
        return event

    with ExecutionStore(tmp_path / "s.db") as db, _runner(db, slow) as runner:
        future = runner.submit({"n": 1})
        _wait_for(lambda: db.count_by_status() == {"RUNNING": 1})
        [running] = db.list(status="RUNNING")
        assert running.input == {"n": 1} and running.stopped_at is None
        release.set()
        record = future.result(timeout=30)
        assert record.status == "SUCCEEDED" and db.get(running.execution_id) == record
        assert db._writes.writes == 2  # the RUNNING insert, then the finish's update
        _wait_for(lambda: db._flusher is None)  # nothing left to write: the thread ended


def test_closing_the_store_writes_unnamed_executions_still_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executions, "DEFERRED_START_SECONDS", 60.0)
    with ExecutionStore(tmp_path / "s.db") as db:
        running, created = db.start("m", new_execution_name(), {"n": 1}, generated_name=True)
        assert created and db.count_by_status() == {}  # not written yet
    with ExecutionStore(tmp_path / "s.db") as db:
        assert db.get(running.execution_id) == running
        assert running.status == "RUNNING"


def test_a_failed_running_insert_fails_the_execution_s_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executions, "DEFERRED_START_SECONDS", 0.05)
    with ExecutionStore(tmp_path / "s.db") as db:
        db._conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON executions "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )

        def slow(event, context):
            _wait_for(lambda: not db._deferred_starts)  # its RUNNING insert was queued
            return event

        with _runner(db, slow) as runner, pytest.raises(Exception, match="disk says no"):
            runner.run_all([(None, {"n": 1})])
        assert db.count_by_status() == {}
