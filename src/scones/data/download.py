"""Fetch an archive into the download cache: resumable, MD5-verified, skipped when cached.

A download goes to ``<cache>/<name>.part``; an interrupted one is resumed with an HTTP
``Range`` request, and only a copy whose MD5 matches is renamed to ``<cache>/<name>``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from scones.data.errors import ChecksumError, DownloadError

if TYPE_CHECKING:
    from rich.progress import Progress

CHUNK_BYTES = 1024 * 1024
# The official archive is 169 MB; a server that sends far more is not sending it.
MAX_DOWNLOAD_BYTES = 2 * 1024 * 1024 * 1024
TIMEOUT_S = 30.0
ATTEMPTS = 3  # a connection cut off mid-way is resumed this many times per run
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_name(url: str) -> str:
    """The cache file name for ``url``: its last path segment, made safe as a file name."""
    name = _SAFE_NAME.sub("_", unquote(urlparse(url).path.rsplit("/", 1)[-1]))
    return name.lstrip(".") or "download"


def fetch(
    url: str,
    cache_dir: Path,
    *,
    md5: str,
    progress: Progress | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """The verified local copy of ``url`` in ``cache_dir``, downloading only what is missing."""
    md5 = md5.lower()
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cache_dir / cache_name(url)
    if dest.is_file():
        if file_md5(dest) == md5:
            return dest
        dest.unlink()  # a cached copy that no longer verifies: fetch it again
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _download_to(url, part, progress=progress, timeout=timeout)
            break
        except _CutOff as exc:
            if attempt == ATTEMPTS:
                raise DownloadError(
                    f"download of {url} was cut off {ATTEMPTS} times ({exc}); the partial "
                    f"file {part} is kept and the next run resumes it"
                ) from None
    actual = file_md5(part)
    if actual != md5:
        part.unlink()  # never resume from bytes that cannot be right
        raise ChecksumError(f"MD5 of {url} is {actual}, expected {md5}; the download was deleted")
    os.replace(part, dest)
    return dest


class _CutOff(Exception):
    """The connection ended before the whole body arrived; resuming may finish it."""


def _download_to(url: str, part: Path, *, progress: Progress | None, timeout: float) -> None:
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "scones", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) checked by caller
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # the .part already holds the whole file; the MD5 check decides
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot reach {url}: {reason} (offline? pass --source a local archive or an "
            "already-staged folder such as ../shared/data/cifar100-vehicles)"
        ) from None
    with response:
        resumed = offset > 0 and response.status == 206
        if not resumed:
            offset = 0  # the server ignored the Range: start over
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else None
        if total is not None and total > MAX_DOWNLOAD_BYTES:
            raise DownloadError(
                f"{url} is {total} bytes, over the limit of {MAX_DOWNLOAD_BYTES} bytes"
            )
        task = (
            progress.add_task(f"download {cache_name(url)}", total=total, completed=offset)
            if progress is not None
            else None
        )
        received = 0
        with part.open("ab" if resumed else "wb") as handle:
            try:
                while chunk := response.read(CHUNK_BYTES):
                    received += len(chunk)
                    if offset + received > MAX_DOWNLOAD_BYTES:
                        raise DownloadError(
                            f"{url} sent more than the limit of {MAX_DOWNLOAD_BYTES} bytes"
                        )
                    handle.write(chunk)
                    if progress is not None and task is not None:
                        progress.advance(task, len(chunk))
            except (http.client.IncompleteRead, OSError) as exc:
                raise _CutOff(f"{offset + received} of {total or '?'} bytes: {exc!r}") from None
            finally:
                handle.flush()
                os.fsync(handle.fileno())
        if length is not None and received < length:
            raise _CutOff(f"{offset + received} of {total} bytes")
