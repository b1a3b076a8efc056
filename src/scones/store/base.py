"""The object store interface that every stage reads and writes through."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from scones.errors import SconesError

STREAM_CHUNK_BYTES = 1024 * 1024


class StoreError(SconesError):
    """The store could not do what was asked (permissions, network, bad URI)."""


class ObjectNotFoundError(StoreError, KeyError):
    """No object at that key."""

    def __init__(self, store_uri: str, key: str) -> None:
        super().__init__(f"no object {key!r} in store {store_uri}")
        self.store_uri = store_uri
        self.key = key

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing says about one object."""

    key: str
    size: int
    last_modified: datetime
    etag: str | None = None


class ObjectStore(abc.ABC):
    """put/get/exists/list/delete on S3-style keys, with streaming for large objects.

    Writes are all-or-nothing: a reader sees the old object or the whole new one.
    """

    uri: str

    @abc.abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Write ``data`` at ``key``, replacing any object there."""

    @abc.abstractmethod
    def put_stream(self, key: str, stream: BinaryIO, *, content_type: str | None = None) -> None:
        """Write everything read from ``stream`` at ``key`` without holding it in memory."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFoundError when there is none."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object; close it when done."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size, modification time and etag (MD5 of the content where known)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is at ``key``."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (a string prefix, as in S3), by key."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (as in S3)."""

    def copy(self, source_key: str, dest_key: str) -> None:
        """Copy one object to another key in this store."""
        with self.open(source_key) as stream:
            self.put_stream(dest_key, stream)

    def keys(self, prefix: str = "") -> Iterator[str]:
        for info in self.list(prefix):
            yield info.key

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        count = 0
        for key in list(self.keys(prefix)):
            self.delete(key)
            count += 1
        return count

    def get_text(self, key: str) -> str:
        return self.get(key).decode("utf-8")

    def put_text(self, key: str, text: str, *, content_type: str = "text/plain") -> None:
        self.put(key, text.encode("utf-8"), content_type=content_type)

    def uri_for(self, key: str) -> str:
        """A URI that names one object of this store (for messages and references)."""
        return f"{self.uri.rstrip('/')}/{key}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
