"""Build small archives in the real CIFAR-100 python format, for tests and benchmarks.

Same structure as ``cifar-100-python.tar.gz``: a gzip tar with ``cifar-100-python/meta``
(``fine_label_names``, ``coarse_label_names``) and ``cifar-100-python/{train,test}`` pickles
(``data`` uint8 rows of 1024 red, 1024 green, 1024 blue; ``fine_labels``; ``coarse_labels``;
``filenames``; ``batch_label``), all with byte-string keys, pickled with protocol 2.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scones.data.cifar import CIFAR100_FINE_LABEL_NAMES


@dataclass
class BuiltSplit:
    data: np.ndarray
    fine_labels: list[int]
    filenames: list[str]

    def image(self, filename: str) -> np.ndarray:
        """The HWC RGB pixels the archive holds for ``filename``."""
        row = self.filenames.index(filename)
        return self.data[row].reshape(3, 32, 32).transpose(1, 2, 0)


def make_split(
    name: str, per_class: dict[str, int], *, seed: int, filler: int = 3
) -> tuple[dict[bytes, object], BuiltSplit]:
    """A batch with ``per_class[name]`` rows of each class plus ``filler`` rows of others."""
    rng = np.random.default_rng(seed)
    labels: list[int] = []
    filenames: list[str] = []
    for class_name, count in per_class.items():
        fine = CIFAR100_FINE_LABEL_NAMES.index(class_name)
        for i in range(count):
            labels.append(fine)
            filenames.append(f"{class_name}_{name}_{i:06d}.png")
    for i in range(filler):  # rows of other classes, which staging must leave out
        labels.append(i % 5)  # apple, aquarium_fish, ...
        filenames.append(f"other_{name}_{i:06d}.png")
    order = rng.permutation(len(labels))  # interleave classes as the real batches do
    labels = [labels[i] for i in order]
    filenames = [filenames[i] for i in order]
    data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    batch = {
        b"filenames": [f.encode() for f in filenames],
        b"batch_label": f"{name} batch 1 of 1".encode(),
        b"fine_labels": labels,
        b"coarse_labels": [label // 5 for label in labels],
        b"data": data,
    }
    return batch, BuiltSplit(data, labels, filenames)


def cifar_pickle(obj: object) -> bytes:
    """Protocol 2, with numpy's globals under ``numpy.core`` as in the real (Python 2) files."""
    data = pickle.dumps(obj, protocol=2)
    return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def meta_pickle() -> dict[bytes, object]:
    return {
        b"fine_label_names": [n.encode() for n in CIFAR100_FINE_LABEL_NAMES],
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
    }


def write_archive(path: Path, members: dict[str, bytes], *, gzip: bool = True) -> Path:
    """A tar of ``cifar-100-python/<name>`` members (plus the folder entry)."""
    with tarfile.open(path, "w:gz" if gzip else "w") as tar:
        folder = tarfile.TarInfo("cifar-100-python")
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(payload)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(payload))
    return path


def build_cifar_archive(
    path: Path,
    *,
    train_per_class: dict[str, int] | None = None,
    test_per_class: dict[str, int] | None = None,
    seed: int = 0,
    drop: tuple[str, ...] = (),
    gzip: bool = True,
) -> dict[str, BuiltSplit]:
    """Write the archive at ``path``; returns what each split holds for pixel comparisons."""
    train_per_class = train_per_class or {"bicycle": 20, "motorcycle": 20}
    test_per_class = test_per_class or {"bicycle": 5, "motorcycle": 5}
    train_batch, train = make_split("train", train_per_class, seed=seed)
    test_batch, test = make_split("test", test_per_class, seed=seed + 1)
    members = {
        "file.txt~": b"an editor's backup file the real archive ships",
        "train": cifar_pickle(train_batch),
        "test": cifar_pickle(test_batch),
        "meta": cifar_pickle(meta_pickle()),
    }
    for name in drop:
        members.pop(name)
    write_archive(path, members, gzip=gzip)
    return {"train": train, "test": test}
