"""The registry: versions, aliases, and every form of model reference, locally and on S3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_tiny_model
from scones.model.artifact import MODEL_JSON, ArtifactError, pack_artifact, read_card
from scones.model.registry import (
    ModelNotFoundError,
    RegistryError,
    list_versions,
    promote,
    read_aliases,
    register,
    resolve_model,
)
from scones.store import open_store

NAME = "vehicle-classifier"


def test_register_assigns_increasing_versions_and_records_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    store = open_store(str(tmp_path / "store"))
    first = register(store, tiny_model_dir, NAME)
    second = register(store, tiny_model_dir, NAME)
    assert (first.version, second.version) == (1, 2)
    assert second.uri.endswith("models/vehicle-classifier/2/model.tar.gz")
    assert [v.version for v in list_versions(store, NAME)] == [1, 2]
    resolved = resolve_model("2", store=store, cache_dir=tmp_path / "cache")
    card = read_card(resolved)
    assert (card.name, card.version) == (NAME, 2)
    assert read_card(tiny_model_dir).version == 1  # the source folder is left alone


def test_promote_moves_the_alias(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    register(store, tiny_model_dir, NAME)
    register(store, tiny_model_dir, NAME)
    assert promote(store, NAME, 1) is None
    assert promote(store, NAME, 2) == 1
    assert read_aliases(store, NAME) == {"production": 2}
    assert [v.aliases for v in list_versions(store, NAME)] == [(), ("production",)]
    model_dir = resolve_model("production", store=store, cache_dir=tmp_path / "cache")
    assert read_card(model_dir).version == 2
    with pytest.raises(ModelNotFoundError, match=r"has no version 9 .*versions: \[1, 2\]"):
        promote(store, NAME, 9)
    with pytest.raises(RegistryError, match="alias '7up'"):
        promote(store, NAME, 1, alias="7up")


def test_every_reference_form_resolves(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    register(store, tiny_model_dir, NAME)
    cache = tmp_path / "cache"
    archive = pack_artifact(tiny_model_dir, tmp_path / "local" / "model.tar.gz")
    uri = store.uri_for("models/vehicle-classifier/1/model.tar.gz")
    for ref in ("1", uri, str(archive), str(tiny_model_dir), f"{NAME}:1"):
        model_dir = resolve_model(ref, store=store, cache_dir=cache)
        assert read_card(model_dir).class_names == ["bicycle", "motorcycle"], ref
    # The same archive bytes extract once.
    assert resolve_model("1", store=store, cache_dir=cache) == resolve_model(
        uri, store=store, cache_dir=cache
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("7", "has no version 7"),
        ("staging", "has no alias 'staging'"),
        ("./no/such/model.tar.gz", "does not resolve"),
        ("file:///no/such/dir/model.tar.gz", "no object"),
        ("", "empty model reference"),
    ],
)
def test_unresolvable_references_are_named(
    ref: str, message: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    store = open_store(str(tmp_path / "store"))
    register(store, tiny_model_dir, NAME)
    with pytest.raises(ModelNotFoundError, match=message):
        resolve_model(ref, store=store, cache_dir=tmp_path / "cache")


def test_artifact_without_model_json_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "nojson"))
    (folder / MODEL_JSON).unlink()
    archive = pack_artifact(folder, tmp_path / "model.tar.gz")
    with pytest.raises(ArtifactError, match=r"no model\.json"):
        resolve_model(str(archive), store=open_store(str(tmp_path / "s")), cache_dir=tmp_path / "c")
    with pytest.raises(ArtifactError, match=r"no model\.json"):
        register(open_store(str(tmp_path / "s")), folder, NAME)
    assert not (tmp_path / "s" / "models").exists()


def test_inconsistent_artifact_is_not_registered(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "m")
    card = json.loads((folder / MODEL_JSON).read_text())
    card["input_shape"] = [3, 64, 64]
    (folder / MODEL_JSON).write_text(json.dumps(card))
    store = open_store(str(tmp_path / "s"))
    with pytest.raises(ArtifactError, match="input_shape"):
        register(store, folder, NAME)
    assert list_versions(store, NAME) == []


def test_registry_on_s3(tiny_model_dir: Path, s3_bucket: str, tmp_path: Path) -> None:
    store = open_store(f"s3://{s3_bucket}/scones")
    version = register(store, tiny_model_dir, NAME)
    promote(store, NAME, version.version)
    cache = tmp_path / "cache"
    by_alias = resolve_model("production", store=store, cache_dir=cache)
    uri = f"s3://{s3_bucket}/scones/models/{NAME}/1/model.tar.gz"
    by_uri = resolve_model(uri, store=store, cache_dir=cache)
    assert by_alias == by_uri and read_card(by_uri).version == 1


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scones.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_models_list_show_promote(tiny_model_dir: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store = open_store(str(store_dir))
    register(store, tiny_model_dir, NAME)
    register(store, tiny_model_dir, NAME)
    promoted = run_cli("models", "promote", "2", "--store", str(store_dir))
    assert promoted.returncode == 0, promoted.stderr
    listed = run_cli("models", "list", "--json", "--store", str(store_dir))
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["version"], r["aliases"]) for r in rows] == [(1, []), (2, ["production"])]
    shown = run_cli("models", "show", "production", "--store", str(store_dir))
    assert json.loads(shown.stdout)["version"] == 2
    missing = run_cli("models", "show", "nightly", "--store", str(store_dir))
    assert missing.returncode != 0
    assert "has no alias 'nightly'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
