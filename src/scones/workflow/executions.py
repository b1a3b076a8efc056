"""Executions: started by name, run on the ASL runtime, persisted in SQLite.

- :class:`ExecutionStore` is the only way to read or write the executions database
  (``settings.db``). Other stages read it through ``list`` and ``get``.
- :class:`ExecutionRunner` starts executions of one state machine, idempotently by name as
  Step Functions does, in a thread pool with a concurrency limit.

An execution's row is written as RUNNING (with its input) and rewritten once with status,
output or error and cause, and the full history when it stops; a process that dies in between
leaves the row RUNNING. A named execution's row is committed before its first state runs. An
unnamed one (a name drawn at random: batch runs) is written only when it stops, status and
history in one insert, or as RUNNING once it has run for ``DEFERRED_START_SECONDS``
(a quarter of a second), whichever comes first: most executions of a batch end sooner, and
the one statement instead of two saves a tenth of the runtime's CPU. A process that dies
before that loses the execution's row, but nothing was reported of it yet (a record is
handed out only once its finish is committed), so running the same input again is safe;
meanwhile readers (the console) do not see it yet.
"""

from __future__ import annotations

import _thread
import functools
import itertools
import json
import os
import random
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, overload

from scones.errors import SconesError, UsageError
from scones.times import iso_utc, utc_now
from scones.workflow.group_commit import GroupCommit, Write
from scones.workflow.history_codec import decode_history, encode_history, json_default

STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# Step Functions: execution names are 1-80 characters; we accept the URL-safe subset.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
MAX_INPUT_BYTES = 256 * 1024  # Step Functions' limit on execution input
# How long an unnamed execution may run before its RUNNING row is written (module docstring).
DEFERRED_START_SECONDS = 0.25
_INSERT_RUNNING = (
    "INSERT INTO executions (execution_id, name, state_machine, status, input, "
    "started_at, owner) VALUES (?, ?, ?, 'RUNNING', ?, ?, ?) "
    "ON CONFLICT (execution_id) DO NOTHING"
)
_INSERT_FINISHED = (
    "INSERT INTO executions (execution_id, name, state_machine, input, started_at, owner, "
    "status, output, error, cause, stopped_at, history_zlib) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# 2: history_zlib holds the history with its payload texts set apart; version 1 blobs (one
# JSON array) still read. Later blob formats (history_codec; zstd since format 4, the column
# keeps its name) are told apart by their first byte, so they need no schema version.
# 3: execution_keys (object key -> execution) and indexes for the console's filters.
_SCHEMA_VERSION = 3
# Ascending indexes: read backwards, each gives (started_at, rowid) newest first, the order of
# every list and page, so a page is an index range with no sort.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    execution_id  TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    state_machine TEXT NOT NULL,
    status        TEXT NOT NULL,
    input         TEXT NOT NULL,
    output        TEXT,
    error         TEXT,
    cause         TEXT,
    started_at    TEXT NOT NULL,
    stopped_at    TEXT,
    history_zlib  BLOB,
    owner         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS executions_by_start ON executions (started_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, started_at);
CREATE INDEX IF NOT EXISTS executions_by_machine ON executions (state_machine, started_at);
CREATE INDEX IF NOT EXISTS executions_by_machine_status
    ON executions (state_machine, status, started_at);
CREATE INDEX IF NOT EXISTS executions_by_name ON executions (name);
CREATE TABLE IF NOT EXISTS execution_keys (
    object_key   TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (object_key, execution_id)
) WITHOUT ROWID;
"""
_DROP_V2_INDEXES = """
DROP INDEX IF EXISTS executions_by_start;
DROP INDEX IF EXISTS executions_by_status;
"""
# The object keys an input names (s3_key, or a Map input's keys) go to execution_keys in the
# statement that inserts the execution (a trigger: still one write per start), and version 2
# databases get theirs on open, by the same selects over the rows already there. Search finds
# a Map execution by its first 10,000 keys.
_KEYS_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS executions_keys AFTER INSERT ON executions BEGIN
    INSERT OR IGNORE INTO execution_keys (object_key, execution_id)
        SELECT json_extract(NEW.input, '$.s3_key'), NEW.execution_id
        WHERE json_type(NEW.input, '$.s3_key') = 'text';
    INSERT OR IGNORE INTO execution_keys (object_key, execution_id)
        SELECT value, NEW.execution_id FROM json_each(NEW.input, '$.keys')
        WHERE type = 'text' AND json_type(NEW.input, '$.keys') = 'array'
        LIMIT 10000;
END;
"""
_BACKFILL_KEYS = """
INSERT OR IGNORE INTO execution_keys (object_key, execution_id)
    SELECT json_extract(input, '$.s3_key'), execution_id FROM executions
    WHERE json_valid(input) AND json_type(input, '$.s3_key') = 'text';
INSERT OR IGNORE INTO execution_keys (object_key, execution_id)
    SELECT item.value, e.execution_id FROM executions AS e, json_each(e.input, '$.keys') AS item
    WHERE json_valid(e.input) AND json_type(e.input, '$.keys') = 'array' AND item.type = 'text';
"""
_SELECT = (
    "SELECT execution_id, name, state_machine, status, input, output, error, cause, "
    "started_at, stopped_at, history_zlib FROM executions"
)


class ExecutionError(SconesError):
    """Base of the executions errors."""


class ExecutionNotFoundError(ExecutionError):
    """No execution with that id (or name)."""


class ExecutionAlreadyExistsError(ExecutionError):
    """An execution of that name exists with a different input (as Step Functions refuses)."""


class InvalidExecutionInputError(ExecutionError, UsageError):
    """An execution name, input or filter that cannot work."""


@dataclass(frozen=True)
class ExecutionRecord:
    """One execution as persisted: its identity, input, outcome and full event history."""

    execution_id: str
    name: str
    state_machine: str
    status: str
    input: Any
    output: Any | None
    error: str | None
    cause: str | None
    started_at: datetime
    stopped_at: datetime | None
    history: list[dict]

    @property
    def finished(self) -> bool:
        return self.status != "RUNNING"

    @property
    def image_key(self) -> str | None:
        """The image a single-image execution classifies (None for a Map execution)."""
        key = self.input.get("s3_key") if isinstance(self.input, dict) else None
        return key if isinstance(key, str) else None

    @property
    def map_key_count(self) -> int | None:
        """How many images a Map execution classifies (None for a single-image one)."""
        keys = self.input.get("keys") if isinstance(self.input, dict) else None
        return len(keys) if isinstance(keys, list) else None

    def prediction(self) -> tuple[str | None, float | None]:
        """The top class and its confidence: from the output, else the last seen in history.

        A low-confidence execution fails, but its history still holds the endpoint's answer.
        """
        if self.status == "RUNNING":
            return None, None
        if self.status == "SUCCEEDED" and isinstance(self.output, dict):
            return top_prediction(self.output.get("inferences"), self.output.get("classes"))
        body = last_inference_body(self.history)
        return top_prediction(body.get("inferences"), body.get("classes"))

    def to_dict(self, *, detail: bool = False) -> dict[str, Any]:
        """A JSON-ready row (`executions list --json`); ``detail`` adds input, output, cause."""
        if detail:  # `executions show`
            return {
                "execution_id": self.execution_id,
                "name": self.name,
                "state_machine": self.state_machine,
                "status": self.status,
                "started_at": self.started_at.isoformat(),
                "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
                "input": self.input,
                "output": self.output,
                "error": self.error,
                "cause": self.cause,
                "events": len(self.history),
            }
        top_class, confidence = self.prediction()
        return {
            "execution_id": self.execution_id,
            "name": self.name,
            "state_machine": self.state_machine,
            "status": self.status,
            "image": self.image_key,
            "map_keys": self.map_key_count,
            "class": top_class,
            "confidence": confidence,
            "error": self.error,
            "started_at": self.started_at.isoformat(),
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
        }


def top_prediction(inferences: Any, classes: Any) -> tuple[str | None, float | None]:
    """The most probable class (its name when ``classes`` has it) and its probability."""
    if not isinstance(inferences, list) or not inferences:
        return None, None
    index = max(range(len(inferences)), key=inferences.__getitem__)
    if isinstance(classes, list) and index < len(classes):
        return str(classes[index]), float(inferences[index])
    return f"class {index}", float(inferences[index])


def last_inference_body(history: list[dict]) -> dict[str, Any]:
    """The latest state input or output in the history with inferences (and class names)."""
    found: dict[str, Any] = {}
    for event in reversed(history):
        for value in event.values():
            if not isinstance(value, dict):
                continue
            for detail in ("output", "input"):
                text = value.get(detail)
                if isinstance(text, str) and '"inferences"' in text:
                    try:
                        body = json.loads(text)
                    except ValueError:
                        continue
                    if isinstance(body, dict) and body.get("inferences"):
                        if body.get("classes"):
                            return body
                        found = found or body
    return found


def execution_id_for(state_machine: str, name: str) -> str:
    """The ARN-like id, as Step Functions forms an execution ARN."""
    return f"{_execution_arn_prefix()}{state_machine}:{name}"


@functools.cache
def _execution_arn_prefix() -> str:
    from scones.workflow.definitions import LOCAL_ACCOUNT_ID, LOCAL_REGION

    return f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:execution:"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidExecutionInputError(
            f"invalid execution name {name!r}: use 1-80 characters of A-Z a-z 0-9 _ . -"
        )
    return name


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=json_default)


class PendingFinish:
    """A finish on its way to the database; ``result()`` waits for it (see finish_later)."""

    def __init__(
        self,
        write: Write | None,
        record: ExecutionRecord,
        stored: list,
        start: Write | None = None,
    ) -> None:
        self._write = write
        self._record = record
        self._stored = stored  # the history as stored, once the commit's leader encoded it
        self._start = start  # the RUNNING row's insert, when nobody waited for it

    @classmethod
    def done(cls, record: ExecutionRecord) -> PendingFinish:
        return cls(None, record, [record.history])

    def result(self) -> ExecutionRecord:
        """The finished record once committed; ExecutionError if it was not RUNNING."""
        if self._start is not None:
            self._start.result()  # committed before (or with) the finish; its error, raised
            self._start = None
        if self._write is not None:
            if self._write.result() != 1:
                raise ExecutionError(
                    f"execution {self._record.execution_id} is not RUNNING; cannot finish it"
                )
            self._record = replace(self._record, history=self._stored[0])
            self._write = None
        return self._record


@dataclass(slots=True, eq=False)
class _FinishRow:
    """The values a finish writes, computed when its batch commits (a callable ``params``
    for GroupCommit). One slotted object, not closures: a batch run holds thousands of these
    until they commit, and each object alive makes every garbage-collector pass longer."""

    status: str
    output: Any
    output_json: str | None
    error: str | None
    cause: str | None
    stopped_text: str
    history: list[dict]
    before: tuple[Any, ...] = ()  # the columns before and after these ones
    after: tuple[Any, ...] = ()
    # The history as stored (event timestamps as ISO text), once encoded: the record
    # returned holds that, so get() returns an equal record.
    stored: list[list[dict]] = field(default_factory=list)

    def __call__(self) -> tuple[Any, ...]:
        history_blob, events = encode_history(self.history)
        self.stored.append(events)
        text = self.output_json
        if text is None and self.output is not None:
            text = to_json(self.output)
        return (
            *self.before,
            *(self.status, text, self.error, self.cause, self.stopped_text, history_blob),
            *self.after,
        )


class ExecutionStore:
    """The executions database: one SQLite file, safe to share across threads and processes."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One connection guarded by a lock: SQLite allows one writer, and the writes of
        # concurrent executions are grouped into shared transactions (group_commit).
        self._conn = sqlite3.connect(
            self.db_path, check_same_thread=False, timeout=30.0, isolation_level=None
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")  # readers never block the runner
            self._conn.execute("PRAGMA synchronous=NORMAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise ExecutionError(
                    f"executions database {self.db_path} has schema version {version}, newer "
                    f"than this scones ({_SCHEMA_VERSION}); upgrade scones"
                )
            if version < 3:
                # Version 2's indexes ran DESC on started_at; rebuilt ascending (see _SCHEMA).
                self._conn.executescript(_DROP_V2_INDEXES)
            self._conn.executescript(_SCHEMA + _KEYS_TRIGGER)
            if version < 3:
                self._conn.executescript(_BACKFILL_KEYS)
            self._conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ExecutionError(f"cannot open executions database {self.db_path}: {exc}") from None
        except BaseException:
            self._conn.close()
            raise
        # Starts and finishes of concurrent executions share transactions (group commit).
        self._writes = GroupCommit(self._conn, self._lock)
        # Unnamed executions not written yet, by id: their insert's parameters and when they
        # started (time.monotonic); their finish writes them whole, or the flusher thread
        # writes them as RUNNING once DEFERRED_START_SECONDS have passed.
        self._deferred_starts: dict[str, tuple[tuple[Any, ...], float]] = {}
        # RUNNING inserts the flusher queued and nobody waited for, until the finish takes
        # them (it then commits after them, and raises what they failed with).
        self._unconfirmed_starts: dict[str, Write] = {}
        # Guards both dicts together: an execution is in at most one of them, or written.
        self._deferred_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._closing = threading.Event()

    def close(self) -> None:
        """Write the RUNNING rows of unnamed executions still running, and close."""
        self._closing.set()
        with self._deferred_lock:
            flusher = self._flusher
        if flusher is not None:
            flusher.join()
        self._flush_deferred_starts(older_than=None)
        self._writes.flush()  # and whatever finishes nobody waited for
        with self._lock:
            self._conn.close()

    def _flush_deferred_starts(self, older_than: float | None) -> int:
        """Queue the RUNNING inserts of deferred starts (all, or those older than that);
        how many."""
        with self._deferred_lock:
            now = time.monotonic()
            aged = [
                execution_id
                for execution_id, (_, started) in self._deferred_starts.items()
                if older_than is None or now - started >= older_than
            ]
            for execution_id in aged:
                params, _ = self._deferred_starts.pop(execution_id)
                # Under the lock: a finish must find either the deferred start or this write.
                self._unconfirmed_starts[execution_id] = self._writes.submit(
                    _INSERT_RUNNING, params
                )
        return len(aged)

    def _run_flusher(self) -> None:
        # Ends when nothing is left to write (start() starts another), so an idle store
        # has no thread waking up, and one nobody closed can be collected.
        while not self._closing.wait(DEFERRED_START_SECONDS / 2):
            if self._flush_deferred_starts(older_than=DEFERRED_START_SECONDS):
                self._writes.flush()  # readers see them RUNNING now, not at their finish
            with self._deferred_lock:
                if not self._deferred_starts:
                    self._flusher = None
                    return

    def __enter__(self) -> ExecutionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- writing (the runner) ---

    def start(
        self, state_machine: str, name: str, input: Any, *, generated_name: bool = False
    ) -> tuple[ExecutionRecord, bool]:
        """Record a RUNNING execution; returns (record, created).

        As StartExecution: the same name and the same input return the existing execution
        (created False); the same name with a different input is an error.

        ``generated_name``: the name was just drawn at random (:func:`new_execution_name`),
        so no execution has it and there is nothing to compare. Nothing is written then: the
        finish (``finish_later``) inserts the execution whole, or its RUNNING row is written
        after ``DEFERRED_START_SECONDS`` (see the module docstring); the finish's
        ``result()`` raises what either write failed with.
        """
        check_name(name)
        try:
            input_json = json.dumps(
                input, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except (TypeError, ValueError) as exc:
            raise InvalidExecutionInputError(
                f"execution input of {name!r} is not JSON: {exc}"
            ) from None
        # A character is at most 4 bytes of UTF-8: most inputs need no encoding to tell.
        if len(input_json) * 4 > MAX_INPUT_BYTES and len(input_json.encode()) > MAX_INPUT_BYTES:
            raise InvalidExecutionInputError(
                f"execution input of {name!r} is over the {MAX_INPUT_BYTES}-byte limit"
            )
        execution_id = execution_id_for(state_machine, name)
        started = utc_now()
        # One statement; the trigger executions_keys adds its object keys in it. Committed
        # (with other threads' writes) before the first state runs, unless the name is new.
        params = (execution_id, name, state_machine, input_json, iso_utc(started), _owner())
        if generated_name:
            with self._deferred_lock:
                self._deferred_starts[execution_id] = (params, time.monotonic())
                if self._flusher is None and not self._closing.is_set():
                    self._flusher = threading.Thread(
                        target=self._run_flusher, name="scones-deferred-starts", daemon=True
                    )
                    self._flusher.start()
            created = 1
        else:
            created = self._writes.execute(_INSERT_RUNNING, params)
        if created != 1:
            existing = self.get(execution_id)
            if _canonical(existing.input) != _canonical(input):
                raise ExecutionAlreadyExistsError(
                    f"execution {name!r} of {state_machine!r} already exists with a "
                    f"different input ({execution_id})"
                )
            return existing, False
        record = ExecutionRecord(
            execution_id, name, state_machine, "RUNNING", input, None, None, None, started, None, []
        )
        return record, True

    def finish(
        self,
        running: ExecutionRecord,
        *,
        status: str,
        output: Any | None,
        error: str | None,
        cause: str | None,
        history: list[dict],
        stopped_at: datetime | None = None,
        output_json: str | None = None,
    ) -> ExecutionRecord:
        """Record how a RUNNING execution ended, with its full history; returns the record.

        ``output_json``: the output's JSON text when the caller has it already (the runtime
        encodes it for the ExecutionSucceeded event), so it is not encoded again.
        """
        return self.finish_later(
            running,
            status=status,
            output=output,
            error=error,
            cause=cause,
            history=history,
            stopped_at=stopped_at,
            output_json=output_json,
        ).result()

    def finish_later(
        self,
        running: ExecutionRecord,
        *,
        status: str,
        output: Any | None,
        error: str | None,
        cause: str | None,
        history: list[dict],
        stopped_at: datetime | None = None,
        output_json: str | None = None,
    ) -> PendingFinish:
        """``finish`` without waiting for the commit: its ``result()`` waits and returns the
        record. Until then the execution may still read back as RUNNING (and stays so if the
        process dies first)."""
        if status not in STATUSES or status == "RUNNING":
            raise ExecutionError(
                f"cannot finish execution {running.execution_id} with status {status!r}"
            )
        stopped_text = iso_utc(stopped_at or utc_now())
        execution_id = running.execution_id
        with self._deferred_lock:
            deferred = self._deferred_starts.pop(execution_id, None)
            start = (
                None if deferred is not None else self._unconfirmed_starts.pop(execution_id, None)
            )

        # The row's values, computed by the thread that commits this write's batch.
        row = _FinishRow(status, output, output_json, error, cause, stopped_text, history)
        if deferred is not None:
            row.before = deferred[0]  # the whole row: the execution was never written
            write = self._writes.submit(_INSERT_FINISHED, row)
        else:
            row.after = (execution_id,)
            write = self._writes.submit(
                "UPDATE executions SET status = ?, output = ?, error = ?, cause = ?, "
                "stopped_at = ?, history_zlib = ? WHERE execution_id = ? AND status = 'RUNNING'",
                row,
            )
        finished = replace(
            running,
            status=status,
            output=output,
            error=error,
            cause=cause,
            stopped_at=datetime.fromisoformat(stopped_text),
        )
        return PendingFinish(write, finished, row.stored, start)

    # --- reading (everyone) ---

    def get(self, execution_id: str) -> ExecutionRecord:
        """The execution with that id; ExecutionNotFoundError naming it when there is none."""
        with self._lock:
            row = self._conn.execute(
                _SELECT + " WHERE execution_id = ?", (execution_id,)
            ).fetchone()
        if row is None:
            raise ExecutionNotFoundError(f"no execution {execution_id!r} in {self.db_path}")
        return _record(row)

    def find(self, ref: str) -> ExecutionRecord:
        """An execution by id, or by name when exactly one execution has that name."""
        with self._lock:
            rows = self._conn.execute(
                _SELECT + " WHERE execution_id = ? OR name = ? ORDER BY started_at DESC LIMIT 3",
                (ref, ref),
            ).fetchall()
        exact = [row for row in rows if row[0] == ref]
        if exact:
            return _record(exact[0])
        if len(rows) == 1:
            return _record(rows[0])
        if not rows:
            raise ExecutionNotFoundError(f"no execution with id or name {ref!r} in {self.db_path}")
        raise ExecutionNotFoundError(
            f"several executions are named {ref!r}; give the full execution id"
        )

    def list(
        self,
        status: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        state_machine: str | None = None,
    ) -> list[ExecutionRecord]:
        """Executions, newest first, optionally of one status and started at or after ``since``."""
        _check_status(status)
        if not isinstance(limit, int) or limit < 1:
            raise InvalidExecutionInputError(f"invalid limit {limit!r}: must be at least 1")
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if state_machine is not None:
            where.append("state_machine = ?")
            params.append(state_machine)
        if since is not None:
            if since.tzinfo is None:
                raise InvalidExecutionInputError(f"since={since!r} needs a time zone")
            where.append("started_at >= ?")
            params.append(iso_utc(since))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._conn.execute(
                _SELECT + f" {clause} ORDER BY started_at DESC, rowid DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_record(row) for row in rows]

    def count_by_status(self, state_machine: str | None = None) -> dict[str, int]:
        """Executions per status (of one state machine): a count over an index, no table scan."""
        clause, params = (
            ("WHERE state_machine = ?", (state_machine,)) if state_machine else ("", ())
        )
        with self._lock:
            rows = self._conn.execute(
                f"SELECT status, COUNT(*) FROM executions {clause} GROUP BY status",  # noqa: S608
                params,
            ).fetchall()
        return {status: count for status, count in rows}

    def state_machines(self) -> tuple[str, ...]:
        """The state machines with executions, by name: one index seek per machine."""
        with self._lock:
            rows = self._conn.execute(
                "WITH RECURSIVE machines(name) AS ("
                " SELECT MIN(state_machine) FROM executions"
                " UNION ALL SELECT (SELECT MIN(state_machine) FROM executions"
                "  WHERE state_machine > machines.name) FROM machines WHERE name IS NOT NULL)"
                " SELECT name FROM machines WHERE name IS NOT NULL"
            ).fetchall()
        return tuple(name for (name,) in rows)

    def page(self, query: PageQuery) -> ExecutionPage:
        """One page of executions, newest first, by keyset: each page is an index range.

        ``query.before`` (an older page) and ``query.after`` (a newer page) are cursors from
        a previous page; ``query.oldest`` asks for the last page. No page reads more rows
        than it shows, whatever its depth, so the last of 100,000 costs what the first does.
        """
        query.check()
        where, params = query.where()
        order = "DESC"
        if query.before is not None:
            where.append("(started_at, rowid) < (?, ?)")
            params.extend(parse_cursor(query.before))
        elif query.after is not None:
            where.append("(started_at, rowid) > (?, ?)")
            params.extend(parse_cursor(query.after))
            order = "ASC"
        elif query.oldest:
            order = "ASC"
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = (
            f"SELECT rowid, {_SUMMARY_COLUMNS} FROM executions {clause} "  # noqa: S608
            f"ORDER BY started_at {order}, rowid {order} LIMIT ?"
        )
        with self._lock:
            rows = self._conn.execute(sql, (*params, query.limit)).fetchall()
        if order == "ASC":
            rows.reverse()
        items = [_summary(row) for row in rows]
        newer = older = None
        if items:
            base_where, base_params = query.where()
            first, last = (rows[0][9], rows[0][0]), (rows[-1][9], rows[-1][0])
            if self._exists([*base_where, "(started_at, rowid) > (?, ?)"], [*base_params, *first]):
                newer = items[0].cursor
            if self._exists([*base_where, "(started_at, rowid) < (?, ?)"], [*base_params, *last]):
                older = items[-1].cursor
        return ExecutionPage(items=items, newer=newer, older=older)

    def _exists(self, where: Sequence[str], params: Sequence[Any]) -> bool:
        with self._lock:
            row = self._conn.execute(
                # Fixed clauses; every value is a parameter.
                f"SELECT 1 FROM executions WHERE {' AND '.join(where)} LIMIT 1",  # noqa: S608
                params,
            ).fetchone()
        return row is not None


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise InvalidExecutionInputError(
            f"invalid execution status {status!r}; one of {', '.join(STATUSES)}"
        )


_CURSOR = re.compile(r"^(\d{4}-\d{2}-\d{2}T[0-9:.]+\+00:00)~(\d{1,19})$")
MAX_PAGE_SIZE = 500
MAX_SEARCH_CHARS = 1024
_SUMMARY_COLUMNS = (
    "execution_id, name, state_machine, status, input, output, error, cause, started_at, stopped_at"
)


def parse_cursor(cursor: str) -> tuple[str, int]:
    """A page cursor (``<started_at>~<row>``) as its two parts; a clear error when malformed."""
    match = _CURSOR.match(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise InvalidExecutionInputError(
            f"invalid page cursor {cursor!r}: use the newer/older links of a page"
        )
    return match.group(1), int(match.group(2))


@dataclass(frozen=True)
class PageQuery:
    """Which executions a page lists, and where the page starts."""

    status: str | None = None
    state_machine: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None  # a name or object key prefix, or an execution id
    before: str | None = None
    after: str | None = None
    oldest: bool = False
    limit: int = 50

    def check(self) -> None:
        _check_status(self.status)
        if not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidExecutionInputError(
                f"invalid page size {self.limit!r}: between 1 and {MAX_PAGE_SIZE}"
            )
        for name, moment in (("since", self.since), ("until", self.until)):
            if moment is not None and moment.tzinfo is None:
                raise InvalidExecutionInputError(f"{name}={moment!r} needs a time zone")
        if self.search is not None and len(self.search) > MAX_SEARCH_CHARS:
            raise InvalidExecutionInputError(
                f"search text of {len(self.search)} characters is over {MAX_SEARCH_CHARS}"
            )
        if self.before is not None and self.after is not None:
            raise InvalidExecutionInputError("give either before or after, not both")
        for cursor in (self.before, self.after):
            if cursor is not None:
                parse_cursor(cursor)

    def where(self) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if self.status is not None:
            where.append("status = ?")
            params.append(self.status)
        if self.state_machine is not None:
            where.append("state_machine = ?")
            params.append(self.state_machine)
        if self.since is not None:
            where.append("started_at >= ?")
            params.append(iso_utc(self.since))
        if self.until is not None:
            where.append("started_at < ?")
            params.append(iso_utc(self.until))
        if self.search:
            # Prefix ranges over the name index and execution_keys: no LIKE, no scan.
            high = self.search + "\U0010ffff"
            where.append(
                "rowid IN (SELECT rowid FROM executions WHERE execution_id = ?"
                " UNION SELECT rowid FROM executions WHERE name >= ? AND name < ?"
                " UNION SELECT e.rowid FROM execution_keys AS k JOIN executions AS e"
                " ON e.execution_id = k.execution_id"
                " WHERE k.object_key >= ? AND k.object_key < ?)"
            )
            params.extend([self.search, self.search, high, self.search, high])
        return where, params


@dataclass(frozen=True)
class ExecutionSummary:
    """An execution as a list shows it: everything but the history."""

    execution_id: str
    name: str
    state_machine: str
    status: str
    input: Any
    output: Any | None
    error: str | None
    cause: str | None
    started_at: datetime
    stopped_at: datetime | None
    cursor: str

    @property
    def seconds(self) -> float | None:
        if self.stopped_at is None:
            return None
        return (self.stopped_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class ExecutionPage:
    items: list[ExecutionSummary]
    newer: str | None  # cursor for the page of newer executions, None on the first
    older: str | None  # cursor for the page of older executions, None on the last


def _summary(row: tuple) -> ExecutionSummary:
    rowid, *columns = row  # the page query's rowid, then the shared columns
    started = columns[8]
    return ExecutionSummary(**_shared_fields(columns), cursor=f"{started}~{rowid}")


def list_executions(
    db_path: str | os.PathLike[str],
    *,
    status: str | None = None,
    limit: int = 100,
    since: datetime | None = None,
) -> list[ExecutionRecord]:
    """Executions in the database at ``db_path``, newest first (see ``ExecutionStore.list``)."""
    with ExecutionStore(db_path) as db:
        return db.list(status=status.upper() if status else None, limit=limit, since=since)


def find_execution(db_path: str | os.PathLike[str], ref: str) -> ExecutionRecord:
    """The execution whose id (ARN) or name is ``ref``, from the database at ``db_path``."""
    with ExecutionStore(db_path) as db:
        return db.find(ref)


def compress_history(events: list[dict]) -> bytes:
    """The history as stored (see :mod:`scones.workflow.history_codec`)."""
    return encode_history(events)[0]


def decompress_history(blob: bytes | None) -> list[dict]:
    """The events of a stored history, any format; [] while the execution runs."""
    return decode_history(blob)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=json_default)


@functools.cache
def _owner_of(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


def _owner() -> str:
    # Which process ran it: an operator can tell a RUNNING row whose process is gone.
    return _owner_of(os.getpid())


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _shared_fields(columns: Any) -> dict[str, Any]:
    """Fields of a record and of a summary alike, from the columns both queries select first:
    id, name, state machine, status, input, output, error, cause, started, stopped."""
    (
        execution_id,
        name,
        state_machine,
        status,
        input_json,
        output_json,
        error,
        cause,
        started_at,
        stopped_at,
    ) = columns[:10]
    return {
        "execution_id": execution_id,
        "name": name,
        "state_machine": state_machine,
        "status": status,
        "input": json.loads(input_json),
        "output": None if output_json is None else json.loads(output_json),
        "error": error,
        "cause": cause,
        "started_at": datetime.fromisoformat(started_at),
        "stopped_at": _parse_time(stopped_at),
    }


def _record(row: tuple) -> ExecutionRecord:
    return ExecutionRecord(**_shared_fields(row), history=decompress_history(row[10]))


# --- running -----------------------------------------------------------------------------


_Kept = TypeVar("_Kept")


class _Slot:
    """One execution of run_all: its pending finish or error, and a lock held until set."""

    __slots__ = ("error", "pending", "ready")

    def __init__(self) -> None:
        self.pending: PendingFinish | None = None
        self.error: BaseException | None = None
        self.ready = _thread.allocate_lock()
        self.ready.acquire()


def new_execution_name() -> str:
    """A random version 4 UUID, as StartExecution names an execution given no name.

    From ``random`` (seeded from the OS, reseeded in forked children), not ``uuid.uuid4``:
    a name, not a secret, and os.urandom's system call hands the GIL to another thread.
    """
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


class ExecutionRunner:
    """Runs executions of one state machine on the ASL runtime, persisting each one.

    ``max_concurrency`` bounds how many executions run at once (a thread pool); the
    handlers mostly wait on I/O (the store, the endpoint), so threads overlap well.
    """

    def __init__(
        self,
        store: ExecutionStore,
        definition: dict[str, Any],
        resources: Any,
        *,
        state_machine: str,
        max_concurrency: int = 16,
        clock: Any = None,
    ) -> None:
        from scones.asl import ExecutionConfig, load
        from scones.workflow.definitions import LOCAL_ACCOUNT_ID, LOCAL_REGION

        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise InvalidExecutionInputError(
                f"invalid concurrency {max_concurrency!r}: must be at least 1"
            )
        check_name(state_machine)
        self.store = store
        self.machine = load(definition, resources)  # every Task's handler, checked once
        self.resources = resources
        self.state_machine = state_machine
        self.max_concurrency = max_concurrency
        self.clock = clock
        # $$.Execution.Id inside the run then equals the id we store.
        self._config = ExecutionConfig(
            account_id=LOCAL_ACCOUNT_ID, region=LOCAL_REGION, state_machine_name=state_machine
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def start(self, input: Any, name: str | None = None) -> ExecutionRecord:
        """Run one execution to its end (or return the existing one of that name and input)."""
        return self._start(input, name).result()

    def _start(self, input: Any, name: str | None) -> PendingFinish:
        # Returns as soon as the execution ran: its finish commits with a later batch.
        if name is None:
            record, created = self.store.start(
                self.state_machine, new_execution_name(), input, generated_name=True
            )
        else:
            record, created = self.store.start(self.state_machine, name, input)
        if not created:
            return PendingFinish.done(record)
        return self._run(record)

    def submit(self, input: Any, name: str | None = None) -> Future[ExecutionRecord]:
        """Start an execution in the pool; the future resolves to its finished record."""
        return self._executor().submit(self.start, input, name)

    @overload
    def run_all(
        self,
        inputs: Iterable[tuple[str | None, Any]],
        on_done: Callable[[ExecutionRecord], None] | None = None,
        *,
        keep: None = None,
    ) -> list[ExecutionRecord]: ...

    @overload
    def run_all(
        self,
        inputs: Iterable[tuple[str | None, Any]],
        on_done: Callable[[ExecutionRecord], None] | None = None,
        *,
        keep: Callable[[ExecutionRecord], _Kept],
    ) -> list[_Kept]: ...

    def run_all(
        self,
        inputs: Iterable[tuple[str | None, Any]],
        on_done: Callable[[ExecutionRecord], None] | None = None,
        *,
        keep: Callable[[ExecutionRecord], Any] | None = None,
    ) -> list[Any]:
        """Run (name, input) pairs concurrently; records in the order of ``inputs``.

        ``on_done`` hears each record in that order, in the calling thread, once its finish
        is committed (so what it hears is stored). The first execution that cannot start (a
        name taken with another input) raises here, after ``on_done`` heard those before it;
        the others still run.

        ``keep``: what to return of each record instead of the record. A record holds its
        history (every payload, the image among them); a batch of 100,000 kept whole is
        gigabytes, and every object it holds lengthens the garbage collector's full passes.
        With ``keep``, each record is dropped once heard.
        """
        items = list(inputs)
        if not items:
            return []
        # Up to max_concurrency pool threads each take the next item until none is left:
        # a future per loop, not per execution (a future, its condition and the pool's
        # queue cost about as much as the orchestration of a short execution).
        slots = [_Slot() for _ in items]
        claimed = itertools.count()  # next() is atomic: each index goes to one loop

        def loop() -> None:
            while (index := next(claimed)) < len(items):
                name, input = items[index]
                slot = slots[index]
                try:
                    # Not waiting for the finish to commit: the next execution starts now,
                    # and the caller waits for the commit before it hears of the record.
                    slot.pending = self._start(input, name)
                except BaseException as exc:  # handed to the caller, as a future would
                    slot.error = exc
                finally:
                    slot.ready.release()

        pool = self._executor()
        for _ in range(min(self.max_concurrency, len(items))):
            pool.submit(loop)
        records: list[Any] = []
        for slot in slots:
            slot.ready.acquire()
            if slot.error is not None:
                raise slot.error
            assert slot.pending is not None
            record = slot.pending.result()  # stored by now: what on_done hears is kept
            slot.pending = None
            if on_done is not None:
                on_done(record)
            records.append(record if keep is None else keep(record))
        return records

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_concurrency, thread_name_prefix="scones-execution"
                )
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> ExecutionRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, record: ExecutionRecord) -> PendingFinish:
        from scones.asl import execute

        try:
            execution = execute(
                self.machine,
                record.input,
                self.resources,
                name=record.name,
                clock=self.clock,
                config=self._config,
                check_resources=False,
            )
        except Exception as exc:
            # A fault of the runtime itself, not of a state: record it rather than leave
            # the execution RUNNING forever in this still-alive process.
            return self.store.finish_later(
                record,
                status="FAILED",
                output=None,
                error="States.Runtime",
                cause=f"the local ASL runtime failed: {type(exc).__name__}: {exc}",
                history=[],
            )
        status = execution.status if execution.status in STATUSES else "FAILED"
        return self.store.finish_later(
            record,
            status=status,
            output=execution.output if status == "SUCCEEDED" else None,
            error=execution.error,
            cause=execution.cause,
            history=list(execution.history),
            output_json=execution.output_json if status == "SUCCEEDED" else None,
        )
