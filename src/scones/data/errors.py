"""Errors of data staging; each message names the file, key, line or value that was wrong."""

from __future__ import annotations

from scones.errors import SconesError


class DataError(SconesError):
    """Staging could not read or trust its source; the store is left as it was."""


class DownloadError(DataError):
    """The archive could not be fetched (unreachable, HTTP error, cut off)."""


class ChecksumError(DataError):
    """A file's MD5 is not the expected one."""


class ArchiveError(DataError):
    """The archive is not a readable CIFAR-100 tar: truncated, not a tar, a member missing."""


class UnknownClassError(DataError):
    """A class name that the source does not have; the message lists the valid names."""
