"""`scones watch`: the S3 event trigger of the AWS design, for any store.

Every new object under a prefix starts exactly one workflow execution. The execution is
named from the key and the object's ETag (content MD5), so:

- a restart never runs an object twice: seen objects are recorded in SQLite before their
  execution starts, and a start by the same name is idempotent in the execution store;
- an object that arrived while the watcher was down is found by the first scan;
- the same key rewritten with new content is a new object and runs again;
- an object whose execution could not even start (the execution store busy, say) stays
  unfinished and is retried with exponential backoff (1 s doubling to 5 min by default),
  on a later scan or at once after a restart; it is never dropped, and an object that
  always fails costs one attempt per backoff period, not a busy loop.

S3 stores are polled. On a local store, filesystem notifications (watchdog) wake the
scan at once, and polling remains as the safety net. A local file counts only once it
has stopped changing for ``settle_seconds``, so a file still being copied in is not read
half-written.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scones.store import ObjectInfo, ObjectStore, validate_prefix

log = logging.getLogger(__name__)

# AWS execution names: 1-80 characters of letters, digits, '-' and '_'.
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS watched_objects (
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    execution_name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('submitted', 'done')),
    result TEXT,
    seen_at TEXT NOT NULL,
    done_at TEXT,
    PRIMARY KEY (key, etag)
)
"""
# Added after the first release: a database written before them gains them on open.
_RETRY_COLUMNS = {
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "last_error": "TEXT",
}

# run_execution(name, event) -> the execution's final status (SUCCEEDED, FAILED, ...)
RunExecution = Callable[[str, dict[str, Any]], str]


def execution_name_for(key: str, etag: str) -> str:
    """A valid, deterministic execution name for one version of one object."""
    digest = hashlib.sha256(f"{key}\x00{etag}".encode()).hexdigest()[:16]
    readable = _NAME_UNSAFE.sub("-", key.rsplit("/", 1)[-1]).strip("-")[:50] or "object"
    return f"{readable}-{digest}"


@dataclass(frozen=True)
class WatchedObject:
    key: str
    etag: str
    execution_name: str
    # Failed starts so far: not part of the object's identity.
    attempts: int = field(default=0, compare=False)


class SeenObjects:
    """The watcher's memory, in SQLite: which object versions were submitted or done."""

    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(watched_objects)")}
        for column, declaration in _RETRY_COLUMNS.items():
            if column not in columns:
                self._db.execute(f"ALTER TABLE watched_objects ADD COLUMN {column} {declaration}")
        self._lock = threading.Lock()

    def claim(self, key: str, etag: str) -> WatchedObject | None:
        """Record a new object version; None when it was seen before."""
        name = execution_name_for(key, etag)
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO watched_objects (key, etag, execution_name, state, seen_at)"
                " VALUES (?, ?, ?, 'submitted', ?)",
                (key, etag, name, _now()),
            )
        return WatchedObject(key, etag, name) if cursor.rowcount == 1 else None

    def unfinished(self) -> list[WatchedObject]:
        """Submitted but not done: interrupted by a stop or a crash; resumed by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, etag, execution_name, attempts FROM watched_objects"
                " WHERE state = 'submitted' ORDER BY seen_at"
            ).fetchall()
        return [WatchedObject(*row) for row in rows]

    def record_failure(self, item: WatchedObject, attempts: int, error: str) -> None:
        """The object stays unfinished (retried later); keep why, and how often, it failed."""
        with self._lock:
            self._db.execute(
                "UPDATE watched_objects SET attempts = ?, last_error = ?"
                " WHERE key = ? AND etag = ?",
                (attempts, error, item.key, item.etag),
            )

    def finish(self, item: WatchedObject, result: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE watched_objects SET state = 'done', result = ?, done_at = ?"
                " WHERE key = ? AND etag = ?",
                (result, _now(), item.key, item.etag),
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT CASE WHEN state = 'submitted' AND attempts > 0 THEN 'retrying'"
                " ELSE COALESCE(result, state) END, COUNT(*) FROM watched_objects GROUP BY 1"
            ).fetchall()
        return {status: count for status, count in rows}

    def close(self) -> None:
        self._db.close()


class Watcher:
    """Scans ``prefix`` of ``store`` and runs one execution per new object version."""

    def __init__(
        self,
        store: ObjectStore,
        seen: SeenObjects,
        run_execution: RunExecution,
        *,
        prefix: str = "incoming/",
        bucket: str = "local",
        poll_seconds: float = 1.0,
        settle_seconds: float = 0.2,
        max_concurrency: int = 4,
        notifications: bool = True,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.seen = seen
        self.run_execution = run_execution
        self.prefix = validate_prefix(prefix)
        self.bucket = bucket
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self._clock = clock
        # Objects whose start failed -> when (clock time) to try again. Kept in memory so a
        # retry is scheduled even when the watcher's own database is the thing failing;
        # the database row stays 'submitted', so a restart retries them too.
        self._retry_due: dict[WatchedObject, float] = {}
        self._retry_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="scones-watch")
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._futures: set[Future[None]] = set()
        self._futures_lock = threading.Lock()
        self._unsettled = False
        self._etags: dict[tuple[str, int, datetime], str] = {}
        self._observer: Any = None
        if notifications:
            self._observer = self._start_notifications()

    # --- discovery -------------------------------------------------------------------

    def _start_notifications(self) -> Any:
        root = getattr(self.store, "root", None)
        if root is None:
            return None  # not a local store: polling only
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is in the workflow extra
            return None
        wake = self._wake
        folder = Path(root).joinpath(*[p for p in self.prefix.split("/")[:-1] if p])
        folder.mkdir(parents=True, exist_ok=True)

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                wake.set()

        observer = Observer()
        observer.schedule(_Wake(), str(folder), recursive=True)
        observer.daemon = True
        observer.start()
        return observer

    def _etag(self, info: ObjectInfo) -> str:
        if info.etag:
            return info.etag
        # Local listings carry no ETag: hash the content once per (key, size, mtime).
        cache_key = (info.key, info.size, info.last_modified)
        if cache_key not in self._etags:
            self._etags[cache_key] = self.store.head(info.key).etag or ""
        return self._etags[cache_key]

    def scan_once(self) -> list[WatchedObject]:
        """Submit every object version not seen before; returns what was submitted."""
        submitted = self._submit_due_retries()
        self._unsettled = False
        settle_before = datetime.now(UTC).timestamp() - self.settle_seconds
        for info in self.store.list(self.prefix):
            if info.key.endswith("/"):
                continue
            if getattr(self.store, "root", None) is not None and (
                info.last_modified.timestamp() > settle_before
            ):
                self._unsettled = True  # come back once it has settled
                continue
            item = self.seen.claim(info.key, self._etag(info))
            if item is not None:
                self._submit(item)
                submitted.append(item)
        return submitted

    # --- running ---------------------------------------------------------------------

    def _submit(self, item: WatchedObject) -> None:
        self._slots.acquire()  # back-pressure: never queue more than the limit
        future = self._pool.submit(self._run_one, item)
        with self._futures_lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._futures_lock:
            self._futures.discard(future)

    def _run_one(self, item: WatchedObject) -> None:
        try:
            event = {"s3_bucket": self.bucket, "s3_key": item.key, "image_data": ""}
            # A failed execution returns its status; an exception means it may not exist
            # at all (nothing recorded it), so the object must be tried again.
            status = self.run_execution(item.execution_name, event)
            log.info("%s -> %s (%s)", item.key, status, item.execution_name)
            self.seen.finish(item, status)
        except Exception as exc:
            self._schedule_retry(item, exc)
        finally:
            self._slots.release()

    def retry_delay(self, attempts: int) -> float:
        """Exponential backoff: base, 2 x base, 4 x base, ... capped at retry_max_seconds."""
        return float(
            min(self.retry_base_seconds * 2 ** min(attempts - 1, 62), self.retry_max_seconds)
        )

    def _schedule_retry(self, item: WatchedObject, exc: Exception) -> None:
        attempts = item.attempts + 1
        delay = self.retry_delay(attempts)
        retry = WatchedObject(item.key, item.etag, item.execution_name, attempts)
        with self._retry_lock:
            self._retry_due[retry] = self._clock() + delay
        log.error(
            "execution %s for %s could not start (attempt %d: %s: %s); retrying in %.0f s",
            item.execution_name,
            item.key,
            attempts,
            type(exc).__name__,
            exc,
            delay,
            exc_info=exc if attempts == 1 else None,  # the traceback once, not every retry
        )
        try:
            self.seen.record_failure(item, attempts, f"{type(exc).__name__}: {exc}")
        except Exception:
            log.exception("could not record the failed start of %s", item.execution_name)

    def pending_retries(self) -> dict[WatchedObject, float]:
        """Objects waiting for another attempt -> the clock time it is due."""
        with self._retry_lock:
            return dict(self._retry_due)

    def _submit_due_retries(self) -> list[WatchedObject]:
        now = self._clock()
        with self._retry_lock:
            due = [item for item, at in self._retry_due.items() if at <= now]
            for item in due:
                del self._retry_due[item]
        for item in due:
            self._submit(item)
        return due

    def resume_unfinished(self) -> int:
        items = self.seen.unfinished()
        for item in items:
            self._submit(item)
        return len(items)

    def run(self) -> None:
        """Scan until stop() is called; then let running executions finish."""
        self.resume_unfinished()
        while not self._stopping.is_set():
            try:
                self.scan_once()
            except Exception:
                log.exception("scan of %s failed; retrying", self.store.uri_for(self.prefix))
            self._wake.wait(self.settle_seconds if self._unsettled else self.poll_seconds)
            self._wake.clear()
        self._drain()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _drain(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        self._pool.shutdown(wait=True)

    def close(self) -> None:
        """Stop a watcher that was driven by scan_once() rather than run()."""
        self.stop()
        self._drain()
        self.seen.close()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no execution is running (for tests and the demo)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._futures_lock:
                if not self._futures:
                    return True
            time.sleep(0.02)
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat()


def watch_store(
    store_uri: str,
    db_path: Path,
    *,
    prefix: str = "incoming/",
    bucket: str = "scones",
    endpoint_url: str,
    threshold: float,
    max_concurrency: int = 4,
    poll_seconds: float = 1.0,
    s3_endpoint_url: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Watcher:
    """A Watcher over ``store_uri`` whose executions run the local state machine.

    The handlers are configured as a Lambda deployment configures its functions (their
    environment): ``bucket`` means ``store_uri``, the classifier calls ``endpoint_url``.
    """
    from scones.store import open_store
    from scones.workflow import runs
    from scones.workflow.executions import ExecutionStore
    from scones.workflow.local import local_runner

    store = open_store(store_uri, s3_endpoint_url=s3_endpoint_url)
    runs.configure_local_functions(
        endpoint_url=endpoint_url, threshold=threshold, bucket_store=(bucket, store_uri)
    )
    executions = ExecutionStore(db_path)
    runner = local_runner(executions, max_concurrency=max_concurrency)

    def run_execution(name: str, event: dict[str, Any]) -> str:
        return runner.start(event, name=name).status

    return Watcher(
        store,
        SeenObjects(db_path),
        run_execution,
        prefix=prefix,
        bucket=bucket,
        poll_seconds=poll_seconds,
        max_concurrency=max_concurrency,
        clock=clock,
    )
