"""`scones watch`: each new object runs exactly once, across restarts and bad images."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wf_helpers import running_endpoint

from conftest import solid_png
from scones.asl.clock import FakeClock
from scones.functions import classify_image
from scones.store import open_store
from scones.workflow.executions import ExecutionStore
from scones.workflow.watch import SeenObjects, Watcher, execution_name_for, watch_store

RED = solid_png((200, 30, 30))
BLUE = solid_png((30, 30, 200))


@pytest.fixture(scope="module")
def endpoint(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_endpoint(tiny_model_dir, tmp_path_factory.mktemp("watch-serve")) as url:
        yield url
    classify_image.close_idle_connections()


class RunningWatcher:
    """A watcher on a thread, as `scones watch` runs it, stoppable like SIGTERM does."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.thread = threading.Thread(target=watcher.run, daemon=True)

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self.watcher

    def __exit__(self, *exc: object) -> None:
        self.watcher.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "watcher did not stop"
        self.watcher.seen.close()


def _watcher(store_root: Path, db: Path, endpoint: str) -> RunningWatcher:
    watcher = watch_store(
        str(store_root),
        db,
        prefix="incoming/",
        endpoint_url=endpoint,
        threshold=0.93,
        poll_seconds=0.2,
    )
    return RunningWatcher(watcher)


def _wait_for(db: Path, count: int, timeout: float = 20.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with ExecutionStore(db) as executions:
            done = [r for r in executions.list(limit=1000) if r.status != "RUNNING"]
        if len(done) >= count:
            return done
        time.sleep(0.05)
    raise AssertionError(f"expected {count} finished executions, got {len(done)}")


def test_each_object_runs_exactly_once_across_restarts(endpoint: str, tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    store = open_store(str(store_root))
    db = tmp_path / "scones.db"
    store.put("incoming/before.png", RED)  # arrived before the watcher ever ran

    with _watcher(store_root, db, endpoint) as watcher:
        store.put("incoming/while-running.png", BLUE)
        _wait_for(db, 2)
        assert watcher.scan_once() == []  # a rescan finds nothing new
        assert watcher.wait_idle()

    store.put("incoming/while-stopped.png", RED)
    with _watcher(store_root, db, endpoint) as watcher:
        _wait_for(db, 3)
        assert watcher.wait_idle()
        for _ in range(3):  # more scans find nothing new
            assert watcher.scan_once() == []
        assert watcher.wait_idle()

    with ExecutionStore(db) as executions:
        records = executions.list(limit=1000)
    keys = sorted(record.input["s3_key"] for record in records)
    assert keys == [
        "incoming/before.png",
        "incoming/while-running.png",
        "incoming/while-stopped.png",
    ]
    assert {record.status for record in records} == {"SUCCEEDED"}
    for record in records:
        etag = store.head(record.input["s3_key"]).etag
        assert record.name == execution_name_for(record.input["s3_key"], etag)


def test_new_content_under_the_same_key_runs_again(endpoint: str, tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    store = open_store(str(store_root))
    db = tmp_path / "scones.db"
    store.put("incoming/photo.png", RED)
    with _watcher(store_root, db, endpoint):
        _wait_for(db, 1)
        store.put("incoming/photo.png", BLUE)
        records = _wait_for(db, 2)
    assert len({record.name for record in records}) == 2


def test_corrupt_image_fails_clearly_and_the_watcher_goes_on(endpoint: str, tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    store = open_store(str(store_root))
    db = tmp_path / "scones.db"
    with _watcher(store_root, db, endpoint):
        store.put("incoming/corrupt.png", b"\x89PNG\r\n\x1a\n this is not really a png")
        _wait_for(db, 1)
        store.put("incoming/good.png", RED)
        records = _wait_for(db, 2)
    by_key = {record.input["s3_key"]: record for record in records}
    assert by_key["incoming/good.png"].status == "SUCCEEDED"
    corrupt = by_key["incoming/corrupt.png"]
    assert corrupt.status == "FAILED"
    assert "image" in (corrupt.cause or "").lower()


def test_execution_names_are_valid_and_distinct() -> None:
    name = execution_name_for("incoming/My Photo (1).png", "abc")
    assert len(name) <= 80
    assert all(c.isalnum() or c in "-_" for c in name)
    assert name != execution_name_for("incoming/My Photo (1).png", "abd")


class FailingStarts:
    """run_execution whose first ``failures`` calls raise as a busy SQLite does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, name: str, event: dict) -> str:
        with self._lock:
            self.calls.append(event["s3_key"])
            if len(self.calls) <= self.failures:
                raise sqlite3.OperationalError("database is locked")
        return "SUCCEEDED"


def _scanning_watcher(store_root: Path, db: Path, run: FailingStarts, clock: FakeClock) -> Watcher:
    return Watcher(
        open_store(str(store_root)),
        SeenObjects(db),
        run,
        settle_seconds=0,
        notifications=False,
        retry_base_seconds=1.0,
        retry_max_seconds=8.0,
        clock=clock.now,
    )


def _scan_until_idle(watcher: Watcher) -> None:
    watcher.scan_once()
    assert watcher.wait_idle()


def test_a_start_that_raises_is_retried_with_backoff_not_dropped(tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    open_store(str(store_root)).put("incoming/photo.png", RED)
    db = tmp_path / "watch.db"
    clock = FakeClock()
    run = FailingStarts(failures=2)
    watcher = _scanning_watcher(store_root, db, run, clock)
    try:
        _scan_until_idle(watcher)
        assert run.calls == ["incoming/photo.png"]
        assert watcher.seen.counts() == {"retrying": 1}
        (due,) = watcher.pending_retries().values()
        assert due == clock.now() + 1.0

        for _ in range(5):  # scans before the backoff is over do not try again
            _scan_until_idle(watcher)
        assert len(run.calls) == 1

        clock.advance(1.0)
        _scan_until_idle(watcher)
        assert len(run.calls) == 2  # failed again: the next wait doubles
        (due,) = watcher.pending_retries().values()
        assert due == clock.now() + 2.0
        clock.advance(1.9)
        _scan_until_idle(watcher)
        assert len(run.calls) == 2
        clock.advance(0.1)
        _scan_until_idle(watcher)
        assert len(run.calls) == 3
        assert watcher.pending_retries() == {}
        assert watcher.seen.counts() == {"SUCCEEDED": 1}
    finally:
        watcher.close()


def test_an_object_that_always_fails_is_retried_at_a_bounded_rate(tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    open_store(str(store_root)).put("incoming/poison.png", RED)
    clock = FakeClock()
    run = FailingStarts(failures=10**6)
    watcher = _scanning_watcher(store_root, tmp_path / "watch.db", run, clock)
    try:
        for _ in range(200):  # 200 scans, one simulated second apart
            _scan_until_idle(watcher)
            clock.advance(1.0)
        # Attempts at t = 0, 1, 3, 7, 15, then every 8 s (the cap) until t = 199.
        assert len(run.calls) == 5 + (199 - 15) // 8
        assert watcher.seen.counts() == {"retrying": 1}
    finally:
        watcher.close()


def test_an_object_that_failed_to_start_is_retried_after_a_restart(tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    open_store(str(store_root)).put("incoming/photo.png", RED)
    db = tmp_path / "watch.db"
    clock = FakeClock()
    failing = FailingStarts(failures=1)
    watcher = _scanning_watcher(store_root, db, failing, clock)
    _scan_until_idle(watcher)
    watcher.close()  # stopped before the retry was due
    assert failing.calls == ["incoming/photo.png"]

    working = FailingStarts(failures=0)
    restarted = _scanning_watcher(store_root, db, working, clock)
    try:
        assert restarted.resume_unfinished() == 1
        assert restarted.wait_idle()
        _scan_until_idle(restarted)
        assert working.calls == ["incoming/photo.png"]
        assert restarted.seen.counts() == {"SUCCEEDED": 1}
    finally:
        restarted.close()


def test_watch_store_retries_when_the_execution_store_is_busy(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real executions: the first start fails before its row is written; none is lost."""
    store_root = tmp_path / "store"
    store = open_store(str(store_root))
    db = tmp_path / "scones.db"
    real_start = ExecutionStore.start
    attempts: list[str] = []

    def busy_once(self: ExecutionStore, state_machine: str, name: str, input: object) -> object:
        attempts.append(name)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real_start(self, state_machine, name, input)

    monkeypatch.setattr(ExecutionStore, "start", busy_once)
    store.put("incoming/photo.png", RED)
    settled = time.time() - 60  # written a minute ago: the first scan takes it
    os.utime(store_root / "incoming/photo.png", (settled, settled))
    clock = FakeClock()
    watcher = watch_store(
        str(store_root),
        db,
        prefix="incoming/",
        endpoint_url=endpoint,
        threshold=0.93,
        clock=clock.now,
    )
    try:
        _scan_until_idle(watcher)
        with ExecutionStore(db) as executions:
            assert executions.list(limit=10) == []  # nothing recorded the failed start
        assert watcher.seen.counts() == {"retrying": 1}
        clock.advance(watcher.retry_delay(1))
        _scan_until_idle(watcher)
    finally:
        watcher.close()
    with ExecutionStore(db) as executions:
        (record,) = executions.list(limit=10)
    assert record.input["s3_key"] == "incoming/photo.png"
    assert record.status == "SUCCEEDED"
    assert len(attempts) == 2 and attempts[0] == attempts[1] == record.name
