"""Helpers for the staging tests: store snapshots, failure injection, staged-folder fixtures."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from scones.data.layout import LstEntry, format_lst, parse_lst
from scones.store import ObjectStore, open_store

CLASSES = ["bicycle", "motorcycle"]


def snapshot(store: ObjectStore) -> dict[str, bytes]:
    """Every object in the store with its bytes: equal snapshots mean an untouched store."""
    return {key: store.get(key) for key in store.keys("")}


def make_store(kind: str, tmp_path: Path, bucket: str | None = None) -> ObjectStore:
    if kind == "local":
        return open_store(str(tmp_path / "store"))
    assert bucket is not None
    return open_store(f"s3://{bucket}/staged")


class PutFailsAfter:
    """Wrap ``store.put`` (and ``copy``) so the Nth call raises: a failure injected mid-way."""

    def __init__(self, store: ObjectStore, method: str, calls: int) -> None:
        self.store = store
        self.method = method
        self.calls = calls
        self.seen = 0
        self.original = getattr(store, method)

    def __call__(self, *args: object, **kwargs: object) -> None:
        self.seen += 1
        if self.seen == self.calls:
            raise OSError(f"injected failure on {self.method} call {self.seen}")
        self.original(*args, **kwargs)


def read_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def small_staged_folder(shared: Path, dest: Path, per_class: int, *, rgb: bool = False) -> Path:
    """A staged folder with ``per_class`` of each class from the shared data (RGBA PNGs)."""
    entries = parse_lst((shared / "train.lst").read_text(), source="train.lst")
    chosen: list[LstEntry] = []
    for label in range(len(CLASSES)):
        chosen += [e for e in entries if e.label == label][:per_class]
    (dest / "train").mkdir(parents=True)
    for entry in chosen:
        if rgb:
            Image.open(shared / "train" / entry.path).convert("RGB").save(
                dest / "train" / entry.path
            )
        else:
            shutil.copyfile(shared / "train" / entry.path, dest / "train" / entry.path)
    (dest / "train.lst").write_text(format_lst(chosen))
    return dest


def rgb_pixels(path_or_bytes: Path | bytes) -> np.ndarray:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    image = read_png(data)
    return np.asarray(image)
