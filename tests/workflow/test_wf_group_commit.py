"""Group commit: concurrent writes share transactions, and none that returned is lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scones.asl import ExecutionConfig, FakeClock, Resources, execute, load
from scones.asl import resources as asl_resources
from scones.workflow.definitions import LOCAL_ACCOUNT_ID, LOCAL_REGION
from scones.workflow.executions import ExecutionRunner, ExecutionStore
from scones.workflow.group_commit import SUBMIT_BATCH, GroupCommit


def _table(tmp_path: Path) -> tuple[sqlite3.Connection, threading.Lock, GroupCommit]:
    conn = sqlite3.connect(tmp_path / "t.db", check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
    lock = threading.Lock()
    return conn, lock, GroupCommit(conn, lock)


def _wait_queued(writes: GroupCommit, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(writes._queue) < count:
        assert time.monotonic() < deadline, "writers never queued"
        time.sleep(0.001)


def test_concurrent_writes_all_commit_in_fewer_transactions(tmp_path: Path) -> None:
    conn, lock, writes = _table(tmp_path)
    counts: list[int] = []

    def insert(number: int) -> None:
        for item in range(25):
            counts.append(writes.execute("INSERT INTO t VALUES (?, ?)", (f"{number}-{item}", "v")))

    with lock:  # hold the connection so that writers pile up behind the first commit
        threads = [threading.Thread(target=insert, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        _wait_queued(writes, 15)
    for thread in threads:
        thread.join()
    assert counts == [1] * 400
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (400,)
    assert writes.writes == 400 and writes.batches < 400
    assert not conn.in_transaction


def test_a_failing_statement_fails_only_its_writer(tmp_path: Path) -> None:
    conn, lock, writes = _table(tmp_path)
    outcomes: dict[str, object] = {}

    def write(key: str, value: str | None) -> None:
        try:
            outcomes[key] = writes.execute("INSERT INTO t VALUES (?, ?)", (key, value))
        except sqlite3.IntegrityError as exc:
            outcomes[key] = exc

    with lock:
        first = threading.Thread(target=write, args=("first", "v"))
        first.start()
        _wait_queued(writes, 0)
        time.sleep(0.05)  # the first leads, holding its batch, blocked on the connection
        others = [
            threading.Thread(target=write, args=(key, value))
            for key, value in (("good", "v"), ("bad", None), ("also good", "v"))
        ]
        for thread in others:
            thread.start()
        _wait_queued(writes, 3)
    for thread in [first, *others]:
        thread.join()
    assert writes.batches == 2  # the three queued writes shared one transaction
    assert outcomes["good"] == 1 and outcomes["also good"] == 1
    assert isinstance(outcomes["bad"], sqlite3.IntegrityError)
    assert sorted(k for (k,) in conn.execute("SELECT k FROM t")) == ["also good", "first", "good"]


def test_a_failed_commit_fails_every_write_of_the_batch_and_stores_none(tmp_path: Path) -> None:
    conn, lock, _ = _table(tmp_path)
    failing = True

    def before_commit(size: int) -> None:
        if failing:
            raise sqlite3.OperationalError("disk I/O error")

    writes = GroupCommit(conn, lock, before_commit=before_commit)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        writes.execute("INSERT INTO t VALUES (?, ?)", ("lost", "v"))
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
    assert not conn.in_transaction
    failing = False
    assert writes.execute("INSERT INTO t VALUES (?, ?)", ("kept", "v")) == 1
    assert conn.execute("SELECT k FROM t").fetchall() == [("kept",)]


CRASH_MID_BATCH = r"""
import os, sys
from scones.asl import Resources
from scones.workflow.definitions import LOCAL_ACCOUNT_ID, LOCAL_REGION
from scones.workflow.executions import ExecutionRunner, ExecutionStore
definition = {"StartAt": "Echo", "States": {"Echo": {
    "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
    "Parameters": {"FunctionName": "echo", "Payload.$": "$"}, "End": True}}}
store = ExecutionStore(sys.argv[1])
commits = 0
def before_commit(size):
    global commits
    commits += 1
    if commits == int(sys.argv[2]):
        os._exit(17)  # dies inside a transaction: no rollback, no atexit
store._writes._before_commit = before_commit
def echo(event, context):
    os.write(1, f"ran run-{event['n']}\n".encode())  # its RUNNING row is committed by now
    return event
runner = ExecutionRunner(store, definition, Resources().register_lambda("echo", echo),
                         state_machine="crashy", max_concurrency=8)
def done(record):
    os.write(1, f"{record.status} {record.name}\n".encode())
runner.run_all([(f"run-{n}", {"n": n}) for n in range(200)], on_done=done)
"""


@pytest.mark.parametrize("crash_at", [1, 7, 40])
def test_a_crash_mid_batch_loses_no_execution_that_was_reported(
    tmp_path: Path, crash_at: int
) -> None:
    db_path = tmp_path / "scones.db"
    result = subprocess.run(
        [sys.executable, "-c", CRASH_MID_BATCH, str(db_path), str(crash_at)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 17, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    ran = {name for what, name in lines if what == "ran"}
    reported = {name for what, name in lines if what == "SUCCEEDED"}
    assert len(reported) < 200  # the crash came before the end
    with ExecutionStore(db_path) as db:
        stored = {record.name: record for record in db.list(limit=1000)}
    # No execution that ran is lost: each is stored, finished or still RUNNING.
    assert ran <= set(stored)
    # Every execution reported finished is stored finished, with its whole history.
    for name in reported:
        assert stored[name].status == "SUCCEEDED"
        assert [event["type"] for event in stored[name].history][-1] == "ExecutionSucceeded"
    # The rest is all or nothing: RUNNING with no history, or finished with all of it.
    for record in stored.values():
        assert (record.status, record.history == []) in (("RUNNING", True), ("SUCCEEDED", False))


ECHO = {
    "StartAt": "Echo",
    "States": {
        "Echo": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "echo", "Payload.$": "$"},
            "OutputPath": "$.Payload",
            "Next": "Fail",
        },
        "Fail": {"Type": "Fail", "Error": "Unsure", "Cause": "below the threshold"},
    },
}


def test_the_stored_history_is_the_runtimes_event_for_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asl_resources, "new_request_id", lambda: "request-1")
    resources = Resources().register_lambda("echo", lambda event, context: event)
    payload = {"s3_key": "test/a.png", "image_data": "iVBORw0KGgo" + "QUJD" * 1000}
    config = ExecutionConfig(
        account_id=LOCAL_ACCOUNT_ID, region=LOCAL_REGION, state_machine_name="m"
    )
    direct = execute(
        load(ECHO, resources), payload, resources, name="e1", clock=FakeClock(), config=config
    )
    with ExecutionStore(tmp_path / "scones.db") as db:
        runner = ExecutionRunner(db, ECHO, resources, state_machine="m", clock=FakeClock())
        record = runner.start(payload, name="e1")
        stored = db.get(record.execution_id).history
    # Every event, its id, links and details byte for byte; times as ISO text.
    assert (
        stored
        == record.history
        == [
            {**event, "timestamp": event["timestamp"].isoformat(timespec="microseconds")}
            for event in direct.history
        ]
    )


def test_parameters_may_be_computed_by_the_leader_and_their_errors_stay_theirs(
    tmp_path: Path,
) -> None:
    conn, _lock, writes = _table(tmp_path)
    assert writes.execute("INSERT INTO t VALUES (?, ?)", lambda: ("lazy", "v")) == 1

    def broken() -> tuple[str, str]:
        raise TypeError("cannot store that")

    with pytest.raises(TypeError, match="cannot store"):
        writes.execute("INSERT INTO t VALUES (?, ?)", broken)
    assert conn.execute("SELECT k FROM t").fetchall() == [("lazy",)]


def test_submitted_writes_wait_for_their_result_and_share_its_commit(tmp_path: Path) -> None:
    conn, _lock, writes = _table(tmp_path)
    submitted = [writes.submit("INSERT INTO t VALUES (?, ?)", (key, "v")) for key in "abc"]
    # Back at once, nothing committed: nobody waits for them yet.
    assert conn.execute("SELECT k FROM t").fetchall() == [] and writes.batches == 0
    assert submitted[1].result() == 1  # commits all three, in one transaction
    assert sorted(k for (k,) in conn.execute("SELECT k FROM t")) == ["a", "b", "c"]
    assert [write.result() for write in submitted] == [1, 1, 1]
    assert writes.batches == 1 and not writes._busy and not writes._queue


def test_a_full_batch_of_submitted_writes_is_committed_by_its_submitter(
    tmp_path: Path,
) -> None:
    conn, _lock, writes = _table(tmp_path)
    for number in range(SUBMIT_BATCH - 1):
        writes.submit("INSERT INTO t VALUES (?, ?)", (str(number), "v"))
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
    writes.submit("INSERT INTO t VALUES (?, ?)", ("last", "v"))
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (SUBMIT_BATCH,)
    assert writes.batches == 1


def test_flush_commits_what_was_queued(tmp_path: Path) -> None:
    conn, _lock, writes = _table(tmp_path)
    write = writes.submit("INSERT INTO t VALUES (?, ?)", ("k", "v"))
    writes.flush()
    assert conn.execute("SELECT k FROM t").fetchall() == [("k",)]
    assert write.result() == 1 and writes.writes == 1  # the flush itself is no write
    writes.flush()  # nothing queued: an empty transaction, harmless


def test_a_result_awaited_during_another_commit_is_handed_the_next_lead(
    tmp_path: Path,
) -> None:
    conn, lock, writes = _table(tmp_path)
    results: list[int] = []
    with lock:
        leader = threading.Thread(
            target=writes.execute, args=("INSERT INTO t VALUES (?, ?)", ("a", "v"))
        )
        leader.start()
        _wait_queued(writes, 0)
        time.sleep(0.05)  # the leader holds its batch, blocked on the connection
        later = writes.submit("INSERT INTO t VALUES (?, ?)", ("b", "v"))
        waiter = threading.Thread(target=lambda: results.append(later.result()))
        waiter.start()
        time.sleep(0.05)  # the waiter finds a commit under way and waits for it
        assert conn.execute("SELECT k FROM t").fetchall() == []
    leader.join(10)
    waiter.join(10)
    assert not waiter.is_alive(), "the waiter was never handed the lead"
    assert results == [1]
    assert sorted(k for (k,) in conn.execute("SELECT k FROM t")) == ["a", "b"]
    assert writes.batches == 2 and not writes._busy


def test_many_threads_submitting_and_waiting_lose_nothing(tmp_path: Path) -> None:
    conn, _lock, writes = _table(tmp_path)
    rng_seeds = range(16)
    failures: list[BaseException] = []

    def work(seed: int) -> None:
        import random

        rng = random.Random(seed)
        try:
            pending = []
            for item in range(60):
                key = f"{seed}-{item}"
                if rng.random() < 0.2:
                    assert writes.execute("INSERT INTO t VALUES (?, ?)", (key, "v")) == 1
                else:
                    pending.append(writes.submit("INSERT INTO t VALUES (?, ?)", (key, "v")))
                if pending and rng.random() < 0.3:
                    assert pending.pop(rng.randrange(len(pending))).result() == 1
            assert all(write.result() == 1 for write in pending)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in rng_seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    assert failures == []
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (16 * 60,)
    assert writes.writes == 16 * 60 and not writes._queue and not writes._busy


def test_writes_to_a_closed_connection_fail_with_an_error(tmp_path: Path) -> None:
    conn, _lock, writes = _table(tmp_path)
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError):
        writes.execute("INSERT INTO t VALUES (?, ?)", ("k", "v"))
    with pytest.raises(sqlite3.ProgrammingError):
        writes.submit("INSERT INTO t VALUES (?, ?)", ("k", "v")).result()
