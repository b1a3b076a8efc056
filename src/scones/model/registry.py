"""The model registry in the object store, and model references (``REF``) everywhere.

Layout::

    models/<name>/<version>/model.tar.gz     versions 1, 2, 3, ... never overwritten
    models/<name>/aliases.json               {"production": 3}

A ``REF`` is, in this order of precedence:

1. a version number (``3``) of the configured model name;
2. a store URI of an artifact (``s3://b/models/vehicle-classifier/3/model.tar.gz``,
   ``file:///abs/model.tar.gz``);
3. a local path to a ``model.tar.gz`` or to an extracted model folder;
4. an alias (``production``).

``name:REF`` picks another model name (``vehicle-classifier:production``). Archives are
extracted once into ``cache_dir``, keyed by their SHA-256, and never modified afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from scones.errors import SconesError
from scones.model.artifact import (
    MODEL_JSON,
    MODEL_ONNX,
    ArtifactError,
    ModelCard,
    OnnxClassifier,
    extract_artifact,
    pack_artifact,
    read_card,
)
from scones.store import ObjectNotFoundError, ObjectStore, join_key, open_store

MODELS_PREFIX = "models"
ARTIFACT_FILE = "model.tar.gz"
ALIASES_JSON = "aliases.json"
DEFAULT_ALIAS = "production"
MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")  # never all digits: those are versions
MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024
COPY_CHUNK = 1024 * 1024


class ModelNotFoundError(SconesError):
    """A model reference that names nothing: no such version, alias, file or object."""


class RegistryError(SconesError):
    """The registry cannot do what was asked (bad name, bad alias, broken aliases.json)."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: where its artifact is, how big, when, and its aliases."""

    name: str
    version: int
    uri: str
    size: int
    registered_at: datetime
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready row (`scones models list --json`)."""
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "size": self.size,
            "registered_at": self.registered_at.isoformat(),
            "aliases": list(self.aliases),
        }


def check_model_name(name: str) -> str:
    if not MODEL_NAME_PATTERN.match(name):
        raise RegistryError(
            f"model name {name!r} is not valid: use lower-case letters, digits, '.', '_', '-'"
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS_PATTERN.match(alias):
        raise RegistryError(
            f"alias {alias!r} is not valid: start with a letter, then letters, digits, '_', '-'"
        )
    return alias


def artifact_key(name: str, version: int) -> str:
    return join_key(MODELS_PREFIX, check_model_name(name), str(version), ARTIFACT_FILE)


def aliases_key(name: str) -> str:
    return join_key(MODELS_PREFIX, check_model_name(name), ALIASES_JSON)


def read_aliases(store: ObjectStore, name: str) -> dict[str, int]:
    key = aliases_key(name)
    try:
        data = json.loads(store.get_text(key))
    except ObjectNotFoundError:
        return {}
    except ValueError as exc:
        raise RegistryError(f"{store.uri_for(key)} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in data.items()
    ):
        raise RegistryError(f"{store.uri_for(key)} must map alias names to version numbers")
    return data


def has_registry(store: ObjectStore, name: str) -> bool:
    """Whether ``store`` holds any version or alias of model ``name``."""
    prefix = join_key(MODELS_PREFIX, check_model_name(name)) + "/"
    return next(iter(store.keys(prefix)), None) is not None


def registry_store_for(
    data: ObjectStore | None, configured: ObjectStore, name: str, *, configured_is_explicit: bool
) -> ObjectStore:
    """The store whose registry resolves model references when evaluating ``data``.

    A store chosen explicitly always wins. Otherwise the data's own store, when it holds a
    registry of ``name``: `scones train --store S` registers into S, so evaluating S needs
    no second ``--store S``. Else the configured store.
    """
    if configured_is_explicit or data is None:
        return configured
    return data if has_registry(data, name) else configured


def list_versions(store: ObjectStore, name: str) -> list[ModelVersion]:
    """Every registered version of ``name``, oldest first, with the aliases pointing at it."""
    prefix = join_key(MODELS_PREFIX, check_model_name(name)) + "/"
    aliases = read_aliases(store, name)
    versions = []
    for info in store.list(prefix):
        parts = info.key[len(prefix) :].split("/")
        if len(parts) == 2 and parts[1] == ARTIFACT_FILE and parts[0].isdigit():
            version = int(parts[0])
            pointing = tuple(sorted(a for a, v in aliases.items() if v == version))
            versions.append(
                ModelVersion(
                    name,
                    version,
                    store.uri_for(info.key),
                    info.size,
                    info.last_modified,
                    pointing,
                )
            )
    return sorted(versions, key=lambda v: v.version)


def register(store: ObjectStore, model_dir: Path, name: str) -> ModelVersion:
    """Upload an extracted model folder as the next version of ``name``.

    The folder is checked first (``model.json`` against the ONNX graph), so a broken artifact
    never enters the registry. ``model.json`` records the assigned name and version.
    """
    check_model_name(name)
    OnnxClassifier(model_dir)  # raises ArtifactError on any inconsistency
    card = read_card(model_dir)
    existing = list_versions(store, name)
    version = (existing[-1].version if existing else 0) + 1
    with tempfile.TemporaryDirectory(prefix="scones-register-") as tmp:
        staging = Path(tmp) / "model"
        shutil.copytree(model_dir, staging)
        while store.exists(artifact_key(name, version)):  # another writer got there first
            version += 1
        card = card.model_copy(update={"name": name, "version": version})
        (staging / MODEL_JSON).write_text(card.model_dump_json(indent=2))
        archive = pack_artifact(staging, Path(tmp) / ARTIFACT_FILE)
        key = artifact_key(name, version)
        with archive.open("rb") as stream:
            store.put_stream(key, stream, content_type="application/gzip")
        size = archive.stat().st_size
    info = store.head(key)
    return ModelVersion(name, version, store.uri_for(key), size, info.last_modified)


def promote(store: ObjectStore, name: str, version: int, alias: str = DEFAULT_ALIAS) -> int | None:
    """Point ``alias`` at ``version``; returns the version it pointed at before (or None)."""
    check_alias(alias)
    if not store.exists(artifact_key(name, version)):
        known = [v.version for v in list_versions(store, name)]
        raise ModelNotFoundError(
            f"model {name!r} has no version {version} in {store.uri} (versions: {known or 'none'})"
        )
    aliases = read_aliases(store, name)
    previous = aliases.get(alias)
    aliases[alias] = version
    store.put_text(
        aliases_key(name),
        json.dumps(aliases, indent=2, sort_keys=True) + "\n",
        content_type="application/json",
    )
    return previous


# --- resolving references ---------------------------------------------------------------


def extract_to_cache(archive: Path, cache_dir: Path, *, digest: str | None = None) -> Path:
    """The one extraction cache: ``archive`` unpacked once into ``cache_dir/models/<sha256>``.

    Keyed by content, so a changed archive is never served stale; extracted beside the
    target and renamed, so a concurrent or interrupted run never leaves a half-extracted
    folder under the final name. ``digest`` is the archive's SHA-256 when already known.
    """
    if digest is None:
        digest = artifact_file_sha256(archive)
    target = cache_dir / "models" / digest[:32]
    if (target / MODEL_JSON).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        extract_artifact(archive, scratch)
        read_card(scratch)  # a model.json that is missing or malformed fails here
        if not (scratch / MODEL_ONNX).is_file():
            raise ArtifactError(f"{archive} has no {MODEL_ONNX}")
        try:
            os.replace(scratch, target)
        except OSError:
            if not (target / MODEL_JSON).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def artifact_file_sha256(path: Path) -> str:
    """The hex SHA-256 of an artifact file (an archive, a model graph), refused when over the
    artifact size limit."""
    size = path.stat().st_size
    if size > MAX_ARTIFACT_BYTES:
        raise ArtifactError(f"{path} is {size} bytes, over the {MAX_ARTIFACT_BYTES} limit")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(COPY_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _resolve_store_object(store: ObjectStore, key: str, ref: str, cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".tar.gz", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            digest = hashlib.sha256()
            total = 0
            try:
                source = store.open(key)
            except ObjectNotFoundError:
                raise ModelNotFoundError(
                    f"model reference {ref!r}: no object {store.uri_for(key)}"
                ) from None
            with source:
                for chunk in iter(lambda: source.read(COPY_CHUNK), b""):
                    total += len(chunk)
                    if total > MAX_ARTIFACT_BYTES:
                        raise ArtifactError(
                            f"{store.uri_for(key)} is over the {MAX_ARTIFACT_BYTES} byte limit"
                        )
                    digest.update(chunk)
                    tmp.write(chunk)
            tmp.flush()
            return extract_to_cache(tmp_path, cache_dir, digest=digest.hexdigest())
        finally:
            tmp_path.unlink(missing_ok=True)


def _resolve_uri(ref: str, cache_dir: Path, s3_endpoint_url: str | None) -> Path:
    head, _, tail = ref.rstrip("/").rpartition("/")
    if not tail or head.endswith("/") or head.endswith(":"):
        raise ModelNotFoundError(f"model reference {ref!r} does not name an artifact object")
    store = open_store(head, s3_endpoint_url=s3_endpoint_url)
    return _resolve_store_object(store, tail, ref, cache_dir)


def resolve_model(
    ref: str,
    *,
    store: ObjectStore,
    cache_dir: Path,
    name: str | None = None,
    s3_endpoint_url: str | None = None,
) -> Path:
    """An extracted model folder for ``ref`` (see the module docstring for the forms)."""
    from scones.settings import get_settings

    ref = ref.strip()
    if not ref:
        raise ModelNotFoundError("empty model reference: give a version, alias, URI or path")
    settings = get_settings()
    name = name or settings.model_name
    endpoint = s3_endpoint_url or settings.s3_endpoint_url
    if "://" not in ref and ":" in ref and not Path(ref).exists():
        name, _, ref = ref.partition(":")
    if ref.isdigit():
        version = int(ref)
        key = artifact_key(name, version)
        if not store.exists(key):
            known = [v.version for v in list_versions(store, name)]
            raise ModelNotFoundError(
                f"model reference {ref!r}: model {name!r} has no version {version} in "
                f"{store.uri} (versions: {known or 'none'})"
            )
        return _resolve_store_object(store, key, ref, cache_dir)
    if "://" in ref:
        return _resolve_uri(ref, cache_dir, endpoint)
    path = Path(ref).expanduser()
    if path.is_dir():
        read_card(path)
        return path.resolve()
    if path.is_file():
        return extract_to_cache(path, cache_dir)
    if ALIAS_PATTERN.match(ref):
        aliases = read_aliases(store, name)
        if ref in aliases:
            return resolve_model(str(aliases[ref]), store=store, cache_dir=cache_dir, name=name)
        raise ModelNotFoundError(
            f"model reference {ref!r}: not a version, path or URI, and model {name!r} has no "
            f"alias {ref!r} in {store.uri} (aliases: {sorted(aliases) or 'none'})"
        )
    raise ModelNotFoundError(
        f"model reference {ref!r} does not resolve: no such file or folder, and it is not a "
        "version, alias or store URI"
    )


def describe(model_dir: Path) -> ModelCard:
    """The card of a resolved model (for `scones models show`)."""
    return read_card(model_dir)
