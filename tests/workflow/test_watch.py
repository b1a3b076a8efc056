"""`scones watch`: each new object runs exactly once, across restarts and bad images."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wf_helpers import running_endpoint

from conftest import solid_png
from scones.functions import classify_image
from scones.store import open_store
from scones.workflow.executions import ExecutionStore
from scones.workflow.watch import Watcher, execution_name_for, watch_store

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
        watcher.scan_once()  # a rescan finds nothing new
        assert watcher.wait_idle()

    store.put("incoming/while-stopped.png", RED)
    with _watcher(store_root, db, endpoint) as watcher:
        _wait_for(db, 3)
        assert watcher.wait_idle()
        time.sleep(0.5)  # several more scans

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
