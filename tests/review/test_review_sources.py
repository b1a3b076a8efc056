"""Review items from real traffic: the workflow over the real endpoint (with data capture)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from review_helpers import BUCKET, capturing_endpoint, run_workflow, traffic_images, wait_captured

from scones.functions.classify_image import close_idle_connections
from scones.review.queue import ReviewQueue
from scones.review.sources import execution_hook, sync_capture, sync_executions
from scones.store import open_store
from scones.workflow.executions import ExecutionStore
from scones.workflow.runs import bucket_env_name, run_single_executions

CLASSES = ("bicycle", "motorcycle")


@pytest.fixture(scope="module")
def traffic(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Every traffic image through the workflow once; (store, db, capture, records, images)."""
    home = tmp_path_factory.mktemp("review-traffic")
    images = traffic_images()
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        capturing_endpoint(tiny_model_dir, home / "serve") as (url, capture),
    ):
        records = run_workflow(home / "store", home / "scones.db", url, images, monkeypatch)
        wait_captured(capture, len(images))
    return home / "store", home / "scones.db", capture, records, images


@pytest.fixture
def traffic_db(traffic, tmp_path: Path) -> Path:
    """A copy of the traffic's executions database, for one test to add its review tables."""
    copy = tmp_path / "scones.db"
    shutil.copyfile(traffic[1], copy)
    return copy


def unsure_keys(records) -> set[str]:
    return {
        key
        for key, record in records.items()
        if record.status == "FAILED" and record.error == "ThresholdConfidenceNotMet"
    }


def sync_all(queue: ReviewQueue, store_root: Path, db_path: Path, capture: Path):
    with ExecutionStore(db_path) as executions:
        report = sync_executions(queue, executions, open_store(str(store_root)), model_version="1")
    report, counters = sync_capture(
        queue,
        open_store(str(capture)),
        endpoint_name=None,
        threshold=0.93,
        model_version="1",
        report=report,
    )
    assert counters.as_dict()["malformed_lines"] == 0
    return report


def test_threshold_failures_become_one_item_each_even_after_a_restart(traffic, traffic_db):
    store_root, _, capture, records, images = traffic
    db_path = traffic_db
    unsure = unsure_keys(records)
    assert "incoming/noise.png" in unsure and "incoming/red.png" not in unsure
    assert len(unsure) >= 3  # real photos are unsure for the colour model
    with ReviewQueue(db_path, classes=CLASSES) as queue:
        report = sync_all(queue, store_root, db_path, capture)
        # The workflow's request was captured too: the same image, so the same item.
        assert report.added == len(unsure)
        assert report.merged == len(unsure)
        items = queue.items(limit=1000)
    assert {item.image_key for item in items if item.capture_line is None} <= unsure
    assert {item.image_sha256 for item in items} == {
        hashlib.sha256(images[key.removeprefix("incoming/")]).hexdigest() for key in unsure
    }
    with ReviewQueue(db_path, classes=CLASSES) as queue:  # a new process: the same items
        again = sync_all(queue, store_root, db_path, capture)
        assert (again.added, again.merged) == (0, 0)
        assert again.known == 2 * len(unsure)
        assert [item.item_id for item in queue.items(limit=1000)] == [i.item_id for i in items]


def test_items_carry_class_confidence_version_and_come_closest_to_the_boundary_first(
    traffic, traffic_db
):
    store_root, _, capture, _, _ = traffic
    db_path = traffic_db
    with ReviewQueue(db_path, classes=CLASSES) as queue:
        sync_all(queue, store_root, db_path, capture)
        items = queue.items()
        assert [item.margin for item in items] == sorted(item.margin for item in items)
        for item in items:
            assert item.predicted_class in CLASSES
            assert 0.5 <= item.confidence < 0.93
            assert item.margin == pytest.approx(2 * item.confidence - 1, abs=1e-6)
            assert item.model_version == "1"
            assert item.threshold == pytest.approx(0.93)
            assert item.status == "pending"
        assert queue.items(model_version="2") == []


def test_the_workflow_hook_adds_items_as_executions_finish(
    traffic, tiny_model_dir, tmp_path, monkeypatch
):
    store_root, _, _, _, _ = traffic
    # The fixture's endpoint is gone; run against a fresh one, with the hook as on_done.
    with capturing_endpoint(tiny_model_dir, tmp_path / "serve") as (url, _):
        monkeypatch.setenv("SCONES_ENDPOINT_URL", url)
        monkeypatch.setenv("THRESHOLD", "0.93")
        monkeypatch.setenv(bucket_env_name(BUCKET), str(store_root))
        with (
            ExecutionStore(tmp_path / "scones.db") as db,
            ReviewQueue(tmp_path / "scones.db", classes=CLASSES) as queue,
        ):
            hook = execution_hook(queue, open_store(str(store_root)), model_version="1")
            try:
                run_single_executions(
                    db,
                    BUCKET,
                    ["incoming/noise.png", "incoming/red.png"],
                    concurrency=2,
                    on_done=hook,
                )
            finally:
                close_idle_connections()
            [item] = queue.items()
            assert item.image_key == "incoming/noise.png"


def test_the_watcher_adds_items_as_executions_finish(tiny_model_dir, tmp_path, monkeypatch):
    import threading
    import time

    from conftest import noise_png, solid_png
    from scones.review.actions import ReviewConfig, review_hook
    from scones.workflow.watch import watch_store

    store = open_store(str(tmp_path / "store"))
    db = tmp_path / "scones.db"
    config = ReviewConfig(db, CLASSES)
    with (
        capturing_endpoint(tiny_model_dir, tmp_path / "serve") as (url, _),
        review_hook(config, store.uri, url) as hook,
    ):
        # watch_store configures the functions' environment: restore it afterwards.
        monkeypatch.setenv("SCONES_ENDPOINT_URL", url)
        monkeypatch.setenv("THRESHOLD", "0.93")
        monkeypatch.setenv(bucket_env_name("scones"), store.uri)
        watcher = watch_store(
            store.uri, db, endpoint_url=url, threshold=0.93, poll_seconds=0.2, on_finished=hook
        )
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        try:
            store.put("incoming/red.png", solid_png((200, 30, 30)))
            store.put("incoming/noise.png", noise_png(9))
            deadline = time.monotonic() + 30
            while sum(watcher.seen.counts().values()) < 2 or not watcher.wait_idle():
                assert time.monotonic() < deadline, watcher.seen.counts()
                time.sleep(0.1)
        finally:
            watcher.stop()
            thread.join(timeout=30)
            watcher.seen.close()
            close_idle_connections()
    with config.open() as queue:
        [item] = queue.items()
    assert item.image_key == "incoming/noise.png"
    assert item.model_version == "1"  # what the endpoint's /info says it serves


def test_unsure_results_of_a_map_execution_become_items_once(traffic, tiny_model_dir, tmp_path):
    from scones.review.sources import add_execution
    from scones.workflow.runs import run_map_execution

    store_root, _, _, records, _ = traffic
    keys = ["incoming/noise.png", "incoming/red.png", *sorted(unsure_keys(records))[:2]]
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        capturing_endpoint(tiny_model_dir, tmp_path / "serve") as (url, _),
    ):
        monkeypatch.setenv("SCONES_ENDPOINT_URL", url)
        monkeypatch.setenv("THRESHOLD", "0.93")
        monkeypatch.setenv(bucket_env_name(BUCKET), str(store_root))
        with ExecutionStore(tmp_path / "scones.db") as db:
            try:
                record = run_map_execution(db, BUCKET, keys)
            finally:
                close_idle_connections()
    assert record.status == "SUCCEEDED"
    with ReviewQueue(tmp_path / "scones.db", classes=CLASSES) as queue:
        report = add_execution(queue, record, open_store(str(store_root)), model_version="1")
        assert report.added == len(set(keys) - {"incoming/red.png"})
        assert add_execution(queue, record, open_store(str(store_root))).added == 0
        assert {item.image_key for item in queue.items()} == set(keys) - {"incoming/red.png"}
