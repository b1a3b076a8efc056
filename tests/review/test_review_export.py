"""Export of labelled items as a staged layout that `scones stage --source DIR` imports."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from datetime import UTC, datetime

import pytest
from PIL import Image
from review_helpers import SCONES, shared_images

from scones.data.layout import parse_lst
from scones.review.export import ExportError, export_layout, reviewed_fingerprint, reviewed_images
from scones.review.images import ItemImageError, ItemImages
from scones.review.queue import ItemCandidate, ReviewQueue
from scones.store import open_store

CLASSES = ("bicycle", "motorcycle")


@pytest.fixture
def labelled(tmp_path):
    """Fourteen real photos in a store as review items; twelve labelled (one neither)."""
    store = open_store(str(tmp_path / "store"))
    queue = ReviewQueue(tmp_path / "scones.db", classes=CLASSES)
    items = []
    for number, (name, data) in enumerate(shared_images(14).items()):
        store.put(f"incoming/{name}", data)
        item, _ = queue.add(
            ItemCandidate(
                image_sha256=hashlib.sha256(data).hexdigest(),
                store_uri=store.uri,
                image_key=f"incoming/{name}",
                capture_line=None,
                predicted_class="bicycle",
                confidence=0.6,
                margin=0.2,
                threshold=0.93,
                model_version="1",
                observed_at=datetime(2026, 11, 26, tzinfo=UTC),
            ),
            source="execution",
            ref=f"exec-{number}",
        )
        items.append(item)
    labels = ["bicycle", "motorcycle", "bicycle", "neither", "motorcycle", "bicycle"]
    labels += ["motorcycle", "motorcycle", "bicycle", "motorcycle", "motorcycle", "bicycle"]
    for item, label in zip(items, labels, strict=False):
        queue.label(item.item_id, label, by="ana")
    yield queue, store, items
    queue.close()


def test_export_then_stage_round_trips_the_labels(labelled, tmp_path):
    queue, store, items = labelled
    out = tmp_path / "reviewed"
    report = export_layout(queue, ItemImages(), out)
    assert report.counts == {"bicycle": 5, "motorcycle": 6}
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "train", "train.lst"]
    entries = parse_lst((out / "train.lst").read_text(), source="train.lst")
    by_key = {item.item_id: item for item in items}
    exported = {e.path[:-4]: CLASSES[e.label] for e in entries}
    assert exported == {
        key: queue.get(key).label for key in by_key if queue.get(key).label not in (None, "neither")
    }
    for entry in entries:  # the very pixels of the original image
        original = store.get(by_key[entry.path[:-4]].image_key)
        with Image.open(io.BytesIO(original)) as a, Image.open(out / "train" / entry.path) as b:
            assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()
    assert json.loads((out / "dataset.json").read_text())["class_names"] == list(CLASSES)

    staged = tmp_path / "staged"
    env = {**os.environ, "SCONES_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [
            SCONES,
            "stage",
            "--source",
            str(out),
            "--store",
            str(staged),
            "--val-fraction",
            "0.2",
            "--test-fraction",
            "0.2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = json.loads((staged / "dataset.json").read_text())["counts"]
    assert {name: sum(counts[split][name] for split in counts) for name in CLASSES} == report.counts


def test_export_refuses_a_non_empty_folder_and_writes_nothing(labelled, tmp_path):
    queue, _, _ = labelled
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"--out .*busy is not an empty folder"):
        export_layout(queue, ItemImages(), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir() if ".export-" in p.name] == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_layout(queue, ItemImages(), empty).total == 11  # an empty folder is fine


def test_export_with_nothing_labelled_is_refused(tmp_path):
    with (
        ReviewQueue(tmp_path / "scones.db", classes=CLASSES) as queue,
        pytest.raises(ExportError, match="no labelled items"),
    ):
        export_layout(queue, ItemImages(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_changed_or_missing_image_fails_the_export_cleanly(labelled, tmp_path):
    queue, store, items = labelled
    store.put(items[0].image_key, b"\x89PNG\r\n\x1a\nnot the same image")
    with pytest.raises(ItemImageError, match=f"item {items[0].item_id} .* changed"):
        export_layout(queue, ItemImages(), tmp_path / "out")
    store.delete(items[0].image_key)
    with pytest.raises(ItemImageError, match="is gone"):
        export_layout(queue, ItemImages(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if ".export-" in p.name] == []


def test_the_reviewed_fingerprint_depends_on_images_and_labels_not_order(labelled):
    queue, _, items = labelled
    rows = reviewed_images(queue, ItemImages())
    assert len(rows) == 11
    assert reviewed_fingerprint(rows) == reviewed_fingerprint(list(reversed(rows)))
    queue.label(items[0].item_id, "motorcycle", by="ana", relabel=True)
    assert reviewed_fingerprint(reviewed_images(queue, ItemImages())) != reviewed_fingerprint(rows)
