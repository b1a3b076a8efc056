"""The local artifacts a deployment uploads: the model tarball and the three function zips.

The model tarball is the registry's own bytes where the reference names a registry version
(so the deployed object has the registry's checksum); zips come from
``scones functions package`` and are reproducible, so their SHA-256 is their identity.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from scones.functions.packaging import FUNCTIONS, package_functions
from scones.model.artifact import ModelCard, pack_artifact, read_card
from scones.model.registry import (
    ALIAS_PATTERN,
    MAX_ARTIFACT_BYTES,
    ModelNotFoundError,
    artifact_key,
    read_aliases,
    resolve_model,
)
from scones.store import ObjectNotFoundError, ObjectStore, open_store

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ModelTarball:
    path: Path
    sha256: str
    size: int
    card: ModelCard
    model_name: str
    version: str  # the registry version, else the card's, else "sha-<hash>"


@dataclass(frozen=True)
class FunctionZip:
    module: str
    path: Path
    sha256_hex: str
    code_sha256: str  # base64 of the raw digest, as Lambda reports CodeSha256

    @property
    def handler(self) -> str:
        return f"{self.module}.handler"


def _copy_hashing(source: BinaryIO, target: Path, what: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    total = 0
    with target.open("wb") as out:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            total += len(chunk)
            if total > MAX_ARTIFACT_BYTES:
                raise ModelNotFoundError(f"{what} is over the {MAX_ARTIFACT_BYTES} byte limit")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest(), total


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _registry_version(store: ObjectStore, name: str, ref: str) -> int | None:
    if ref.isdigit():
        return int(ref)
    if ALIAS_PATTERN.match(ref) and not Path(ref).exists():
        return read_aliases(store, name).get(ref)
    return None


def model_tarball(
    ref: str,
    *,
    store: ObjectStore,
    default_name: str,
    cache_dir: Path,
    work_dir: Path,
    s3_endpoint_url: str | None = None,
) -> ModelTarball:
    """The tarball ``ref`` names (a registry version or alias, a URI, a file or a folder)."""
    ref = ref.strip()
    name = default_name
    if "://" not in ref and ":" in ref and not Path(ref).exists():
        name, _, ref = ref.partition(":")
    target = work_dir / "model.tar.gz"
    version = _registry_version(store, name, ref) if ref else None
    if version is not None:
        key = artifact_key(name, version)
        try:
            source = store.open(key)
        except ObjectNotFoundError:
            raise ModelNotFoundError(
                f"--model {ref!r}: model {name!r} has no version {version} in {store.uri}"
            ) from None
        with source:
            sha, size = _copy_hashing(source, target, store.uri_for(key))
    elif "://" in ref:
        head, _, tail = ref.rstrip("/").rpartition("/")
        source_store = open_store(head, s3_endpoint_url=s3_endpoint_url)
        try:
            stream = source_store.open(tail)
        except ObjectNotFoundError:
            raise ModelNotFoundError(f"--model {ref!r}: no such object") from None
        with stream:
            sha, size = _copy_hashing(stream, target, ref)
    elif ref and Path(ref).expanduser().is_file():
        with Path(ref).expanduser().open("rb") as stream:
            sha, size = _copy_hashing(stream, target, ref)
    elif ref and Path(ref).expanduser().is_dir():
        read_card(Path(ref).expanduser())
        pack_artifact(Path(ref).expanduser(), target)
        sha, size = file_sha256(target), target.stat().st_size
    else:
        # Not a registry version, URI or path: the registry's own error names what is missing.
        resolve_model(ref, store=store, cache_dir=cache_dir, name=name)
        raise ModelNotFoundError(f"--model {ref!r} does not name a model artifact")
    # Extracting checks the artifact (model.json, model.onnx) before anything is uploaded.
    card = read_card(resolve_model(str(target), store=store, cache_dir=cache_dir))
    if version is None:
        version = card.version
    shown = str(version) if version is not None else f"sha-{sha[:12]}"
    return ModelTarball(target, sha, size, card, name, shown)


def function_zips(work_dir: Path) -> dict[str, FunctionZip]:
    """module -> its zip, freshly packaged into ``work_dir``."""
    out = work_dir / "functions"
    if out.exists():
        shutil.rmtree(out)
    zips = {}
    for package in package_functions(out):
        digest = hashlib.sha256(package.path.read_bytes()).digest()
        zips[package.module] = FunctionZip(
            package.module, package.path, digest.hex(), base64.b64encode(digest).decode("ascii")
        )
    assert set(zips) == set(FUNCTIONS)
    return zips
