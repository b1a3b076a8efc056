"""Turn ``--model REF`` into an extracted model folder the endpoint can load.

The model registry resolves every form of reference (a version number, an alias, a store
URI, a local folder or ``model.tar.gz``); its precedence rules are the contract. Archives
are unpacked once into the cache, keyed by content hash, so a changed one is never stale.
"""

from __future__ import annotations

from pathlib import Path

from scones.errors import SconesError
from scones.model.registry import resolve_model
from scones.store import ObjectStore


class ModelReferenceError(SconesError):
    """``--model`` names nothing that can be served."""


def resolve_model_dir(
    ref: str, *, store: ObjectStore, cache_dir: Path, s3_endpoint_url: str | None = None
) -> Path:
    """An extracted model folder for ``ref``, by the model registry's rules (version, alias,
    store URI, local folder or archive)."""
    if not ref.strip():
        raise ModelReferenceError("--model is empty: give a version, an alias, a URI or a path")
    return resolve_model(ref, store=store, cache_dir=cache_dir, s3_endpoint_url=s3_endpoint_url)
