"""Read an item's image back from where it was found: a store key, or a capture file line.

The store URI and key come from the review database (written by the import), never from a
request; the key is checked again before it is read.
"""

from __future__ import annotations

import hashlib
import io
import threading

from scones.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from scones.monitor.capture_reader import decode_input_bytes, read_record_at
from scones.review.queue import ReviewError, ReviewItem
from scones.review.sources import MAX_IMAGE_BYTES
from scones.store import ObjectNotFoundError, ObjectStore, StoreError, open_store, validate_key


class ItemImageError(ReviewError):
    """An item's image is gone, changed since it was imported, or does not decode."""


class ItemImages:
    """Opens each store an item names once, and reads images from it."""

    def __init__(self, *, s3_endpoint_url: str | None = None) -> None:
        self.s3_endpoint_url = s3_endpoint_url
        self._stores: dict[str, ObjectStore] = {}
        self._lock = threading.Lock()

    def store(self, uri: str) -> ObjectStore:
        with self._lock:
            if uri not in self._stores:
                self._stores[uri] = open_store(uri, s3_endpoint_url=self.s3_endpoint_url)
            return self._stores[uri]

    def image_bytes(self, item: ReviewItem) -> bytes:
        """The image as it was seen (PNG or JPEG), checked against the imported SHA-256."""
        where = f"{item.store_uri}/{item.image_key}"
        try:
            store = self.store(item.store_uri)
            key = validate_key(item.image_key)
            if item.capture_line is None:
                with store.open(key) as stream:
                    data = stream.read(MAX_IMAGE_BYTES + 1)
            else:
                where += f":{item.capture_line}"
                data = decode_input_bytes(read_record_at(store, key, item.capture_line))
        except ObjectNotFoundError:
            raise ItemImageError(f"the image of item {item.item_id} is gone: {where}") from None
        except (StoreError, ValueError) as exc:
            raise ItemImageError(
                f"the image of item {item.item_id} cannot be read from {where}: {exc}"
            ) from None
        if len(data) > MAX_IMAGE_BYTES or hashlib.sha256(data).hexdigest() != item.image_sha256:
            raise ItemImageError(
                f"the image of item {item.item_id} at {where} changed since it was imported "
                f"(sha256 {item.image_sha256[:12]}...)"
            )
        return data

    def png(self, item: ReviewItem) -> bytes:
        """The image re-encoded as an RGB PNG (what the page shows and the export writes)."""
        try:
            image = decode_image(self.image_bytes(item), max_pixels=DEFAULT_MAX_PIXELS)
        except ImageDecodeError as exc:
            raise ItemImageError(
                f"the image of item {item.item_id} does not decode: {exc}"
            ) from None
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
