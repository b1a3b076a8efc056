"""The review queue's rules: one item per image, order, filters, labels with history, undo."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from scones.review.queue import (
    AlreadyLabelledError,
    InvalidReviewInputError,
    ItemCandidate,
    ReviewItemNotFoundError,
    ReviewQueue,
)
from scones.workflow.executions import ExecutionStore

CLASSES = ("bicycle", "motorcycle")
T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def candidate(seed: str, confidence: float, *, version: str = "1", hours: int = 0):
    return ItemCandidate(
        image_sha256=hashlib.sha256(seed.encode()).hexdigest(),
        store_uri="/tmp/store",
        image_key=f"incoming/{seed}.png",
        capture_line=None,
        predicted_class="bicycle",
        confidence=confidence,
        margin=2 * confidence - 1,
        threshold=0.93,
        model_version=version,
        observed_at=T0 + timedelta(hours=hours),
    )


@pytest.fixture
def queue(tmp_path):
    with ReviewQueue(tmp_path / "scones.db", classes=CLASSES) as q:
        yield q


def test_one_item_per_image_and_per_source(queue):
    first, created = queue.add(candidate("a", 0.6), source="execution", ref="exec-1")
    assert created and first.status == "pending"
    again, created = queue.add(candidate("a", 0.6), source="execution", ref="exec-1")
    assert not created and again == first
    same_image, created = queue.add(candidate("a", 0.7), source="capture", ref="event-9")
    assert not created and same_image.item_id == first.item_id
    assert queue.sources(first.item_id) == [("execution", "exec-1"), ("capture", "event-9")]
    assert queue.counts()["total"] == 1


def test_closest_to_the_boundary_first_and_filters(queue):
    for seed, confidence, version, hours in [
        ("far", 0.9, "1", 0),
        ("near", 0.51, "1", 1),
        ("middle", 0.7, "2", 2),
    ]:
        queue.add(candidate(seed, confidence, version=version, hours=hours), source="x", ref=seed)
    keys = {item.image_key.split("/")[1][:-4]: item.item_id for item in queue.items()}
    assert [i.image_key for i in queue.items()] == [
        "incoming/near.png",
        "incoming/middle.png",
        "incoming/far.png",
    ]
    queue.label(keys["near"], "bicycle", by="ana")
    # Labelled items go to the back; pending ones stay in boundary order.
    assert [i.item_id for i in queue.items()] == [keys["middle"], keys["far"], keys["near"]]
    assert [i.item_id for i in queue.items(status="pending")] == [keys["middle"], keys["far"]]
    assert [i.item_id for i in queue.items(status="labelled")] == [keys["near"]]
    assert [i.item_id for i in queue.items(model_version="2")] == [keys["middle"]]
    since = queue.items(since=T0 + timedelta(minutes=30))
    assert {i.item_id for i in since} == {keys["near"], keys["middle"]}
    until = queue.items(until=T0 + timedelta(minutes=30))
    assert [i.item_id for i in until] == [keys["far"]]
    assert queue.counts() == {
        "total": 3,
        "pending": 2,
        "labelled": 1,
        "by_label": {"bicycle": 1},
    }


def test_labels_record_who_when_and_a_note_and_relabel_keeps_history(queue):
    item, _ = queue.add(candidate("a", 0.6), source="x", ref="a")
    at = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    labelled = queue.label(item.item_id, "motorcycle", by="ana", note="dark photo", at=at)
    assert (labelled.label, labelled.labelled_by, labelled.labelled_at, labelled.note) == (
        "motorcycle",
        "ana",
        at,
        "dark photo",
    )
    with pytest.raises(AlreadyLabelledError, match=r"already labelled 'motorcycle'.*--relabel"):
        queue.label(item.item_id, "bicycle", by="ben")
    assert queue.get(item.item_id).label == "motorcycle"  # nothing changed by the refusal
    relabelled = queue.label(item.item_id, "bicycle", by="ben", relabel=True)
    assert (relabelled.label, relabelled.labelled_by) == ("bicycle", "ben")
    history = queue.history(item.item_id)
    assert [(e.label, e.labelled_by) for e in history] == [
        ("motorcycle", "ana"),
        ("bicycle", "ben"),
    ]


def test_undo_returns_to_the_previous_label_then_to_pending(queue):
    item, _ = queue.add(candidate("a", 0.6), source="x", ref="a")
    queue.label(item.item_id, "motorcycle", by="ana")
    queue.label(item.item_id, "neither", by="ben", relabel=True, note="a cat")
    back = queue.undo(item.item_id, by="ben")
    assert (back.label, back.labelled_by, back.note) == ("motorcycle", "ana", None)
    pending = queue.undo(item.item_id, by="ana")
    assert pending.status == "pending" and pending.label is None
    with pytest.raises(InvalidReviewInputError, match="no label to undo"):
        queue.undo(item.item_id, by="ana")
    history = queue.history(item.item_id)
    assert [(e.label, e.undone_by) for e in history] == [("motorcycle", "ana"), ("neither", "ben")]
    # A fresh label after an undo needs no --relabel.
    assert queue.label(item.item_id, "bicycle", by="ana").label == "bicycle"


def test_neither_is_kept_apart_from_the_trainable_labels(queue):
    a, _ = queue.add(candidate("a", 0.6), source="x", ref="a")
    b, _ = queue.add(candidate("b", 0.6), source="x", ref="b")
    queue.label(a.item_id, "neither", by="ana")
    queue.label(b.item_id, "bicycle", by="ana")
    assert [i.item_id for i in queue.labelled()] == [b.item_id]
    assert {i.item_id for i in queue.labelled(include_neither=True)} == {a.item_id, b.item_id}


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda q, k: q.label("0" * 12, "bicycle", by="a"), ReviewItemNotFoundError, "no review"),
        (lambda q, k: q.label("../etc/pass", "bicycle", by="a"), InvalidReviewInputError, "key"),
        (
            lambda q, k: q.label(k, "truck", by="a"),
            InvalidReviewInputError,
            "invalid label 'truck'",
        ),
        (lambda q, k: q.label(k, "bicycle", by=" "), InvalidReviewInputError, "reviewer"),
        (
            lambda q, k: q.label(k, "bicycle", by="a", note="x" * 1001),
            InvalidReviewInputError,
            "note",
        ),
        (lambda q, k: q.undo("0" * 12, by="a"), ReviewItemNotFoundError, "no review item"),
        (lambda q, k: q.items(status="done"), InvalidReviewInputError, "status 'done'"),
        (lambda q, k: q.items(limit=0), InvalidReviewInputError, "limit"),
        (lambda q, k: q.items(since=datetime(2026, 1, 1)), InvalidReviewInputError, "time zone"),
    ],
)
def test_bad_input_is_refused_with_a_message_and_changes_nothing(queue, call, error, message):
    item, _ = queue.add(candidate("a", 0.6), source="x", ref="a")
    with pytest.raises(error, match=message):
        call(queue, item.item_id)
    assert queue.get(item.item_id).status == "pending"
    assert queue.history(item.item_id) == []


def test_the_review_tables_share_the_executions_database_without_disturbing_it(tmp_path):
    db = tmp_path / "scones.db"
    with ReviewQueue(db, classes=CLASSES) as queue:
        queue.add(candidate("a", 0.6), source="x", ref="a")
    with ExecutionStore(db) as executions:
        assert executions.count_by_status() == {}
    with ReviewQueue(db, classes=CLASSES) as queue:
        assert queue.counts()["total"] == 1
    tables = {
        row[0]
        for row in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {"executions", "review_items", "review_sources", "review_labels"} <= tables
