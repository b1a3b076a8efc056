"""Staging from archives in the real CIFAR-100 python format, on the local store and S3."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cifar_builder import build_cifar_archive, make_split, meta_pickle, write_archive
from stage_helpers import CLASSES, PutFailsAfter, make_store, read_png, snapshot

from scones.data.errors import ArchiveError, ChecksumError, DataError, UnknownClassError
from scones.data.layout import LstEntry, parse_lst, read_dataset_info, read_lst
from scones.data.stage import StageReport, images_digest, stage
from scones.store import ObjectStore

SCONES = Path(sys.executable).parent / "scones"


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    bucket = request.getfixturevalue("s3_bucket") if request.param == "s3" else None
    return make_store(request.param, tmp_path, bucket)


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "cifar-100-python.tar.gz"
    built = build_cifar_archive(path)
    return path, built


def run_stage(source: Path | str, store: ObjectStore, tmp_path: Path, **kwargs) -> StageReport:
    options = {
        "classes": list(CLASSES),
        "val_fraction": 0.1,
        "seed": 0,
        "md5": None,
        "cache_dir": tmp_path / "cache",
    }
    options.update(kwargs)
    return stage(str(source), store, **options)


def test_archive_stages_exactly_the_layout_pixel_exact(
    target: ObjectStore, archive: tuple[Path, dict], tmp_path: Path
) -> None:
    path, built = archive
    report = run_stage(path, target, tmp_path)

    train_rows = [
        (row, name)
        for row, name in enumerate(built["train"].filenames)
        if name.split("_")[0] in CLASSES
    ]
    test_names = [n for n in built["test"].filenames if n.split("_")[0] in CLASSES]
    expected = {f"train/{name}" for _, name in train_rows} | {f"test/{n}" for n in test_names}
    expected |= {"train.lst", "validation.lst", "test.lst", "dataset.json"}
    assert set(target.keys("")) == expected  # no staging leftovers, nothing of other classes

    train = read_lst(target, "train", num_classes=2)
    validation = read_lst(target, "validation", num_classes=2)
    test = read_lst(target, "test", num_classes=2)
    # Validation is carved out of train: disjoint, together all train rows of the classes.
    assert not {e.path for e in train} & {e.path for e in validation}
    assert sorted((e.index, e.path) for e in train + validation) == sorted(train_rows)
    assert report.counts == {
        "train": {"bicycle": 18, "motorcycle": 18},
        "validation": {"bicycle": 2, "motorcycle": 2},
        "test": {"bicycle": 5, "motorcycle": 5},
    }
    # index is the row in the archive's batch; label the position in --classes.
    for entry in train + validation:
        assert built["train"].filenames[entry.index] == entry.path
        assert entry.label == CLASSES.index(entry.path.split("_")[0])
    for entry in test:
        assert built["test"].filenames[entry.index] == entry.path
    # RGB PNGs, pixel-exact with the source rows (1024 red, 1024 green, 1024 blue).
    for folder, entries in (("train", train + validation), ("test", test)):
        for entry in entries:
            image = read_png(target.get(f"{folder}/{entry.path}"))
            assert image.format == "PNG" and image.mode == "RGB" and image.size == (32, 32)
            np.testing.assert_array_equal(np.asarray(image), built[folder].image(entry.path))
    row = built["train"].data[train[0].index]
    pixels = np.asarray(read_png(target.get(f"train/{train[0].path}")))
    assert pixels[0, 0].tolist() == [row[0], row[1024], row[2048]]

    info = read_dataset_info(target)
    assert info["class_names"] == CLASSES
    assert info["counts"] == report.counts
    assert info["totals"] == {"train": 36, "validation": 4, "test": 10}
    assert info["source"]["kind"] == "archive"
    assert info["source"]["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert info["source"]["md5_verified"] is False
    assert info["split"] == {
        "seed": 0,
        "val_fraction": 0.1,
        "test_carved": False,
        "test_fraction": None,
    }
    assert report.test_carved is False and report.notes == []
    lst_sum = hashlib.sha256(target.get("validation.lst")).hexdigest()
    assert info["checksums"]["files"]["validation.lst"] == lst_sum
    assert info["checksums"]["images"]["test/"] == images_digest(
        target, "test", [e.path for e in test]
    )


def test_label_is_the_position_in_classes_and_any_class_works(tmp_path: Path) -> None:
    path = tmp_path / "cifar.tar.gz"
    build_cifar_archive(
        path,
        train_per_class={"rocket": 10, "bicycle": 10, "worm": 10},
        test_per_class={"rocket": 2, "bicycle": 2, "worm": 2},
    )
    store = make_store("local", tmp_path)
    report = run_stage(path, store, tmp_path, classes=["worm", "rocket"], md5=None)
    assert report.class_names == ["worm", "rocket"]
    entries = read_lst(store, "train") + read_lst(store, "validation") + read_lst(store, "test")
    assert {(e.path.split("_")[0], e.label) for e in entries} == {("worm", 0), ("rocket", 1)}
    assert len(entries) == 24


def test_matching_md5_is_recorded_as_verified(archive: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = archive
    store = make_store("local", tmp_path)
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    run_stage(path, store, tmp_path, md5=digest.upper())
    assert read_dataset_info(store)["source"]["md5_verified"] is True


def test_seeded_split_is_deterministic_and_stratified(tmp_path: Path) -> None:
    path = tmp_path / "cifar.tar.gz"
    build_cifar_archive(path, train_per_class={"bicycle": 40, "motorcycle": 30})
    lists = {}
    for seed in (0, 0, 1):
        store = make_store("local", tmp_path / f"run-{len(lists)}-{seed}")
        run_stage(path, store, tmp_path, seed=seed, val_fraction=0.25)
        lists.setdefault(seed, []).append(store.get("validation.lst"))
        validation = read_lst(store, "validation")
        assert sum(e.label == 0 for e in validation) == 10
        assert sum(e.label == 1 for e in validation) == 8  # round(30 * 0.25) = 7.5 -> 8
    assert lists[0][0] == lists[0][1]
    assert lists[0][0] != lists[1][0]


def test_restaging_other_classes_drops_stale_images(tmp_path: Path) -> None:
    path = tmp_path / "cifar.tar.gz"
    build_cifar_archive(path, train_per_class={"bicycle": 6, "motorcycle": 6, "rocket": 6})
    store = make_store("local", tmp_path)
    run_stage(path, store, tmp_path)
    run_stage(path, store, tmp_path, classes=["rocket", "bicycle"])
    images = [k for k in store.keys("") if k.startswith(("train/", "test/"))]
    assert images and not any("motorcycle" in k for k in images)
    listed = read_lst(store, "train") + read_lst(store, "validation")
    assert sorted(f"train/{e.path}" for e in listed) == sorted(
        k for k in images if k.startswith("train/")
    )


# --- bad input: one-line error, store exactly as before ---------------------------------


@pytest.fixture
def staged_before(target: ObjectStore, archive: tuple[Path, dict], tmp_path: Path):
    """A store that already holds a staged layout, and its snapshot."""
    run_stage(archive[0], target, tmp_path)
    return target, snapshot(target)


def test_unknown_class_lists_valid_names(staged_before, archive, tmp_path: Path) -> None:
    store, before = staged_before
    with pytest.raises(UnknownClassError) as caught:
        run_stage(archive[0], store, tmp_path, classes=["bicycle", "hovercraft"])
    message = str(caught.value)
    assert "'hovercraft'" in message and "bicycle" in message and "worm" in message
    assert "\n" not in message
    assert snapshot(store) == before


def test_md5_mismatch(staged_before, archive, tmp_path: Path) -> None:
    store, before = staged_before
    with pytest.raises(ChecksumError, match="expected 00000000000000000000000000000000"):
        run_stage(archive[0], store, tmp_path, md5="0" * 32)
    with pytest.raises(DataError, match="not an MD5"):
        run_stage(archive[0], store, tmp_path, md5="xyz")
    assert snapshot(store) == before


def test_truncated_archive(staged_before, archive, tmp_path: Path) -> None:
    store, before = staged_before
    truncated = tmp_path / "truncated.tar.gz"
    data = archive[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated"):
        run_stage(truncated, store, tmp_path)
    assert snapshot(store) == before


def test_plain_tar_is_read_and_non_tar_is_refused(staged_before, tmp_path: Path) -> None:
    store, before = staged_before
    plain = tmp_path / "plain.tar"
    build_cifar_archive(plain, gzip=False)
    run_stage(plain, make_store("local", tmp_path / "other"), tmp_path)
    not_tar = tmp_path / "not-a-tar.tar.gz"
    not_tar.write_bytes(b"this is not an archive at all\n" * 100)
    with pytest.raises(ArchiveError, match="not a readable tar"):
        run_stage(not_tar, store, tmp_path)
    assert snapshot(store) == before


def test_missing_member(staged_before, tmp_path: Path) -> None:
    store, before = staged_before
    path = tmp_path / "no-test.tar.gz"
    build_cifar_archive(path, drop=("test",))
    with pytest.raises(ArchiveError, match="no 'test' member"):
        run_stage(path, store, tmp_path)
    assert snapshot(store) == before


def test_missing_pickle_entry(staged_before, tmp_path: Path) -> None:
    store, before = staged_before
    train, _ = make_split("train", {"bicycle": 4, "motorcycle": 4}, seed=0)
    test, _ = make_split("test", {"bicycle": 2, "motorcycle": 2}, seed=1)
    del train[b"fine_labels"]
    path = write_archive(
        tmp_path / "broken.tar.gz",
        {
            name: pickle.dumps(b, protocol=2)
            for name, b in {"meta": meta_pickle(), "train": train, "test": test}.items()
        },
    )
    with pytest.raises(ArchiveError, match=r"broken.tar.gz:train has no b'fine_labels'"):
        run_stage(path, store, tmp_path)
    assert snapshot(store) == before


class _Exploit:
    """A pickle that would create a file when unpickled by a plain unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_other_globals_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    train, _ = make_split("train", {"bicycle": 4, "motorcycle": 4}, seed=0)
    test, _ = make_split("test", {"bicycle": 2, "motorcycle": 2}, seed=1)
    meta = meta_pickle()
    meta[b"extra"] = _Exploit(marker)
    path = write_archive(
        tmp_path / "evil.tar.gz",
        {
            "meta": pickle.dumps(meta, protocol=2),
            "train": pickle.dumps(train, protocol=2),
            "test": pickle.dumps(test, protocol=2),
        },
    )
    store = make_store("local", tmp_path)
    with pytest.raises(ArchiveError, match=r"global (io|builtins)\.open is not allowed"):
        run_stage(path, store, tmp_path)
    assert not marker.exists()
    assert list(store.keys("")) == []


# put 7: while staging images; copy 5: publishing images; copy 52: publishing manifests
# (after the 40 train + 10 test images: train.lst is new, validation.lst fails).
@pytest.mark.parametrize("method, calls", [("put", 7), ("copy", 5), ("copy", 52)])
def test_failure_mid_way_leaves_store_as_it_was(
    staged_before, archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, calls: int
) -> None:
    store, before = staged_before
    failing = PutFailsAfter(store, method, calls)
    monkeypatch.setattr(store, method, failing)
    # Another seed: a different split, so a half-published layout would show.
    with pytest.raises(OSError, match="injected failure"):
        run_stage(archive[0], store, tmp_path, seed=5)
    assert failing.seen >= calls
    monkeypatch.undo()
    assert snapshot(store) == before
    assert not [k for k in store.keys("") if ".staging-" in k]


def test_failure_on_first_staging_leaves_store_empty(archive, tmp_path: Path, monkeypatch) -> None:
    store = make_store("local", tmp_path)
    monkeypatch.setattr(store, "put", PutFailsAfter(store, "put", 20))
    with pytest.raises(OSError):
        run_stage(archive[0], store, tmp_path)
    monkeypatch.undo()
    assert list(store.keys("")) == []
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []


# --- the command ------------------------------------------------------------------------


def test_cli_stages_an_archive_and_reports_counts(archive, tmp_path: Path) -> None:
    store_dir = tmp_path / "cli-store"
    result = subprocess.run(
        [
            str(SCONES),
            "stage",
            "--source",
            str(archive[0]),
            "--store",
            str(store_dir),
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "validation" in result.stdout and "36" in result.stdout
    info = json.loads((store_dir / "dataset.json").read_text())
    assert info["split"]["seed"] == 3
    assert parse_lst((store_dir / "test.lst").read_text(), source="test.lst")[0] == LstEntry(
        *next(
            (row, CLASSES.index(n.split("_")[0]), n)
            for row, n in enumerate(archive[1]["test"].filenames)
            if n.split("_")[0] in CLASSES
        )
    )


def test_cli_bad_input_is_one_line_and_non_zero(archive, tmp_path: Path) -> None:
    store_dir = tmp_path / "cli-store"
    result = subprocess.run(
        [
            str(SCONES),
            "stage",
            "--source",
            str(archive[0]),
            "--store",
            str(store_dir),
            "--classes",
            "bicycle,unicycle",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown class name(s) 'unicycle'" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not store_dir.exists() or not any(store_dir.iterdir())


def test_staging_left_by_a_killed_run_is_removed_once_old(archive, tmp_path: Path) -> None:
    import os
    import time

    store = make_store("local", tmp_path)
    store.put(".staging-killed/train/a.png", b"left behind")
    store.put(".staging-live/train/b.png", b"a concurrent run, still writing")
    seven_hours_ago = time.time() - 7 * 3600
    os.utime(tmp_path / "store" / ".staging-killed" / "train" / "a.png", (seven_hours_ago,) * 2)
    report = run_stage(archive[0], store, tmp_path)
    assert report.notes == ["removed 1 objects left in .staging-killed/ by an interrupted run"]
    assert not store.exists(".staging-killed/train/a.png")
    assert store.exists(".staging-live/train/b.png")


def test_prefix_puts_the_layout_under_it_and_leaves_the_rest(archive, tmp_path: Path) -> None:
    store = make_store("local", tmp_path)
    store.put("models/vehicle-classifier/aliases.json", b"{}")
    run_stage(archive[0], store, tmp_path, prefix="datasets/v1/")
    keys = list(store.keys(""))
    assert "models/vehicle-classifier/aliases.json" in keys
    assert all(k.startswith("datasets/v1/") for k in keys if not k.startswith("models/"))
    assert len(read_lst(store, "test", "datasets/v1")) == 10
    assert read_dataset_info(store, "datasets/v1")["totals"]["train"] == 36
