"""What `scones train` does: train on a staged layout, register the artifact, maybe promote it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scones.model.artifact import ModelCard
from scones.model.dataset import AddedImages
from scones.model.registry import ModelVersion, promote, register
from scones.model.train import EpochReport, TrainConfig, train_model
from scones.store import ObjectStore


@dataclass(frozen=True)
class PublishedModel:
    """A trained model's card and metrics, the registry version it became, the alias moved."""

    card: ModelCard
    metrics: dict[str, Any]
    registered: ModelVersion
    kept_dir: Path | None = None  # the extracted folder, when asked to keep one
    promoted_alias: str | None = None
    previous_version: int | None = None  # what the alias pointed at before


def train_and_register(
    store: ObjectStore,
    config: TrainConfig,
    *,
    name: str,
    prefix: str = "",
    keep_dir: Path | None = None,
    promote_to: str | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    added: AddedImages | None = None,
    teacher_dir: Path | None = None,
) -> PublishedModel:
    """Train on the layout under ``prefix``, register the result as the next version of ``name``.

    ``keep_dir`` also keeps a copy of the extracted model folder; ``promote_to`` points that
    alias (``production``) at the new version once it is registered. ``added`` images
    (reviewed photos) join the training split only. ``teacher_dir`` is the resolved model of
    ``config.teacher`` (distillation).
    """
    with tempfile.TemporaryDirectory(prefix="scones-train-") as tmp:
        trained = train_model(
            store,
            config,
            Path(tmp) / "model",
            name=name,
            prefix=prefix,
            on_epoch=on_epoch,
            added=added,
            teacher_dir=teacher_dir,
        )
        registered = register(store, trained.model_dir, name)
        if keep_dir is not None:
            shutil.copytree(trained.model_dir, keep_dir, dirs_exist_ok=True)
    published = PublishedModel(trained.card, trained.metrics, registered, keep_dir)
    if promote_to is None:
        return published
    previous = promote(store, name, registered.version, promote_to)
    return replace(published, promoted_alias=promote_to, previous_version=previous)
