"""Object keys: S3-style, relative, and never able to escape their store."""

from __future__ import annotations

from scones.errors import SconesError

MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length


class InvalidKeyError(SconesError, ValueError):
    """A key that could name something outside its store, or that S3 would refuse."""


def validate_key(key: str) -> str:
    """Return ``key`` unchanged when it is a safe object key, else raise naming it."""
    problem = _key_problem(key)
    if problem:
        raise InvalidKeyError(f"invalid object key {key!r}: {problem}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key-like string that may end with '/'."""
    if prefix == "":
        return prefix
    problem = _key_problem(prefix.rstrip("/") or prefix, allow_empty_last=False)
    if problem:
        raise InvalidKeyError(f"invalid object key prefix {prefix!r}: {problem}")
    return prefix


def join_key(*parts: str) -> str:
    """Join key parts with '/', dropping empty parts and duplicate slashes at the seams."""
    cleaned = [part.strip("/") for part in parts if part and part.strip("/")]
    return "/".join(cleaned)


def _key_problem(key: str, *, allow_empty_last: bool = False) -> str | None:
    if not isinstance(key, str):
        return f"must be a string, not {type(key).__name__}"
    if key == "":
        return "must not be empty"
    if "\x00" in key:
        return "contains a NUL character"
    if "\\" in key:
        return "contains a backslash"
    if key.startswith("/"):
        return "is absolute (starts with '/')"
    if len(key) >= 2 and key[1] == ":" and key[0].isalpha():
        return "looks like a drive path"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    segments = key.split("/")
    for segment in segments:
        if segment == "..":
            return "contains a '..' segment"
        if segment == ".":
            return "contains a '.' segment"
    if any(segment == "" for segment in segments[:-1]) or (
        segments[-1] == "" and not allow_empty_last
    ):
        return "contains an empty segment ('//' or a trailing '/')"
    return None
