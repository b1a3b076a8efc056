"""Object stores: a local folder by default, any S3 API by ``s3://`` URI."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from scones.store.base import ObjectInfo, ObjectNotFoundError, ObjectStore, StoreError
from scones.store.keys import InvalidKeyError, join_key, validate_key, validate_prefix

__all__ = [
    "InvalidKeyError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "StoreError",
    "join_key",
    "open_store",
    "split_store_uri",
    "validate_key",
    "validate_prefix",
]


def open_store(uri: str, *, s3_endpoint_url: str | None = None) -> ObjectStore:
    """The store a URI names: ``s3://bucket/prefix``, ``file:///abs/path`` or a plain path."""
    if not uri:
        raise StoreError("empty store URI: give a folder, file:///abs/path or s3://bucket/prefix")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        from scones.store.s3 import S3Store

        return S3Store(parsed.netloc, unquote(parsed.path), endpoint_url=s3_endpoint_url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StoreError(f"file:// store URI {uri!r} names a host; use file:///abs/path")
        from scones.store.local import LocalStore

        return LocalStore(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise StoreError(
            f"unsupported store URI scheme {parsed.scheme!r} in {uri!r}: use a path, file:// or s3://"
        )
    from scones.store.local import LocalStore

    return LocalStore(uri)


def split_store_uri(uri: str) -> tuple[str, str]:
    """Split ``<store>/<key>`` where the store URI ends before a known object key.

    Used for references such as ``s3://bucket/models/x/1/model.tar.gz``: returns the
    parent URI and the last path segment (the key within that parent).
    """
    head, _, tail = uri.rstrip("/").rpartition("/")
    if not head or not tail:
        raise StoreError(f"{uri!r} does not name an object inside a store")
    return head, tail
