"""Read the CIFAR-100 python archive (``cifar-100-python.tar.gz``) without trusting it blindly.

The archive holds three pickles (``meta``, ``train``, ``test``) written by Python 2, with
byte-string keys. Unpickling can run code, so callers only pass archives whose MD5 was
verified or that the user named explicitly (see docs/data.md), and even then the unpickler
below resolves only the handful of globals a numpy array needs: a tampered archive fails
with an error instead of running anything.
"""

from __future__ import annotations

import codecs
import pickle
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from scones.data.errors import ArchiveError

# CIFAR-100's fine label names in label order (the archive's meta lists the same).
CIFAR100_FINE_LABEL_NAMES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

IMAGE_SHAPE = (32, 32, 3)
ROW_BYTES = 32 * 32 * 3
MEMBERS = ("meta", "train", "test")
SPLIT_MEMBERS = ("train", "test")
# The real train pickle is about 155 MB; anything far larger is not this archive.
MAX_MEMBER_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class CifarSplit:
    """One batch of the archive: ``data`` rows are 1024 red, 1024 green, 1024 blue bytes."""

    name: str
    data: np.ndarray  # (N, 3072) uint8
    fine_labels: np.ndarray  # (N,) int64
    filenames: list[str]

    def image(self, row: int) -> np.ndarray:
        """Row ``row`` as an HWC uint8 RGB array."""
        return self.data[row].reshape(3, 32, 32).transpose(1, 2, 0)


@dataclass(frozen=True)
class CifarArchive:
    fine_label_names: list[str]
    splits: dict[str, CifarSplit]


def _reconstructor(value: object) -> Callable[..., object]:
    """The callable that ``pickle`` names to rebuild ``value``."""
    reduced = value.__reduce__()
    if isinstance(reduced, str) or not callable(reduced[0]):
        raise TypeError(f"{type(value).__name__} does not reduce to a reconstructor")
    return reduced[0]


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any] | type]:
    # Resolve numpy's reconstructors from live objects, so numpy 1.x and 2.x both work and
    # pickles that name the old ``numpy.core`` path never import it (it warns in numpy 2).
    reconstruct = _reconstructor(np.empty(0))
    scalar = _reconstructor(np.uint8(0))
    allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
        ("_codecs", "encode"): codecs.encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, bytes and numpy arrays and nothing else."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file, encoding="bytes")
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a CIFAR-100 pickle"
            ) from None


def load_pickle(stream: IO[bytes], *, source: str) -> Any:
    """Unpickle one CIFAR pickle with the restricted unpickler; errors name ``source``."""
    try:
        return _NumpyOnlyUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ArchiveError(f"{source} is not a readable CIFAR-100 pickle: {exc}") from None


def read_cifar_archive(path: Path) -> CifarArchive:
    """Read ``meta``, ``train`` and ``test`` from a CIFAR-100 python tar (gzip or plain)."""
    pickles = _read_members(path)
    missing = [name for name in MEMBERS if name not in pickles]
    if missing:
        raise ArchiveError(
            f"archive {path} has no {', '.join(repr(m) for m in missing)} member "
            f"(expected cifar-100-python/{{{','.join(MEMBERS)}}})"
        )
    names = _fine_label_names(pickles["meta"], source=f"{path}:meta")
    splits = {
        name: _split(name, pickles[name], num_classes=len(names), source=f"{path}:{name}")
        for name in SPLIT_MEMBERS
    }
    return CifarArchive(names, splits)


def _read_members(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArchiveError(f"archive {path} does not exist or is not a file")
    pickles: dict[str, Any] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            # One pass in archive order: a gzip tar cannot seek back cheaply.
            for member in tar:
                parts = member.name.strip("/").split("/")
                if len(parts) > 2 or parts[-1] not in MEMBERS or not member.isfile():
                    continue
                if parts[-1] in pickles:
                    raise ArchiveError(f"archive {path} has two {parts[-1]!r} members")
                if member.size > MAX_MEMBER_BYTES:
                    raise ArchiveError(
                        f"archive member {member.name!r} of {path} is {member.size} bytes, "
                        f"over the limit of {MAX_MEMBER_BYTES}"
                    )
                stream = tar.extractfile(member)
                if stream is None:  # pragma: no cover - isfile() members always have one
                    continue
                with stream:
                    pickles[parts[-1]] = load_pickle(stream, source=f"{path}:{member.name}")
    except tarfile.ReadError as exc:
        raise ArchiveError(
            f"{path} is not a readable tar archive (truncated or not a tar): {exc}"
        ) from None
    except (EOFError, zlib.error, OSError) as exc:
        raise ArchiveError(f"archive {path} is truncated or corrupt: {exc}") from None
    return pickles


def _get(batch: Any, key: bytes, *, source: str) -> Any:
    if not isinstance(batch, dict):
        raise ArchiveError(f"{source} holds a {type(batch).__name__}, not a dict")
    if key not in batch:
        raise ArchiveError(f"{source} has no {key!r} entry (keys: {sorted(batch)!r})")
    return batch[key]


def _text(value: Any, *, what: str, source: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    elif isinstance(value, str):
        return value
    raise ArchiveError(f"{source}: {what} {value!r} is not text")


def _fine_label_names(meta: Any, *, source: str) -> list[str]:
    raw = _get(meta, b"fine_label_names", source=source)
    if not isinstance(raw, list) or not raw:
        raise ArchiveError(f"{source}: fine_label_names is not a non-empty list")
    return [_text(name, what="label name", source=source) for name in raw]


def _split(name: str, batch: Any, *, num_classes: int, source: str) -> CifarSplit:
    data = _get(batch, b"data", source=source)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ArchiveError(f"{source}: data is not a 2-D uint8 array")
    if data.shape[1] != ROW_BYTES:
        raise ArchiveError(f"{source}: data rows have {data.shape[1]} values, not {ROW_BYTES}")
    rows = data.shape[0]
    try:
        labels = np.asarray(_get(batch, b"fine_labels", source=source), dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ArchiveError(f"{source}: fine_labels are not integers") from None
    if labels.shape != (rows,):
        raise ArchiveError(f"{source}: {labels.size} fine_labels for {rows} data rows")
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        row = int(outside[0])
        raise ArchiveError(
            f"{source}: row {row} has fine label {int(labels[row])}, outside 0..{num_classes - 1}"
        )
    raw_names = _get(batch, b"filenames", source=source)
    if not isinstance(raw_names, list) or len(raw_names) != rows:
        raise ArchiveError(f"{source}: filenames is not a list of {rows} names")
    filenames = [_text(n, what="filename", source=source) for n in raw_names]
    return CifarSplit(name, data, labels, filenames)
