"""A folder as an object store: the embedded default."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from scones.store.base import (
    STREAM_CHUNK_BYTES,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    StoreError,
)
from scones.store.keys import InvalidKeyError, validate_key, validate_prefix

# Partial writes live beside their target under this prefix, and listings skip them.
_TEMP_PREFIX = ".scones-partial-"


class LocalStore(ObjectStore):
    """Objects are files under ``root``; a key's segments are path segments."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        validate_key(key)
        if any(segment.startswith(_TEMP_PREFIX) for segment in key.split("/")):
            raise InvalidKeyError(f"invalid object key {key!r}: uses the reserved prefix")
        path = self.root.joinpath(*key.split("/"))
        # Belt and braces: a symlink inside the store must not lead outside it.
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise InvalidKeyError(f"invalid object key {key!r}: resolves outside the store")
        return path

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        with _AtomicFile(self._path(key)) as handle:
            handle.write(data)

    def put_stream(self, key: str, stream: BinaryIO, *, content_type: str | None = None) -> None:
        with _AtomicFile(self._path(key)) as handle:
            shutil.copyfileobj(stream, handle, STREAM_CHUNK_BYTES)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(self.uri, key) from None

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(self.uri, key) from None

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            stat = path.stat()
            if not path.is_file():
                raise FileNotFoundError(key)
            digest = hashlib.md5(usedforsecurity=False)
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(STREAM_CHUNK_BYTES), b""):
                    digest.update(chunk)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(self.uri, key) from None
        return ObjectInfo(key, stat.st_size, _mtime(stat.st_mtime), digest.hexdigest())

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Walk only the deepest folder the prefix fully names, then filter by string prefix.
        folder_part = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*folder_part.split("/")) if folder_part else self.root
        if not start.is_dir():
            return
        yield from self._walk(start, prefix)

    def _walk(self, folder: Path, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except FileNotFoundError:
            return
        # Sort as S3 does (by full key): a folder "a" sorts as "a/".
        entries.sort(key=lambda e: e.name + ("/" if e.is_dir(follow_symlinks=False) else ""))
        for entry in entries:
            if entry.name.startswith(_TEMP_PREFIX):
                continue
            rel = Path(entry.path).relative_to(self.root).as_posix()
            if entry.is_dir(follow_symlinks=False):
                if rel.startswith(prefix) or prefix.startswith(rel + "/"):
                    yield from self._walk(Path(entry.path), prefix)
            elif entry.is_file(follow_symlinks=False) and rel.startswith(prefix):
                stat = entry.stat()
                yield ObjectInfo(rel, stat.st_size, _mtime(stat.st_mtime))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        # Drop folders emptied by the delete, as S3 has no folders to leave behind.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def copy(self, source_key: str, dest_key: str) -> None:
        source = self._path(source_key)
        if not source.is_file():
            raise ObjectNotFoundError(self.uri, source_key)
        with source.open("rb") as stream, _AtomicFile(self._path(dest_key)) as handle:
            shutil.copyfileobj(stream, handle, STREAM_CHUNK_BYTES)


class _AtomicFile:
    """Write to a temporary file beside the target, then rename it into place."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._handle: BinaryIO | None = None
        self._temp_name = ""

    def __enter__(self) -> BinaryIO:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StoreError(
                f"cannot write {self.target}: a parent of it is an object, not a folder"
            ) from exc
        descriptor, self._temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.target.parent)
        self._handle = os.fdopen(descriptor, "wb")
        return self._handle

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._handle is not None
        try:
            if exc_type is None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            self._handle.close()
            if exc_type is None:
                os.replace(self._temp_name, self.target)
        finally:
            if os.path.exists(self._temp_name):
                os.unlink(self._temp_name)


def _mtime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)
