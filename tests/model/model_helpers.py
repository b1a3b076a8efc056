"""Small staged layouts for the model tests: a few real CIFAR images, or solid colours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scones.data.layout import LstEntry, format_lst, parse_lst

CLASS_NAMES = ["bicycle", "motorcycle"]

# The scratch network at its smallest: trains on a few dozen images in seconds.
TINY_SCRATCH = {
    "backbone": "scratch",
    "epochs": 6,
    "width": 8,
    "batch_size": 16,
    "lr": 0.05,
    "cutout": 0,
    "device": "cpu",
    "members": 1,
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``scones ARGS`` in a fresh interpreter, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "scones.cli", *args], capture_output=True, text=True, timeout=120
    )


def write_layout(
    root: Path,
    splits: dict[str, list[tuple[int, bytes]]],
    class_names: list[str] | None = None,
) -> Path:
    """A staged layout folder: ``splits`` maps split -> [(label, png bytes)]."""
    folders = {"train": "train", "validation": "train", "test": "test"}
    for split, rows in splits.items():
        entries = []
        for index, (label, data) in enumerate(rows):
            name = f"{split}_{index:04d}.png"
            folder = root / folders[split]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
            entries.append(LstEntry(index, label, name))
        (root / f"{split}.lst").write_text(format_lst(entries))
    info = {"class_names": class_names or CLASS_NAMES, "counts": {}}
    (root / "dataset.json").write_text(json.dumps(info))
    return root


def shared_sample(shared: Path, per_class: int, skip: int = 0) -> list[tuple[int, bytes]]:
    """``per_class`` real images of each class from the shared data (after ``skip`` of each)."""
    entries = parse_lst((shared / "train.lst").read_text(), source="train.lst")
    rows: list[tuple[int, bytes]] = []
    for label in (0, 1):
        chosen = [e for e in entries if e.label == label][skip : skip + per_class]
        rows += [(label, (shared / "train" / e.path).read_bytes()) for e in chosen]
    return rows


def staged_shared(root: Path, shared: Path, train: int = 16, validation: int = 6) -> Path:
    """A real layout of 2*train + 2*validation shared images (and 2*validation test)."""
    return write_layout(
        root,
        {
            "train": shared_sample(shared, train),
            "validation": shared_sample(shared, validation, skip=train),
            "test": shared_sample(shared, validation, skip=train + validation),
        },
    )
