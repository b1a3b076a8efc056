"""``scones stage``: CIFAR-100 classes into a store, in SageMaker's image-classification layout.

Sources: the official archive URL (downloaded, MD5-verified), a local archive of that format,
or an already-staged folder or store prefix (imported and validated). Everything is written
under a temporary prefix first and published only when complete, so a bad input or a failed
write leaves the store exactly as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image

from scones import __version__
from scones.data.cifar import CIFAR100_FINE_LABEL_NAMES, CifarArchive, read_cifar_archive
from scones.data.download import fetch, file_md5
from scones.data.errors import ChecksumError, DataError, UnknownClassError
from scones.data.layout import (
    DATASET_JSON,
    SPLITS,
    LayoutError,
    LstEntry,
    format_lst,
    image_key,
    lst_key,
    parse_lst,
)
from scones.data.split import stratified_split
from scones.images import DEFAULT_MAX_PIXELS, PNG_SIGNATURE, ImageDecodeError, decode_image
from scones.settings import OFFICIAL_CIFAR100_MD5, OFFICIAL_CIFAR100_URL
from scones.store import ObjectNotFoundError, ObjectStore, join_key, open_store, validate_prefix
from scones.times import iso_z, utc_now

if TYPE_CHECKING:
    from rich.progress import Progress

DATASET_FORMAT_VERSION = 1
DEFAULT_VAL_FRACTION = 0.1
# CIFAR-100's own ratio (100 test per 500 train images), for imports that bring no test split.
DEFAULT_TEST_FRACTION = 1 / 6
STAGING_PREFIX = ".staging-"
# A staging prefix untouched this long belongs to a run that was killed, not a live one.
ABANDONED_STAGING_AGE = timedelta(hours=6)
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # per imported PNG; CIFAR's are about 2.5 KB
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # per imported .lst or dataset.json; 60,000 rows ~ 2.5 MB
WRITE_WORKERS = 8  # store writes are I/O bound (fsync, HTTP); PNG zlib releases the GIL
IMAGE_FOLDERS = ("train", "test")


@dataclass(frozen=True)
class StageReport:
    """What one run of ``stage`` published."""

    store_uri: str
    prefix: str
    source: str
    source_kind: str  # "download" | "archive" | "staged"
    class_names: list[str]
    counts: dict[str, dict[str, int]]  # split -> class name -> images
    test_carved: bool
    seconds: float
    notes: list[str] = field(default_factory=list)

    def total(self, split: str) -> int:
        return sum(self.counts[split].values())


class _Source(Protocol):
    """Where the images come from: entries per split and each entry's RGB PNG bytes."""

    description: dict[str, Any]
    train: list[LstEntry]  # train and any validation rows, pooled
    test: list[LstEntry] | None  # None: the source has no test split

    def png(self, folder: str, entry: LstEntry) -> bytes: ...


def stage(
    source: str,
    store: ObjectStore,
    *,
    classes: list[str],
    val_fraction: float,
    seed: int,
    md5: str | None,
    cache_dir: Path,
    prefix: str = "",
    test_fraction: float = DEFAULT_TEST_FRACTION,
    progress: Progress | None = None,
    s3_endpoint_url: str | None = None,
) -> StageReport:
    """Stage ``classes`` from ``source`` into ``store`` under ``prefix``; see the module doc."""
    started = time.monotonic()
    class_names = check_class_names(classes)
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if prefix:
        validate_prefix(prefix.strip("/"))
    if md5 is not None:
        md5 = _check_md5(md5)
    kind, location = classify_source(source)
    loaded = _load_source(
        kind,
        location,
        class_names,
        md5=md5,
        cache_dir=cache_dir,
        progress=progress,
        s3_endpoint_url=s3_endpoint_url,
    )
    notes: list[str] = []
    train_pool, test = loaded.train, loaded.test
    test_carved = test is None
    if test is None:
        train_pool, test = stratified_split(
            train_pool, test_fraction, seed=seed, class_names=class_names, what="test"
        )
        notes.append(
            f"the source has no test.lst: carved a stratified test split of {len(test)} "
            f"images ({test_fraction:.3g} of each class, seed {seed}) out of its train split"
        )
    train, validation = stratified_split(
        train_pool, val_fraction, seed=seed, class_names=class_names, what="validation"
    )
    splits = {"train": train, "validation": validation, "test": test}
    _check_disjoint(splits)
    counts = _counts(splits, class_names)
    info = {
        "format_version": DATASET_FORMAT_VERSION,
        "class_names": class_names,
        "counts": counts,
        "totals": {name: len(rows) for name, rows in splits.items()},
        "source": loaded.description,
        "split": {
            "seed": seed,
            "val_fraction": val_fraction,
            "test_carved": test_carved,
            "test_fraction": test_fraction if test_carved else None,
        },
        "staged_at": iso_z(utc_now()),
        "scones_version": __version__,
    }
    # Carved test images are read from the source's train/ folder.
    test_source_folder = "train" if test_carved else "test"
    _write_and_publish(
        store, prefix.strip("/"), loaded, splits, info, test_source_folder, progress=progress
    )
    notes += remove_abandoned_staging(store, prefix.strip("/"))
    return StageReport(
        store_uri=store.uri,
        prefix=prefix.strip("/"),
        source=source,
        source_kind=kind,
        class_names=class_names,
        counts=counts,
        test_carved=test_carved,
        seconds=time.monotonic() - started,
        notes=notes,
    )


def _load_source(
    kind: str,
    location: str,
    class_names: list[str],
    *,
    md5: str | None,
    cache_dir: Path,
    progress: Progress | None,
    s3_endpoint_url: str | None,
) -> _Source:
    """Open the source, fetching and verifying an archive where one is needed."""
    if kind == "staged":
        return _StagedSource(open_store(location, s3_endpoint_url=s3_endpoint_url), class_names)
    if kind == "download":
        url = location
        if md5 is None and url == OFFICIAL_CIFAR100_URL:
            md5 = OFFICIAL_CIFAR100_MD5
        if md5 is None:
            raise DataError(
                f"{{md5}} is required for source {url!r}: a downloaded archive is only "
                "unpickled when its checksum verifies",
                "md5",
            )
        if url == OFFICIAL_CIFAR100_URL:  # fail before a 169 MB download, not after
            _require_known(class_names, list(CIFAR100_FINE_LABEL_NAMES), where=url)
        archive_path = fetch(url, cache_dir, md5=md5, progress=progress)
        description = {"kind": kind, "uri": url, "md5": md5, "md5_verified": True}
        return _ArchiveSource(
            read_cifar_archive(archive_path), class_names, description=description
        )
    path = Path(location)
    actual = file_md5(path)
    if md5 is not None and actual != md5:
        raise ChecksumError(f"MD5 of archive {path} is {actual}, expected {md5}")
    # Unverified but named explicitly by the user: their archive, their trust decision.
    description = {
        "kind": kind,
        "uri": str(path.resolve()),
        "md5": actual,
        "md5_verified": md5 is not None,
    }
    return _ArchiveSource(read_cifar_archive(path), class_names, description=description)


# --- inputs -----------------------------------------------------------------------------


def check_class_names(classes: Sequence[str]) -> list[str]:
    """Class names as given, stripped; empty, duplicate or unprintable names are errors."""
    names = [name.strip() for name in classes]
    if not names or any(not name for name in names):
        raise DataError(
            f"{{classes}} {','.join(classes)!r} needs at least one non-empty name", "classes"
        )
    duplicates = sorted(name for name, n in Counter(names).items() if n > 1)
    if duplicates:
        raise DataError(f"{{classes}} names {', '.join(duplicates)} more than once", "classes")
    for name in names:
        if not name.isprintable() or any(c in name for c in "\t,/\\"):
            raise DataError(f"class name {name!r} contains a tab, comma, slash or control char")
    return names


def classify_source(source: str) -> tuple[str, str]:
    """("download", url) | ("archive", path) | ("staged", store URI or folder)."""
    if not source:
        raise DataError(
            "{source} is empty: give a URL, an archive path or a staged folder", "source"
        )
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        return "download", source
    if parsed.scheme == "s3":
        return "staged", source
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme and len(parsed.scheme) > 1:
        raise DataError(
            f"source {source!r} has unsupported scheme {parsed.scheme!r}: use https://, s3://, "
            "file:// or a path"
        )
    else:
        path = Path(source).expanduser()
    if path.is_dir():
        return "staged", str(path)
    if path.is_file():
        return "archive", str(path)
    raise DataError(f"source {source!r} does not exist (no such file or folder)")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise DataError(f"{{{name}}} must be between 0 and 1 (exclusive), got {value}", name)


def _check_md5(md5: str) -> str:
    value = md5.strip().lower()
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise DataError(f"{{md5}} {md5!r} is not an MD5 (32 hex digits)", "md5")
    return value


def _require_known(classes: list[str], valid: list[str], *, where: str) -> None:
    unknown = [name for name in classes if name not in valid]
    if unknown:
        raise UnknownClassError(  # ``where`` is a source, or the {classes} parameter
            f"unknown class name(s) {', '.join(repr(u) for u in unknown)} in {where}; "
            f"valid names: {', '.join(valid)}",
            "classes",
        )


def _check_filename(name: str, *, where: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00") or name.startswith("."):
        raise DataError(f"{where}: image filename {name!r} is not a plain file name")
    return name


def _check_disjoint(splits: dict[str, list[LstEntry]]) -> None:
    for name, rows in splits.items():
        seen: set[str] = set()
        for entry in rows:
            if entry.path in seen:
                raise LayoutError(f"{name}.lst names image {entry.path!r} twice")
            seen.add(entry.path)
    overlap = {e.path for e in splits["train"]} & {e.path for e in splits["validation"]}
    if overlap:
        raise LayoutError(f"train and validation share image(s): {sorted(overlap)[:5]}")


def _counts(splits: dict[str, list[LstEntry]], class_names: list[str]) -> dict[str, dict[str, int]]:
    return {
        split: {name: sum(e.label == label for e in rows) for label, name in enumerate(class_names)}
        for split, rows in splits.items()
    }


def encode_png(rgb: np.ndarray) -> bytes:
    """An HWC uint8 RGB array as PNG bytes (lossless, so pixel-exact)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class _ArchiveSource:
    """Rows of the chosen classes from a CIFAR-100 archive; ``index`` is the row in its batch."""

    def __init__(
        self, archive: CifarArchive, classes: list[str], *, description: dict[str, Any]
    ) -> None:
        _require_known(classes, archive.fine_label_names, where="the archive's fine_label_names")
        self.archive = archive
        self.description = description
        fine_to_label = {archive.fine_label_names.index(name): i for i, name in enumerate(classes)}
        wanted = np.array(sorted(fine_to_label), dtype=np.int64)
        rows_by_split: dict[str, list[LstEntry]] = {}
        for split_name, split in archive.splits.items():
            rows = np.flatnonzero(np.isin(split.fine_labels, wanted))
            rows_by_split[split_name] = [
                LstEntry(
                    int(row),
                    fine_to_label[int(split.fine_labels[row])],
                    _check_filename(split.filenames[row], where=f"archive {split_name} row {row}"),
                )
                for row in rows
            ]
        self.train = rows_by_split["train"]
        self.test: list[LstEntry] | None = rows_by_split["test"]

    def png(self, folder: str, entry: LstEntry) -> bytes:
        return encode_png(self.archive.splits[folder].image(entry.index))


def _read_limited(store: ObjectStore, key: str, limit: int) -> str:
    with store.open(key) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise DataError(f"{store.uri_for(key)} is over the limit of {limit} bytes")
    return data.decode("utf-8")


class _StagedSource:
    """An already-staged folder or store prefix: every row and image is validated on read."""

    def __init__(self, store: ObjectStore, classes: list[str]) -> None:
        self.store = store
        self.description: dict[str, Any] = {"kind": "staged", "uri": store.uri}
        info_key = DATASET_JSON
        if store.exists(info_key):
            try:
                info = json.loads(_read_limited(store, info_key, MAX_MANIFEST_BYTES))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise LayoutError(f"{store.uri_for(info_key)} is not valid JSON: {exc}") from None
            their_classes = info.get("class_names") if isinstance(info, dict) else None
            if their_classes != classes:
                raise DataError(
                    f"{store.uri_for(info_key)} has class_names {their_classes!r}, but {{classes}} "
                    f"is {classes!r}: labels would change meaning",
                    "classes",
                )
            if isinstance(info.get("source"), dict):
                self.description["origin"] = info["source"]
        else:
            # No dataset.json to name the labels: --classes does, from CIFAR-100's names.
            _require_known(classes, list(CIFAR100_FINE_LABEL_NAMES), where="{classes}")
        self.train = self._read("train", classes)
        if store.exists(lst_key("validation")):
            self.train += self._read("validation", classes)
        self.test = self._read("test", classes) if store.exists(lst_key("test")) else None

    def _read(self, split: str, classes: list[str]) -> list[LstEntry]:
        key = lst_key(split)
        if not self.store.exists(key):
            raise LayoutError(f"no {split}.lst in {self.store.uri}: not a staged layout")
        try:
            text = _read_limited(self.store, key, MAX_MANIFEST_BYTES)
        except UnicodeDecodeError:
            raise LayoutError(f"{self.store.uri_for(key)} is not UTF-8 text") from None
        entries = parse_lst(text, source=self.store.uri_for(key), num_classes=len(classes))
        for entry in entries:
            if "/" in entry.path:
                raise LayoutError(
                    f"{self.store.uri_for(key)}: image path {entry.path!r} is not a plain file name"
                )
        return entries

    def png(self, folder: str, entry: LstEntry) -> bytes:
        key = image_key(folder, entry.path)
        uri = self.store.uri_for(key)
        try:
            with self.store.open(key) as stream:
                data = stream.read(MAX_IMAGE_BYTES + 1)
        except ObjectNotFoundError:
            raise LayoutError(
                f"image {uri}, named in the source's .lst files, is missing"
            ) from None
        if len(data) > MAX_IMAGE_BYTES:
            raise DataError(f"image {uri} is over the limit of {MAX_IMAGE_BYTES} bytes")
        if not data.startswith(PNG_SIGNATURE):
            raise DataError(f"image {uri} is not a PNG")
        try:
            image = decode_image(data, max_pixels=DEFAULT_MAX_PIXELS)
        except ImageDecodeError as exc:
            raise DataError(f"image {uri} does not decode: {exc}") from None
        return encode_png(np.asarray(image))


# --- writing and publishing -------------------------------------------------------------


def remove_abandoned_staging(store: ObjectStore, prefix: str = "") -> list[str]:
    """Delete staging prefixes of killed runs (older than ABANDONED_STAGING_AGE); notes."""
    newest: dict[str, datetime] = {}
    start = len(prefix) + 1 if prefix else 0
    for info in store.list(join_key(prefix, STAGING_PREFIX)):
        end = info.key.find("/", start)
        if end < 0:
            continue  # an object named like a staging prefix, not one of ours
        staging = info.key[:end]
        newest[staging] = max(newest.get(staging, info.last_modified), info.last_modified)
    cutoff = datetime.now(UTC) - ABANDONED_STAGING_AGE
    notes = []
    for staging, modified in sorted(newest.items()):
        if modified < cutoff:
            count = store.delete_prefix(staging + "/")
            notes.append(f"removed {count} objects left in {staging}/ by an interrupted run")
    return notes


def _write_and_publish(
    store: ObjectStore,
    prefix: str,
    source: _Source,
    splits: dict[str, list[LstEntry]],
    info: dict[str, Any],
    test_source_folder: str,
    *,
    progress: Progress | None,
) -> None:
    staging = join_key(prefix, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    # Touch the store on this thread first: S3Store builds its boto3 client lazily, and
    # boto3's default session must not build clients from several threads at once.
    store.exists(join_key(staging, DATASET_JSON))
    # (source folder, destination folder, entry) for every image of the new layout.
    image_jobs = [("train", "train", e) for e in splits["train"] + splits["validation"]] + [
        (test_source_folder, "test", e) for e in splits["test"]
    ]
    try:
        digests = _run_parallel(
            [_stage_image(store, staging, source, *job) for job in image_jobs],
            progress=progress,
            label="stage images",
        )
        info["checksums"] = _checksums(
            [(dest, entry) for _, dest, entry in image_jobs], digests, splits
        )
        for split in SPLITS:
            store.put_text(lst_key(split, staging), format_lst(splits[split]))
        store.put_text(
            join_key(staging, DATASET_JSON),
            json.dumps(info, indent=2) + "\n",
            content_type="application/json",
        )
    except BaseException:
        store.delete_prefix(staging + "/")
        raise
    new_images = [image_key(dest, entry.path) for _, dest, entry in image_jobs]
    _publish(store, staging, prefix, new_images, progress=progress)


def _stage_image(
    store: ObjectStore,
    staging: str,
    source: _Source,
    source_folder: str,
    dest_folder: str,
    entry: LstEntry,
) -> Callable[[], str]:
    def job() -> str:
        data = source.png(source_folder, entry)
        store.put(image_key(dest_folder, entry.path, staging), data, content_type="image/png")
        return hashlib.sha256(data).hexdigest()

    return job


def _checksums(
    image_jobs: list[tuple[str, LstEntry]], digests: list[str], splits: dict[str, list[LstEntry]]
) -> dict[str, Any]:
    # One digest per image folder over "<path>\t<sha256>" lines sorted by path: verifiable
    # without listing 60,000 per-file sums in dataset.json.
    lines: dict[str, list[str]] = {folder: [] for folder in IMAGE_FOLDERS}
    for (folder, entry), digest in zip(image_jobs, digests, strict=True):
        lines[folder].append(f"{entry.path}\t{digest}\n")
    return {
        "algorithm": "sha256",
        "files": {
            f"{split}.lst": hashlib.sha256(format_lst(splits[split]).encode()).hexdigest()
            for split in SPLITS
        },
        "images": {
            f"{folder}/": hashlib.sha256("".join(sorted(rows)).encode()).hexdigest()
            for folder, rows in lines.items()
        },
    }


def images_digest(store: ObjectStore, folder: str, paths: Sequence[str], prefix: str = "") -> str:
    """Recompute the ``checksums.images`` digest of one image folder of a staged layout."""
    rows = sorted(
        f"{path}\t{hashlib.sha256(store.get(image_key(folder, path, prefix))).hexdigest()}\n"
        for path in paths
    )
    return hashlib.sha256("".join(rows).encode()).hexdigest()


def _publish(
    store: ObjectStore,
    staging: str,
    prefix: str,
    new_images: list[str],
    *,
    progress: Progress | None,
) -> None:
    """Copy the staged objects into place (manifests last), then drop stale images and staging."""
    before = {key for folder in IMAGE_FOLDERS for key in store.keys(join_key(prefix, folder) + "/")}
    new_keys = {join_key(prefix, key) for key in new_images}
    manifests = [f"{split}.lst" for split in SPLITS] + [DATASET_JSON]
    # The old manifests are small: keep them to put back if publishing fails half-way.
    old_manifests = {
        name: store.get(join_key(prefix, name))
        for name in manifests
        if store.exists(join_key(prefix, name))
    }
    try:
        _run_parallel(
            [_copy(store, join_key(staging, key), join_key(prefix, key)) for key in new_images],
            progress=progress,
            label="publish",
        )
        # Manifests go last: readers of the old .lst never see its images disappear early,
        # and dataset.json, the marker of a complete layout, goes very last.
        for name in manifests:
            store.copy(join_key(staging, name), join_key(prefix, name))
    except BaseException:
        # Undo: old manifests back, images that were not there before gone again. (Images
        # overwritten under the same name stay new; CIFAR names one image by one name.)
        for name in manifests:
            if name in old_manifests:
                store.put(join_key(prefix, name), old_manifests[name])
            else:
                store.delete(join_key(prefix, name))
        for key in new_keys - before:
            store.delete(key)
        store.delete_prefix(staging + "/")
        raise
    for key in before - new_keys:
        store.delete(key)
    store.delete_prefix(staging + "/")


def _copy(store: ObjectStore, source_key: str, dest_key: str) -> Callable[[], str]:
    def job() -> str:
        store.copy(source_key, dest_key)
        return dest_key

    return job


def _run_parallel(
    jobs: list[Callable[[], str]], *, progress: Progress | None, label: str
) -> list[str]:
    """Run jobs on a thread pool, results in order; the first failure cancels the rest."""
    task = progress.add_task(label, total=len(jobs)) if progress is not None else None
    results: list[str] = []
    executor = ThreadPoolExecutor(max_workers=WRITE_WORKERS)
    try:
        futures: list[Future[str]] = [executor.submit(job) for job in jobs]
        for future in futures:
            results.append(future.result())
            if progress is not None and task is not None:
                progress.advance(task)
    finally:
        # Cancel what has not started and wait for what has, so nothing is written after
        # the caller cleans up the staging prefix.
        executor.shutdown(wait=True, cancel_futures=True)
    return results
