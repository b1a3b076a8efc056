"""Turn ``--model REF`` into an extracted model folder the endpoint can load.

A local extracted folder is used in place; a local ``model.tar.gz`` is unpacked once into
the cache (keyed by its content hash, so a changed archive is never served stale); anything
else (a version number, an alias, a store URI) goes to the model registry, which in fact
resolves every form when it is installed (its precedence rules are the contract).
"""

from __future__ import annotations

from pathlib import Path

from scones.errors import SconesError
from scones.model.artifact import MODEL_JSON
from scones.model.registry import extract_to_cache
from scones.store import ObjectStore


class ModelReferenceError(SconesError):
    """``--model`` names nothing that can be served."""


def resolve_model_dir(
    ref: str, *, store: ObjectStore, cache_dir: Path, s3_endpoint_url: str | None = None
) -> Path:
    """An extracted model folder for ``ref``: the model registry's rules (version, store URI,
    local path, alias). Without the registry module, local folders and archives still work."""
    if not ref.strip():
        raise ModelReferenceError("--model is empty: give a version, an alias, a URI or a path")
    try:
        from scones.model.registry import resolve_model
    except ImportError:  # a serving-only install without the registry module
        return _resolve_local(ref, cache_dir)
    return resolve_model(ref, store=store, cache_dir=cache_dir, s3_endpoint_url=s3_endpoint_url)


def _resolve_local(ref: str, cache_dir: Path) -> Path:
    local = Path(ref).expanduser()
    if local.is_dir():
        if not (local / MODEL_JSON).is_file():
            raise ModelReferenceError(
                f"--model {ref!r}: the folder {local} is not an extracted model "
                f"(it has no {MODEL_JSON})"
            )
        return local.resolve()
    if local.is_file():
        return extract_to_cache(local.resolve(), cache_dir)
    raise ModelReferenceError(
        f"--model {ref!r} is not a local model folder or model.tar.gz, and the model "
        "registry is not available in this installation"
    )
