"""What the ``scones review`` commands do, one function each: open the queue, act, close.

Also the hook that `scones run` and `scones watch` give the workflow, so threshold failures
become review items as their executions finish.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from scones.errors import SconesError
from scones.model.dataset import AddedImages
from scones.review.export import ExportReport, export_layout, reviewed_for_training
from scones.review.images import ItemImages
from scones.review.queue import LabelEvent, ReviewItem, ReviewQueue
from scones.review.sources import SyncReport, add_execution, sync_capture, sync_executions
from scones.store import ObjectStore, open_store
from scones.workflow.executions import ExecutionRecord, ExecutionStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewConfig:
    """Where the queue is and what it labels: the executions database and the classes."""

    db_path: Path
    classes: tuple[str, ...]
    s3_endpoint_url: str | None = None

    def open(self) -> ReviewQueue:
        return ReviewQueue(self.db_path, classes=self.classes)


def list_items(
    config: ReviewConfig,
    *,
    status: str | None = None,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> tuple[list[ReviewItem], dict[str, Any]]:
    """Items most useful first, and the queue's counts."""
    with config.open() as queue:
        found = queue.items(
            status=status, model_version=model_version, since=since, until=until, limit=limit
        )
        return found, queue.counts()


@dataclass(frozen=True)
class ItemDetail:
    item: ReviewItem
    history: list[LabelEvent]
    sources: list[tuple[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.item.as_dict(),
            "history": [event.as_dict() for event in self.history],
            "sources": [{"source": source, "ref": ref} for source, ref in self.sources],
        }


def show_item(config: ReviewConfig, key: str) -> ItemDetail:
    with config.open() as queue:
        item = queue.get(key)
        return ItemDetail(item, queue.history(key), queue.sources(key))


def label_item(
    config: ReviewConfig,
    key: str,
    label: str,
    *,
    by: str,
    note: str | None = None,
    relabel: bool = False,
) -> ReviewItem:
    with config.open() as queue:
        return queue.label(key, label, by=by, note=note, relabel=relabel)


def undo_label(config: ReviewConfig, key: str, *, by: str) -> ReviewItem:
    with config.open() as queue:
        return queue.undo(key, by=by)


def export_items(config: ReviewConfig, out_dir: Path) -> ExportReport:
    with config.open() as queue:
        return export_layout(queue, ItemImages(s3_endpoint_url=config.s3_endpoint_url), out_dir)


def reviewed_training_images(
    config: ReviewConfig, store: ObjectStore, prefix: str = ""
) -> AddedImages:
    """Labelled items (not neither, not already in the layout) for `train --include-reviewed`."""
    with config.open() as queue:
        return reviewed_for_training(
            queue, ItemImages(s3_endpoint_url=config.s3_endpoint_url), store, prefix
        )


def endpoint_model_version(endpoint_url: str, timeout: float = 5.0) -> str:
    """The served model's version from ``GET /info``; empty when the endpoint does not say."""
    if not endpoint_url.startswith(("http://", "https://")):
        return ""
    try:
        with urllib.request.urlopen(  # noqa: S310 - an http(s) URL, checked above
            endpoint_url.rstrip("/") + "/info", timeout=timeout
        ) as response:
            version = json.loads(response.read(1024 * 1024)).get("model_version")
    except (OSError, ValueError, AttributeError):
        return ""
    return "" if version is None else str(version)


@dataclass(frozen=True)
class SyncRequest:
    """Where `scones review sync` looks: the executions, the images' store, the capture."""

    store_uri: str
    capture_uri: str | None
    endpoint_name: str | None
    threshold: float
    model_version: str = ""
    since: datetime | None = None


def sync_review(config: ReviewConfig, request: SyncRequest) -> SyncReport:
    """Backfill the queue from every threshold failure and captured request under it."""
    endpoint = config.s3_endpoint_url
    with config.open() as queue:
        report = SyncReport()
        if config.db_path.is_file():
            with ExecutionStore(config.db_path) as executions:
                sync_executions(
                    queue,
                    executions,
                    open_store(request.store_uri, s3_endpoint_url=endpoint),
                    model_version=request.model_version,
                    since=request.since,
                    report=report,
                )
        if request.capture_uri:
            sync_capture(
                queue,
                open_store(request.capture_uri, s3_endpoint_url=endpoint),
                endpoint_name=request.endpoint_name,
                threshold=request.threshold,
                model_version=request.model_version,
                since=request.since,
                report=report,
            )
        return report


class ReviewHook:
    """Called with each finished execution: a threshold failure becomes a review item.

    A failure to add one is logged, never raised: reviewing is a side job of routing.
    """

    def __init__(self, config: ReviewConfig, image_store: ObjectStore, model_version: str):
        self.queue = config.open()
        self.image_store = image_store
        self.model_version = model_version
        self.report = SyncReport()

    def __call__(self, record: ExecutionRecord) -> None:
        try:
            add_execution(
                self.queue,
                record,
                self.image_store,
                model_version=self.model_version,
                report=self.report,
            )
        except SconesError as exc:
            log.warning("execution %s not added for review: %s", record.execution_id, exc)

    def close(self) -> None:
        self.queue.close()

    def __enter__(self) -> ReviewHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def review_hook(config: ReviewConfig, store_uri: str, endpoint_url: str) -> ReviewHook:
    """The hook for `scones run` / `scones watch`: images in ``store_uri``, the version of
    the model the endpoint serves."""
    return ReviewHook(
        config,
        open_store(store_uri, s3_endpoint_url=config.s3_endpoint_url),
        endpoint_model_version(endpoint_url),
    )
