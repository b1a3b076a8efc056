"""Importing an already-staged folder or store prefix (the shared data, or our own output)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from stage_helpers import (
    CLASSES,
    PutFailsAfter,
    make_store,
    read_png,
    rgb_pixels,
    small_staged_folder,
    snapshot,
)

from scones.data.errors import DataError, UnknownClassError
from scones.data.layout import LayoutError, parse_lst, read_dataset_info, read_lst
from scones.data.stage import StageReport, stage
from scones.store import ObjectStore, open_store


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    bucket = request.getfixturevalue("s3_bucket") if request.param == "s3" else None
    return make_store(request.param, tmp_path, bucket)


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


def test_import_of_the_shared_data_carves_test_and_is_pixel_exact(
    shared_vehicles: Path, tmp_path: Path
) -> None:
    store = make_store("local", tmp_path)
    report = run_stage(shared_vehicles, store, tmp_path)
    assert report.source_kind == "staged" and report.test_carved
    assert len(report.notes) == 1 and "no test.lst" in report.notes[0]
    assert "carved a stratified test split of 166" in report.notes[0]
    assert report.counts == {
        "train": {"bicycle": 375, "motorcycle": 375},
        "validation": {"bicycle": 42, "motorcycle": 42},
        "test": {"bicycle": 83, "motorcycle": 83},
    }
    source_rows = {
        (e.index, e.label, e.path)
        for e in parse_lst((shared_vehicles / "train.lst").read_text(), source="train.lst")
    }
    staged = {
        split: read_lst(store, split, num_classes=2) for split in ("train", "validation", "test")
    }
    assert {(e.index, e.label, e.path) for rows in staged.values() for e in rows} == source_rows
    images = {k for k in store.keys("") if k.endswith(".png")}
    assert images == {f"train/{e.path}" for e in staged["train"] + staged["validation"]} | {
        f"test/{e.path}" for e in staged["test"]
    }
    # RGBA sources (alpha 255, as the seed's notebook wrote them) become RGB, pixel-exact.
    for key in sorted(images):
        image = read_png(store.get(key))
        assert image.mode == "RGB"
        source = rgb_pixels(shared_vehicles / "train" / key.split("/", 1)[1])
        assert source.shape == (32, 32, 4)
        np.testing.assert_array_equal(np.asarray(image), source[..., :3])
    info = read_dataset_info(store)
    assert info["split"]["test_carved"] is True
    assert info["split"]["test_fraction"] == pytest.approx(1 / 6)
    assert info["source"] == {"kind": "staged", "uri": shared_vehicles.resolve().as_uri()}


def test_import_on_both_backends_and_reimport_keeps_the_test_split(
    target: ObjectStore, shared_vehicles: Path, tmp_path: Path
) -> None:
    folder = small_staged_folder(shared_vehicles, tmp_path / "small", per_class=12)
    first = run_stage(folder, target, tmp_path)
    assert first.counts["test"] == {"bicycle": 2, "motorcycle": 2}
    assert first.counts["validation"] == {"bicycle": 1, "motorcycle": 1}
    test_before = target.get("test.lst")
    # Re-import our own output (a store prefix) with another seed: test stays, validation moves.
    again = make_store("local", tmp_path / "again")
    second = run_stage(target.uri, again, tmp_path, seed=7)
    assert second.test_carved is False and second.notes == []
    assert again.get("test.lst") == test_before
    pool = {e.path for e in read_lst(again, "train") + read_lst(again, "validation")}
    assert pool == {e.path for e in read_lst(target, "train") + read_lst(target, "validation")}
    info = read_dataset_info(again)
    assert info["source"]["uri"] == target.uri
    assert info["source"]["origin"]["kind"] == "staged"
    copied = [key for key in again.keys("") if key.endswith(".png")]
    assert len(copied) == len(pool) + len(read_lst(again, "test"))  # every image, no loop on []
    for key in copied:
        assert again.get(key) == target.get(key)


def test_rgb_sources_are_kept_pixel_exact(shared_vehicles: Path, tmp_path: Path) -> None:
    folder = small_staged_folder(shared_vehicles, tmp_path / "rgb", per_class=6, rgb=True)
    store = make_store("local", tmp_path)
    run_stage(folder, store, tmp_path)
    keys = list(store.keys("train/"))
    # train/ holds the train and validation images: the loop below checks every one of them.
    assert len(keys) == len(read_lst(store, "train")) + len(read_lst(store, "validation")) > 0
    for key in keys:
        source = rgb_pixels(folder / "train" / key.split("/", 1)[1])
        np.testing.assert_array_equal(rgb_pixels(store.get(key)), source)


def test_seed_decides_the_split(shared_vehicles: Path, tmp_path: Path) -> None:
    folder = small_staged_folder(shared_vehicles, tmp_path / "small", per_class=20)
    outputs = []
    for run, seed in enumerate((0, 0, 1)):
        store = make_store("local", tmp_path / f"run{run}")
        run_stage(folder, store, tmp_path, seed=seed)
        outputs.append((store.get("validation.lst"), store.get("test.lst")))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] != outputs[2][0] and outputs[0][1] != outputs[2][1]


# --- bad input: one-line error naming what was wrong, store exactly as before ------------


@pytest.fixture
def folder(shared_vehicles: Path, tmp_path: Path) -> Path:
    return small_staged_folder(shared_vehicles, tmp_path / "src", per_class=10)


@pytest.fixture
def staged_before(target: ObjectStore, folder: Path, tmp_path: Path):
    run_stage(folder, target, tmp_path)
    return target, snapshot(target)


def _lst_lines(folder: Path) -> list[str]:
    return (folder / "train.lst").read_text().splitlines()


def _write_lines(folder: Path, lines: list[str]) -> None:
    (folder / "train.lst").write_text("".join(line + "\n" for line in lines))


def _check_refused(error, match, folder, store, tmp_path, before) -> str:
    with pytest.raises(error, match=match) as caught:
        run_stage(folder, store, tmp_path)
    assert "\n" not in str(caught.value)
    assert snapshot(store) == before
    return str(caught.value)


def test_malformed_lst_line_names_file_and_line(staged_before, folder, tmp_path) -> None:
    store, before = staged_before
    lines = _lst_lines(folder)
    lines[4] = lines[4].replace("\t", " ", 1)
    _write_lines(folder, lines)
    message = _check_refused(
        LayoutError, r"train\.lst:5: expected 3", folder, store, tmp_path, before
    )
    assert str(folder.resolve()) in message


def test_label_outside_the_classes(staged_before, folder, tmp_path) -> None:
    store, before = staged_before
    lines = _lst_lines(folder)
    index, _, path = lines[7].split("\t")
    lines[7] = f"{index}\t2\t{path}"
    _write_lines(folder, lines)
    _check_refused(
        LayoutError,
        r"train\.lst:8: label 2 is outside the 2 classes",
        folder,
        store,
        tmp_path,
        before,
    )


def test_image_that_does_not_decode(staged_before, folder, tmp_path) -> None:
    store, before = staged_before
    name = _lst_lines(folder)[13].split("\t")[2]
    data = (folder / "train" / name).read_bytes()
    (folder / "train" / name).write_bytes(data[:60])  # a PNG cut short
    _check_refused(DataError, rf"image .*{name} does not decode", folder, store, tmp_path, before)
    (folder / "train" / name).write_bytes(b"GIF89a not a png")
    _check_refused(DataError, rf"image .*{name} is not a PNG", folder, store, tmp_path, before)


def test_missing_image(staged_before, folder, tmp_path) -> None:
    store, before = staged_before
    name = _lst_lines(folder)[3].split("\t")[2]
    (folder / "train" / name).unlink()
    _check_refused(
        LayoutError,
        rf"image .*{name}, named in the source's .lst files, is missing",
        folder,
        store,
        tmp_path,
        before,
    )


def test_folder_without_train_lst(staged_before, folder, tmp_path) -> None:
    store, before = staged_before
    (folder / "train.lst").unlink()
    _check_refused(LayoutError, "no train.lst in", folder, store, tmp_path, before)


def test_path_escaping_the_image_folder(staged_before, folder, tmp_path) -> None:
    store, before = staged_before
    lines = _lst_lines(folder)
    lines[0] = "1\t0\t../train.lst"
    _write_lines(folder, lines)
    _check_refused(
        LayoutError,
        r"train\.lst:1: bad image path '\.\./train\.lst'",
        folder,
        store,
        tmp_path,
        before,
    )


def test_unknown_class_without_dataset_json(staged_before, folder, tmp_path) -> None:
    store, before = staged_before
    with pytest.raises(UnknownClassError, match=r"'hovercraft'.*valid names: apple"):
        run_stage(folder, store, tmp_path, classes=["bicycle", "hovercraft"])
    assert snapshot(store) == before


def test_classes_must_match_the_sources_dataset_json(target, staged_before, tmp_path) -> None:
    store, _ = staged_before
    other = make_store("local", tmp_path / "other")
    with pytest.raises(DataError, match="labels would change meaning"):
        run_stage(store.uri, other, tmp_path, classes=["motorcycle", "bicycle"])
    assert snapshot(other) == {}


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        run_stage(tmp_path / "nowhere", make_store("local", tmp_path), tmp_path)


def test_bad_fractions_and_class_lists(folder: Path, tmp_path: Path) -> None:
    store = make_store("local", tmp_path)
    with pytest.raises(DataError, match="val_fraction must be between 0 and 1"):
        run_stage(folder, store, tmp_path, val_fraction=1.0)
    with pytest.raises(DataError, match="names bicycle more than once"):
        run_stage(folder, store, tmp_path, classes=["bicycle", "bicycle"])
    lines = _lst_lines(folder)
    bicycles = [line for line in lines if line.split("\t")[1] == "0"]
    one_motorcycle = next(line for line in lines if line.split("\t")[1] == "1")
    _write_lines(folder, [*bicycles, one_motorcycle])
    with pytest.raises(DataError, match="class 'motorcycle' has 1 image"):
        run_stage(folder, store, tmp_path)
    assert snapshot(store) == {}


def test_failure_mid_way_leaves_store_as_it_was(
    staged_before, folder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, before = staged_before
    failing = PutFailsAfter(store, "put", 9)
    monkeypatch.setattr(store, "put", failing)
    with pytest.raises(OSError, match="injected failure"):
        run_stage(folder, store, tmp_path, seed=3)
    monkeypatch.undo()
    assert snapshot(store) == before


def test_dataset_json_of_the_source_must_be_json(folder: Path, tmp_path: Path) -> None:
    (folder / "dataset.json").write_text("{not json")
    with pytest.raises(LayoutError, match=r"dataset\.json is not valid JSON"):
        run_stage(folder, make_store("local", tmp_path), tmp_path)


def test_cli_prints_the_carve_note_on_stderr(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scones.cli import main

    store_dir = tmp_path / "cli"
    argv = ["scones", "stage", "--source", str(folder), "--store", str(store_dir)]
    monkey = pytest.MonkeyPatch()
    monkey.setattr("sys.argv", argv)
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        monkey.undo()
    assert exited.value.code in (0, None)
    captured = capsys.readouterr()
    assert "no test.lst" in captured.err and "carved" in captured.err
    assert "train" in captured.out
    assert json.loads((store_dir / "dataset.json").read_text())["totals"]["test"] == 4
    assert open_store(str(store_dir)).exists("test.lst")
