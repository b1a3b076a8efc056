"""Labelled items out of the queue: as a staged layout folder, or as extra training images.

``neither`` items (not a vehicle photo) are never exported or trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scones import __version__
from scones.data.layout import (
    DATASET_JSON,
    LstEntry,
    class_names,
    format_lst,
    image_key,
    read_lst,
)
from scones.model.dataset import AddedImages
from scones.review.images import ItemImages
from scones.review.queue import ReviewError, ReviewQueue
from scones.store import ObjectStore


class ExportError(ReviewError):
    """The export cannot be written where asked, or there is nothing to export."""


@dataclass(frozen=True)
class ExportReport:
    out_dir: Path
    class_names: list[str]
    counts: dict[str, int]
    fingerprint: str

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir),
            "class_names": self.class_names,
            "counts": self.counts,
            "total": self.total,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class ReviewedImage:
    """One labelled item, ready to train on: its class index and RGB PNG bytes."""

    item_id: str
    label: int
    png: bytes
    image_sha256: str  # of the image as it was seen, the checksum the queue keys it by


def reviewed_images(queue: ReviewQueue, images: ItemImages) -> list[ReviewedImage]:
    """Every item labelled with a class (not ``neither``), oldest label first."""
    index = {name: i for i, name in enumerate(queue.classes)}
    return [
        ReviewedImage(item.item_id, index[item.label], images.png(item), item.image_sha256)
        for item in queue.labelled()
        if item.label in index
    ]


def reviewed_fingerprint(rows: list[ReviewedImage]) -> str:
    """One checksum over (image checksum, label) pairs in sorted order: what training used."""
    lines = sorted(f"{row.image_sha256}\t{row.label}\n" for row in rows)
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(
            f"--out {out_dir} is not an empty folder: export writes a new folder and never "
            "mixes its layout into other files"
        )


def export_layout(queue: ReviewQueue, images: ItemImages, out_dir: Path) -> ExportReport:
    """Write ``train/<key>.png``, ``train.lst`` and ``dataset.json`` into a new folder.

    All of it is written into a temporary folder beside ``out_dir`` and renamed into place,
    so a failure leaves no half-written export. ``scones stage --source DIR`` imports it.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    rows = reviewed_images(queue, images)
    if not rows:
        raise ExportError(
            "no labelled items to export (items labelled neither are never exported); label "
            "some with `scones review label` or on the review page"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    try:
        (staging / "train").mkdir()
        entries = []
        for number, row in enumerate(rows):
            name = f"{row.item_id}.png"
            (staging / "train" / name).write_bytes(row.png)
            entries.append(LstEntry(number, row.label, name))
        (staging / "train.lst").write_text(format_lst(entries))
        counts = Counter(queue.classes[row.label] for row in rows)
        fingerprint = reviewed_fingerprint(rows)
        info = {
            "class_names": list(queue.classes),
            "counts": {"train": {name: counts.get(name, 0) for name in queue.classes}},
            "source": {
                "kind": "review",
                "database": str(queue.db_path),
                "items": len(rows),
                "fingerprint": fingerprint,
            },
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "scones_version": __version__,
        }
        (staging / DATASET_JSON).write_text(json.dumps(info, indent=2))
        _check_out_dir(out_dir)  # again: something may have appeared meanwhile
        os.replace(staging, out_dir)  # an empty folder is replaced; a non-empty one refused
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportReport(
        out_dir, list(queue.classes), {n: counts.get(n, 0) for n in queue.classes}, fingerprint
    )


def staged_image_checksums(
    store: ObjectStore, splits: tuple[str, ...], prefix: str = ""
) -> dict[str, str]:
    """sha256 -> split for every image the staged ``splits`` name (to keep them held out)."""
    found: dict[str, str] = {}
    for split in splits:
        for entry in read_lst(store, split, prefix):
            data = store.get(image_key(split, entry.path, prefix))
            found.setdefault(hashlib.sha256(data).hexdigest(), split)
    return found


def reviewed_for_training(
    queue: ReviewQueue, images: ItemImages, store: ObjectStore, prefix: str = ""
) -> AddedImages:
    """Labelled items as extra training images for the staged layout in ``store``.

    An image the layout already holds is left out: in validation or test it must stay held
    out (so models stay comparable on it), in train it is there already. The counts left out
    are recorded with the rest in ``model.json``.
    """
    names = class_names(store, prefix)
    if names != list(queue.classes):
        raise ExportError(
            f"the staged layout in {store.uri} has classes {names}, the review queue "
            f"{list(queue.classes)}: labels would change meaning"
        )
    rows = reviewed_images(queue, images)
    staged = staged_image_checksums(store, ("test", "validation", "train"), prefix)
    kept = [row for row in rows if row.image_sha256 not in staged]
    left_out = Counter(
        f"already in {staged[row.image_sha256]}" for row in rows if row.image_sha256 in staged
    )
    return AddedImages(
        images=[row.png for row in kept],
        labels=[row.label for row in kept],
        sha256=[row.image_sha256 for row in kept],
        fingerprint=reviewed_fingerprint(kept),
        source=f"review queue in {queue.db_path}",
        notes={"labelled": len(rows), "left_out": dict(left_out)},
    )
