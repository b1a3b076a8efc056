"""Turn ``--model REF`` into an extracted model folder the endpoint can load.

The model registry resolves every form of reference (a version number, an alias, a store
URI, a local folder or ``model.tar.gz``); its precedence rules are the contract. The
container entry point, which is handed a folder or archive by SageMaker, unpacks archives
with :func:`extract_to_cache` (keyed by content hash, so a changed archive is never stale).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from scones.errors import SconesError
from scones.model.artifact import MODEL_JSON, extract_artifact
from scones.model.registry import resolve_model
from scones.store import ObjectStore


class ModelReferenceError(SconesError):
    """``--model`` names nothing that can be served."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract_to_cache(archive: Path, cache_dir: Path) -> Path:
    """Unpack ``archive`` under ``cache_dir/serving/<sha256>/`` (atomically, once)."""
    target = cache_dir / "serving" / _sha256(archive)
    if (target / MODEL_JSON).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Extract beside the target and rename, so a concurrent or interrupted run never
    # leaves a half-extracted folder under the final name.
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        extract_artifact(archive, staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / MODEL_JSON).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_dir(
    ref: str, *, store: ObjectStore, cache_dir: Path, s3_endpoint_url: str | None = None
) -> Path:
    """An extracted model folder for ``ref``, by the model registry's rules (version, alias,
    store URI, local folder or archive)."""
    if not ref.strip():
        raise ModelReferenceError("--model is empty: give a version, an alias, a URI or a path")
    return resolve_model(ref, store=store, cache_dir=cache_dir, s3_endpoint_url=s3_endpoint_url)
