"""SageMaker's image-classification layout in a store, shared by every stage that reads it.

::

    train/<filename>.png     RGB PNGs
    test/<filename>.png
    train.lst  validation.lst  test.lst   index<TAB>label<TAB>relative path, no header
    dataset.json             class names in label order, counts, source, checksums

A ``.lst`` path is relative to the split's image folder, as SageMaker reads it: a row of
``validation.lst`` names an image under ``train/`` (validation is carved out of train).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scones.errors import SconesError
from scones.store import ObjectStore, join_key

SPLITS = ("train", "validation", "test")
# Where each split's images live: validation images stay in train/.
IMAGE_FOLDER = {"train": "train", "validation": "train", "test": "test"}
DATASET_JSON = "dataset.json"


class LayoutError(SconesError):
    """A staged layout that is incomplete or malformed; the message names file and line."""


@dataclass(frozen=True)
class LstEntry:
    index: int
    label: int
    path: str  # relative to the split's image folder

    def line(self) -> str:
        return f"{self.index}\t{self.label}\t{self.path}"


def lst_key(split: str, prefix: str = "") -> str:
    return join_key(prefix, f"{split}.lst")


def image_key(split: str, entry_path: str, prefix: str = "") -> str:
    return join_key(prefix, IMAGE_FOLDER.get(split, split), entry_path)


def parse_lst(text: str, *, source: str, num_classes: int | None = None) -> list[LstEntry]:
    """Parse ``.lst`` text; every malformed line is an error naming ``source`` and the line."""
    entries: list[LstEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != 3:
            raise LayoutError(
                f"{source}:{number}: expected 3 tab-separated fields "
                f"(index, label, path), got {len(fields)}: {raw!r}"
            )
        index_text, label_text, path = fields
        try:
            index = int(index_text)
            label_value = float(label_text)
        except ValueError:
            raise LayoutError(
                f"{source}:{number}: index and label must be numbers, got {raw!r}"
            ) from None
        if not label_value.is_integer() or label_value < 0:
            raise LayoutError(f"{source}:{number}: label {label_text!r} is not a class index")
        label = int(label_value)
        if num_classes is not None and label >= num_classes:
            raise LayoutError(
                f"{source}:{number}: label {label} is outside the {num_classes} classes "
                f"(0..{num_classes - 1})"
            )
        path = path.strip()
        if not path or path.startswith("/") or ".." in path.split("/") or "\\" in path:
            raise LayoutError(f"{source}:{number}: bad image path {path!r}")
        entries.append(LstEntry(index, label, path))
    return entries


def format_lst(entries: list[LstEntry]) -> str:
    return "".join(entry.line() + "\n" for entry in entries)


def read_lst(
    store: ObjectStore, split: str, prefix: str = "", *, num_classes: int | None = None
) -> list[LstEntry]:
    key = lst_key(split, prefix)
    if not store.exists(key):
        raise LayoutError(f"no {split}.lst in {store.uri_for(key)}")
    return parse_lst(store.get_text(key), source=store.uri_for(key), num_classes=num_classes)


def read_dataset_info(store: ObjectStore, prefix: str = "") -> dict[str, Any]:
    key = join_key(prefix, DATASET_JSON)
    if not store.exists(key):
        raise LayoutError(f"no {DATASET_JSON} in {store.uri_for(key)}: stage the data first")
    return json.loads(store.get_text(key))


def class_names(store: ObjectStore, prefix: str = "") -> list[str]:
    return list(read_dataset_info(store, prefix)["class_names"])
