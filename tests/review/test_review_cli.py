"""`scones review ...` from the command line: listing, labelling, export and bad input."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from review_helpers import SCONES, queue_with_photos


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    queue_with_photos(home / "scones.db", home / "store", 4).close()
    return home


def scones(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    return subprocess.run([SCONES, *args], capture_output=True, text=True, env=env, timeout=120)


def keys(home: Path) -> list[str]:
    result = scones(home, "review", "list", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["key"] for line in result.stdout.splitlines()]


def test_list_label_show_and_export(home: Path, tmp_path: Path) -> None:
    first, second, *_ = keys(home)
    labelled = scones(home, "review", "label", first, "motorcycle", "--by", "ana", "--note", "x")
    assert labelled.returncode == 0 and "labelled\tmotorcycle" in labelled.stdout
    assert scones(home, "review", "label", second, "neither").returncode == 0
    table = scones(home, "review", "list", "--status", "pending")
    assert "2 pending, 2 labelled" in table.stdout
    shown = json.loads(scones(home, "review", "show", first).stdout)
    assert shown["history"][0]["by"] == "ana" and shown["sources"][0]["source"] == "execution"
    export = scones(home, "review", "export", "--out", str(tmp_path / "out"))
    assert export.returncode == 0 and "exported 1 images" in export.stdout
    assert (tmp_path / "out" / "train.lst").read_text().count("\n") == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("label", "0123456789ab", "bicycle"), 2, "no review item '0123456789ab'"),
        (("label", "../../etc", "bicycle"), 2, "invalid review item key '../../etc'"),
        (("label", "{key}", "truck"), 2, "invalid label 'truck'"),
        (("undo", "{key}"), 2, "has no label to undo"),
        (("list", "--status", "done"), 2, "invalid review status 'done'"),
        (("list", "--since", "yesterday"), 2, "--since 'yesterday' is not a time"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_non_zero_exit(home: Path, args, code, message):
    key = keys(home)[0]
    result = scones(home, "review", *(arg.format(key=key) for arg in args))
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "0 labelled" in scones(home, "review", "list").stdout


def test_export_into_a_non_empty_folder_is_refused(home: Path, tmp_path: Path) -> None:
    key = keys(home)[0]
    assert scones(home, "review", "label", key, "bicycle").returncode == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    result = scones(home, "review", "export", "--out", str(busy))
    assert result.returncode == 1 and "is not an empty folder" in result.stderr
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
