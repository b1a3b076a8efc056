"""Read one split of a staged layout into memory, decoded once, through the shared preprocessing.

Images are decoded with :func:`scones.images.decode_image` and resized with
:func:`~scones.model.preprocess.resize_for` (the endpoint's code), and kept as uint8 pixels:
training normalises them with :func:`~scones.model.preprocess.normalize_hwc_uint8`, so the
network sees exactly what the endpoint will feed it.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from scones.data.layout import LayoutError, LstEntry, image_key, lst_key, read_lst
from scones.images import ImageDecodeError, decode_image, image_statistics
from scones.model.preprocess import Preprocessing, resize_for
from scones.store import ObjectNotFoundError, ObjectStore

# One image of a staged layout is a small PNG or JPEG; refuse anything absurd before decoding.
MAX_IMAGE_BYTES = 32 * 1024 * 1024
READ_WORKERS = 8  # store reads are I/O bound (S3); decoding is cheap at 32x32


@dataclass
class ImageSet:
    """A split in memory: pixels (N, H, W, 3) uint8 at the model's input size, labels (N,)."""

    split: str
    pixels: np.ndarray
    labels: np.ndarray
    keys: list[str]
    statistics: list[dict[str, float]] = field(default_factory=list)
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.labels)


def _read_image(store: ObjectStore, key: str) -> bytes | None:
    """The object's bytes, at most MAX_IMAGE_BYTES + 1 of them; None when it is missing."""
    try:
        with store.open(key) as stream:
            return stream.read(MAX_IMAGE_BYTES + 1)
    except ObjectNotFoundError:
        return None


def load_split(
    store: ObjectStore,
    split: str,
    *,
    prep: Preprocessing,
    prefix: str = "",
    num_classes: int | None = None,
    with_statistics: bool = False,
) -> ImageSet:
    """Every image that ``<split>.lst`` names, decoded; a clear error for any that is missing."""
    entries: list[LstEntry] = read_lst(store, split, prefix, num_classes=num_classes)
    keys = [image_key(split, entry.path, prefix) for entry in entries]
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        blobs = list(pool.map(lambda key: _read_image(store, key), keys))
    missing = [key for key, blob in zip(keys, blobs, strict=True) if blob is None]
    if missing:
        shown = ", ".join(store.uri_for(key) for key in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise LayoutError(
            f"{store.uri_for(lst_key(split, prefix))} names {len(missing)} images that are "
            f"not in the store: {shown}{more}"
        )
    digest = hashlib.sha256(store.get(lst_key(split, prefix)))
    height, width = prep.input_size
    pixels = np.empty((len(entries), height, width, 3), dtype=np.uint8)
    statistics: list[dict[str, float]] = []
    for row, (key, blob) in enumerate(zip(keys, blobs, strict=True)):
        assert blob is not None
        if len(blob) > MAX_IMAGE_BYTES:
            raise LayoutError(
                f"{store.uri_for(key)} is over the {MAX_IMAGE_BYTES} byte limit for one image"
            )
        digest.update(hashlib.sha256(blob).digest())
        try:
            image = decode_image(blob, max_pixels=prep.max_pixels)
        except ImageDecodeError as exc:
            raise LayoutError(f"{store.uri_for(key)}: {exc}") from None
        if with_statistics:
            statistics.append(image_statistics(image))
        pixels[row] = np.asarray(resize_for(image, prep), dtype=np.uint8)
    labels = np.array([entry.label for entry in entries], dtype=np.int64)
    return ImageSet(split, pixels, labels, keys, statistics, digest.hexdigest())
