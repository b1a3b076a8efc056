"""The review queue: unsure predictions waiting for a person's label, and every label given.

State lives in the executions database (``settings.db``), in tables of its own; the
executions tables and their schema version are left alone. An image is never copied into the
database: an item names the store (URI) and key it came from, and for a captured request the
line of the capture file. One image (by SHA-256) is one item, however many times it failed
or was captured; ``review_sources`` records each execution or capture record that led to it,
so importing the same one again changes nothing.

Labels are events: relabelling adds one, undo marks the latest one undone, and the item
shows the latest label not undone. Nothing is ever deleted.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scones.errors import SconesError, UsageError

NEITHER = "neither"  # not a vehicle photo: kept apart, never trained on
STATUSES = ("pending", "labelled")
ITEM_ID = re.compile(r"^[0-9a-f]{12}$")
MAX_NOTE_CHARS = 1000
MAX_BY_CHARS = 100
_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_items (
    item_id         TEXT PRIMARY KEY,
    image_sha256    TEXT NOT NULL UNIQUE,
    store_uri       TEXT NOT NULL,
    image_key       TEXT NOT NULL,
    capture_line    INTEGER,
    predicted_class TEXT NOT NULL,
    confidence      REAL NOT NULL,
    margin          REAL NOT NULL,
    threshold       REAL,
    model_version   TEXT NOT NULL DEFAULT '',
    observed_at     TEXT NOT NULL,
    imported_at     TEXT NOT NULL,
    label           TEXT,
    labelled_by     TEXT,
    labelled_at     TEXT,
    note            TEXT
);
CREATE INDEX IF NOT EXISTS review_items_by_use
    ON review_items (label IS NOT NULL, margin, observed_at DESC);
CREATE TABLE IF NOT EXISTS review_sources (
    source   TEXT NOT NULL,
    ref      TEXT NOT NULL,
    item_id  TEXT NOT NULL REFERENCES review_items (item_id),
    added_at TEXT NOT NULL,
    PRIMARY KEY (source, ref)
);
CREATE TABLE IF NOT EXISTS review_labels (
    event_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id     TEXT NOT NULL REFERENCES review_items (item_id),
    label       TEXT NOT NULL,
    labelled_by TEXT NOT NULL,
    labelled_at TEXT NOT NULL,
    note        TEXT,
    undone_at   TEXT,
    undone_by   TEXT
);
CREATE INDEX IF NOT EXISTS review_labels_by_item ON review_labels (item_id, event_id);
"""
_SELECT_ITEMS = (
    "SELECT item_id, image_sha256, store_uri, image_key, capture_line, predicted_class, "
    "confidence, margin, threshold, model_version, observed_at, imported_at, label, "
    "labelled_by, labelled_at, note FROM review_items"
)
_INSERT_ITEM = (
    "INSERT INTO review_items (item_id, image_sha256, store_uri, image_key, capture_line, "
    "predicted_class, confidence, margin, threshold, model_version, observed_at, imported_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_sha256) DO NOTHING"
)
_COUNT_BY_LABEL = "SELECT label, COUNT(*) FROM review_items"


class ReviewError(SconesError):
    """Base of the review errors."""


class ReviewItemNotFoundError(ReviewError):
    """No review item with that key."""

    exit_code = 2


class InvalidReviewInputError(ReviewError, UsageError):
    """A label, key, filter or field that cannot be used; the message names it."""


class AlreadyLabelledError(ReviewError, UsageError):
    """The item has a label; a second one needs ``relabel`` (the first stays in the history)."""


@dataclass(frozen=True)
class ItemCandidate:
    """What an import found: an image the model was unsure about, and where it lies."""

    image_sha256: str
    store_uri: str
    image_key: str
    capture_line: int | None
    predicted_class: str
    confidence: float
    margin: float  # top probability minus the runner-up: 0 is on the decision boundary
    threshold: float | None
    model_version: str
    observed_at: datetime


@dataclass(frozen=True)
class ReviewItem:
    item_id: str
    image_sha256: str
    store_uri: str
    image_key: str
    capture_line: int | None
    predicted_class: str
    confidence: float
    margin: float
    threshold: float | None
    model_version: str
    observed_at: datetime
    imported_at: datetime
    label: str | None
    labelled_by: str | None
    labelled_at: datetime | None
    note: str | None

    @property
    def status(self) -> str:
        return "pending" if self.label is None else "labelled"

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.item_id,
            "status": self.status,
            "predicted_class": self.predicted_class,
            "confidence": self.confidence,
            "margin": self.margin,
            "threshold": self.threshold,
            "model_version": self.model_version,
            "observed_at": iso(self.observed_at),
            "imported_at": iso(self.imported_at),
            "label": self.label,
            "labelled_by": self.labelled_by,
            "labelled_at": iso(self.labelled_at),
            "note": self.note,
            "image": {
                "sha256": self.image_sha256,
                "store": self.store_uri,
                "key": self.image_key,
                "capture_line": self.capture_line,
            },
        }


@dataclass(frozen=True)
class LabelEvent:
    event_id: int
    item_id: str
    label: str
    labelled_by: str
    labelled_at: datetime
    note: str | None
    undone_at: datetime | None
    undone_by: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "by": self.labelled_by,
            "at": iso(self.labelled_at),
            "note": self.note,
            "undone_at": iso(self.undone_at),
            "undone_by": self.undone_by,
        }


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _now() -> datetime:
    return datetime.now(UTC)


def item_id_for(image_sha256: str) -> str:
    """An item's key: the start of its image's SHA-256, so it is the same in every database."""
    return image_sha256[:12]


def check_item_id(key: Any) -> str:
    if not isinstance(key, str) or not ITEM_ID.match(key):
        raise InvalidReviewInputError(
            f"invalid review item key {key!r}: a key is 12 lower-case hex digits "
            "(see `scones review list`)"
        )
    return key


class ReviewQueue:
    """The review tables of one SQLite database; safe to share across threads and processes."""

    def __init__(
        self, db_path: str | os.PathLike[str], *, classes: tuple[str, ...] | list[str]
    ) -> None:
        classes = tuple(classes)
        if len(classes) < 2 or NEITHER in classes or len(set(classes)) != len(classes):
            raise InvalidReviewInputError(
                f"review classes {list(classes)!r}: need two or more distinct names, "
                f"none of them {NEITHER!r}"
            )
        self.classes = classes
        self.labels = (*classes, NEITHER)
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.db_path, check_same_thread=False, timeout=30.0, isolation_level=None
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")  # as the executions store: readers
            self._conn.execute("PRAGMA synchronous=NORMAL")  # never block writers
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ReviewError(f"cannot open the review tables in {self.db_path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ReviewQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- adding -----------------------------------------------------------------------------

    def add(self, candidate: ItemCandidate, *, source: str, ref: str) -> tuple[ReviewItem, bool]:
        """The item for ``candidate`` (created when its image is new); True when created.

        ``source``/``ref`` (``execution``/execution id, ``capture``/event id) is recorded once:
        importing the same execution or capture record again returns its item unchanged.
        """
        if not ref or not source:
            raise InvalidReviewInputError("a review item needs a source and a reference")
        item_id = item_id_for(candidate.image_sha256)
        now = iso(_now())
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                known = self._conn.execute(
                    "SELECT item_id FROM review_sources WHERE source = ? AND ref = ?",
                    (source, ref),
                ).fetchone()
                created = False
                if known is None:
                    created = (
                        self._conn.execute(
                            _INSERT_ITEM,
                            (
                                item_id,
                                candidate.image_sha256,
                                candidate.store_uri,
                                candidate.image_key,
                                candidate.capture_line,
                                candidate.predicted_class,
                                float(candidate.confidence),
                                float(candidate.margin),
                                candidate.threshold,
                                candidate.model_version,
                                iso(candidate.observed_at),
                                now,
                            ),
                        ).rowcount
                        == 1
                    )
                    self._conn.execute(
                        "INSERT INTO review_sources (source, ref, item_id, added_at) "
                        "VALUES (?, ?, ?, ?)",
                        (source, ref, item_id, now),
                    )
                else:
                    item_id = known[0]
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return self.get(item_id), created

    def has_source(self, source: str, ref: str) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM review_sources WHERE source = ? AND ref = ?", (source, ref)
            ).fetchone()
        return row is not None

    def sources(self, item_id: str) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT source, ref FROM review_sources WHERE item_id = ? ORDER BY added_at",
                (check_item_id(item_id),),
            ).fetchall()
        return [(source, ref) for source, ref in rows]

    # --- reading ----------------------------------------------------------------------------

    def get(self, item_id: str) -> ReviewItem:
        check_item_id(item_id)
        with self._lock:
            row = self._conn.execute(_SELECT_ITEMS + " WHERE item_id = ?", (item_id,)).fetchone()
        if row is None:
            raise ReviewItemNotFoundError(f"no review item {item_id!r} in {self.db_path}")
        return _item(row)

    def items(
        self,
        *,
        status: str | None = None,
        model_version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ReviewItem]:
        """Items, most useful first: pending before labelled, then closest to the boundary."""
        where, params = self._filters(status, model_version, since, until)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidReviewInputError(f"invalid limit {limit!r}: must be at least 1")
        with self._lock:
            rows = self._conn.execute(
                _SELECT_ITEMS
                + f" {where} ORDER BY label IS NOT NULL, margin, observed_at DESC, item_id LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_item(row) for row in rows]

    def counts(self, *, model_version: str | None = None) -> dict[str, Any]:
        where, params = self._filters(None, model_version, None, None)
        with self._lock:
            rows = self._conn.execute(
                _COUNT_BY_LABEL + f" {where} GROUP BY label", params
            ).fetchall()
        by_label = {label: count for label, count in rows if label is not None}
        pending = sum(count for label, count in rows if label is None)
        labelled = sum(by_label.values())
        return {
            "total": pending + labelled,
            "pending": pending,
            "labelled": labelled,
            "by_label": by_label,
        }

    def history(self, item_id: str) -> list[LabelEvent]:
        self.get(item_id)  # a clear error for an unknown key
        with self._lock:
            rows = self._conn.execute(
                "SELECT event_id, item_id, label, labelled_by, labelled_at, note, undone_at, "
                "undone_by FROM review_labels WHERE item_id = ? ORDER BY event_id",
                (item_id,),
            ).fetchall()
        return [
            LabelEvent(
                row[0],
                row[1],
                row[2],
                row[3],
                datetime.fromisoformat(row[4]),
                row[5],
                _time(row[6]),
                row[7],
            )
            for row in rows
        ]

    def labelled(self, *, include_neither: bool = False) -> list[ReviewItem]:
        """Every item with a label, oldest label first (a stable order for export)."""
        clause = "label IS NOT NULL" if include_neither else "label IS NOT NULL AND label != ?"
        params: tuple[Any, ...] = () if include_neither else (NEITHER,)
        with self._lock:
            rows = self._conn.execute(
                _SELECT_ITEMS + f" WHERE {clause} ORDER BY labelled_at, item_id",
                params,
            ).fetchall()
        return [_item(row) for row in rows]

    # --- labelling --------------------------------------------------------------------------

    def label(
        self,
        item_id: str,
        label: str,
        *,
        by: str,
        note: str | None = None,
        relabel: bool = False,
        at: datetime | None = None,
    ) -> ReviewItem:
        """Give an item a label; refused for a labelled item unless ``relabel``."""
        check_item_id(item_id)
        if label not in self.labels:
            raise InvalidReviewInputError(
                f"invalid label {label!r} for item {item_id}: one of {', '.join(self.labels)}"
            )
        by = _check_by(by)
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
            raise InvalidReviewInputError(
                f"invalid note for item {item_id}: text of at most {MAX_NOTE_CHARS} characters"
            )
        when = iso(at or _now())
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT label FROM review_items WHERE item_id = ?", (item_id,)
                ).fetchone()
                if row is None:
                    raise ReviewItemNotFoundError(f"no review item {item_id!r} in {self.db_path}")
                if row[0] is not None and not relabel:
                    raise AlreadyLabelledError(
                        f"item {item_id} is already labelled {row[0]!r}; relabel it with "
                        "--relabel (the earlier label stays in its history)"
                    )
                self._conn.execute(
                    "INSERT INTO review_labels (item_id, label, labelled_by, labelled_at, note) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (item_id, label, by, when, note),
                )
                self._conn.execute(
                    "UPDATE review_items SET label = ?, labelled_by = ?, labelled_at = ?, "
                    "note = ? WHERE item_id = ?",
                    (label, by, when, note, item_id),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return self.get(item_id)

    def undo(self, item_id: str, *, by: str, at: datetime | None = None) -> ReviewItem:
        """Withdraw the item's latest label: it shows the one before, or is pending again."""
        check_item_id(item_id)
        by = _check_by(by)
        when = iso(at or _now())
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if (
                    self._conn.execute(
                        "SELECT 1 FROM review_items WHERE item_id = ?", (item_id,)
                    ).fetchone()
                    is None
                ):
                    raise ReviewItemNotFoundError(f"no review item {item_id!r} in {self.db_path}")
                active = self._conn.execute(
                    "SELECT event_id FROM review_labels WHERE item_id = ? AND undone_at IS NULL "
                    "ORDER BY event_id DESC LIMIT 2",
                    (item_id,),
                ).fetchall()
                if not active:
                    raise InvalidReviewInputError(f"item {item_id} has no label to undo")
                self._conn.execute(
                    "UPDATE review_labels SET undone_at = ?, undone_by = ? WHERE event_id = ?",
                    (when, by, active[0][0]),
                )
                previous = None
                if len(active) > 1:
                    previous = self._conn.execute(
                        "SELECT label, labelled_by, labelled_at, note FROM review_labels "
                        "WHERE event_id = ?",
                        (active[1][0],),
                    ).fetchone()
                self._conn.execute(
                    "UPDATE review_items SET label = ?, labelled_by = ?, labelled_at = ?, "
                    "note = ? WHERE item_id = ?",
                    (*(previous or (None, None, None, None)), item_id),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return self.get(item_id)

    # --- helpers ----------------------------------------------------------------------------

    def _filters(
        self,
        status: str | None,
        model_version: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> tuple[str, tuple[Any, ...]]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            if status not in STATUSES:
                raise InvalidReviewInputError(
                    f"invalid review status {status!r}: one of {', '.join(STATUSES)}"
                )
            where.append("label IS NULL" if status == "pending" else "label IS NOT NULL")
        if model_version is not None:
            where.append("model_version = ?")
            params.append(str(model_version))
        for name, moment, operator in (("since", since, ">="), ("until", until, "<=")):
            if moment is None:
                continue
            if moment.tzinfo is None:
                raise InvalidReviewInputError(f"{name}={moment!r} needs a time zone")
            where.append(f"observed_at {operator} ?")
            params.append(iso(moment))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return clause, tuple(params)


def _check_by(by: Any) -> str:
    if not isinstance(by, str) or not by.strip() or len(by) > MAX_BY_CHARS:
        raise InvalidReviewInputError(
            f"invalid reviewer {by!r}: a name of 1-{MAX_BY_CHARS} characters"
        )
    return by.strip()


def _item(row: tuple) -> ReviewItem:
    return ReviewItem(
        item_id=row[0],
        image_sha256=row[1],
        store_uri=row[2],
        image_key=row[3],
        capture_line=row[4],
        predicted_class=row[5],
        confidence=row[6],
        margin=row[7],
        threshold=row[8],
        model_version=row[9],
        observed_at=datetime.fromisoformat(row[10]),
        imported_at=datetime.fromisoformat(row[11]),
        label=row[12],
        labelled_by=row[13],
        labelled_at=_time(row[14]),
        note=row[15],
    )
