"""Group commit: writes from many threads share one SQLite transaction, none lost.

Each writer thread queues its statement and waits. The first to find no commit under way
leads: it takes everything queued, runs it in one transaction, commits, wakes the others,
and hands the lead to the first write queued meanwhile that a thread is blocked on. Under
load (16 executions at once) a commit carries several writes and its fixed cost (WAL append,
page writes, lock dance) is paid once for all of them; a lone writer commits alone.

A write's parameters may be a function: the leader calls those of its batch one after
another before the transaction (histories encoded back to back took about a quarter less
CPU than interleaved with the executions' own work, in our measurements: warm caches).

``submit`` queues a write and returns at once: the thread goes on with other work (the next
execution). The write is committed when some thread waits for it (``result()`` leads if
nobody does), when ``SUBMIT_BATCH`` writes are queued, or on ``flush()``. Leaving
it to the waiter keeps the commits few and large: committing each write as soon as it came
put the runtime in a regime of a commit per one or two writes, which cost a batch run about
40% more CPU (thread hand-offs around every SQLite call).

A write returns (``execute``, or ``result()`` of a ``submit``ted one) only after its
transaction committed, so whatever a caller was told is stored is stored: a process that
dies mid-batch loses only writes that had not returned. A statement that fails on its own
(a constraint, a bad parameter) fails only its writer; a failure of the transaction (disk
full, I/O error) rolls the batch back and fails each of its writers with that error.
"""

from __future__ import annotations

import _thread
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

Params = Sequence[Any] | Callable[[], Sequence[Any]]
# Queued submitted writes that make their submitter commit them (a bound on the queue).
SUBMIT_BATCH = 64

# Errors of one statement: SQLite undoes that statement only, the transaction goes on.
_STATEMENT_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    OverflowError,
    TypeError,
)


class Write:
    """One queued write; ``result()`` waits until its transaction committed."""

    __slots__ = ("error", "group", "lead", "params", "rowcount", "sql", "waiting", "wake")

    def __init__(
        self, sql: str, params: Params, *, waiting: bool, group: GroupCommit | None = None
    ) -> None:
        self.sql = sql
        # The group of a submitted write: result() commits the queue when nobody else does.
        self.group = group
        self.params = params
        self.rowcount = -1
        self.error: BaseException | None = None
        # Whether a thread is blocked on this write: only such a thread can take the lead.
        self.waiting = waiting
        self.lead = False
        # A bare lock as a one-shot event: held until the write is done (or, for a waiting
        # write, until its thread must lead).
        self.wake = _thread.allocate_lock()
        self.wake.acquire()

    def result(self) -> int:
        """The statement's rowcount once committed; what the write failed with, raised.

        For a submitted write, the first call (from one thread) commits it if nobody else
        does; later calls return at once.
        """
        group = self.group
        if group is not None:
            self.group = None
            group.wait_submitted(self)
        self.wake.acquire()
        self.wake.release()  # done for good: later calls return at once
        if self.error is not None:
            raise self.error
        return self.rowcount


class GroupCommit:
    """Runs writes on ``conn`` (guarded by ``conn_lock``), many to a transaction."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        conn_lock: threading.Lock,
        *,
        before_commit: Callable[[int], None] | None = None,
    ) -> None:
        # conn must be in autocommit mode (isolation_level=None): transactions are ours.
        self._conn = conn
        self._conn_lock = conn_lock
        self._mutex = threading.Lock()
        # Writes not committed yet. While a thread waits on one in execute(), some thread
        # leads (busy); submitted ones may wait unled for a result(), see the docstring.
        self._queue: list[Write] = []
        self._busy = False
        # Tests: called with the batch size inside the transaction, just before COMMIT.
        self._before_commit = before_commit
        self.batches = 0
        self.writes = 0

    def execute(self, sql: str, params: Params) -> int:
        """Run one write statement; its rowcount once its transaction has committed.

        ``params`` may be a function that returns them (called by whichever thread leads);
        what it raises is raised here, and the statement is not run.
        """
        write = Write(sql, params, waiting=True)
        with self._mutex:
            self._queue.append(write)
            lead = not self._busy
            self._busy = True
        if not lead:
            write.wake.acquire()  # until a leader committed it, or handed this one the lead
            if not write.lead:
                write.wake.release()
                return write.result()
        self._lead()
        return write.result()

    def submit(self, sql: str, params: Params) -> Write:
        """Queue a write and return at once; ``result()`` commits it (with whatever else is
        queued) and returns once it is stored. The ``SUBMIT_BATCH``-th queued write is
        committed by its submitter, with the others, before this returns.
        """
        write = Write(sql, params, waiting=False, group=self)
        with self._mutex:
            self._queue.append(write)
            lead = not self._busy and len(self._queue) >= SUBMIT_BATCH
            if lead:
                self._busy = True
        if lead:
            self._lead()
        return write

    def wait_submitted(self, write: Write) -> None:
        """Return once a submitted ``write`` is committed, leading the commit if need be."""
        with self._mutex:
            # A leader that finds this write queued after its batch hands it the lead.
            write.waiting = True
            lead = not self._busy and bool(self._queue)
            if lead:
                self._busy = True
        if not lead:
            write.wake.acquire()  # until it is committed, or this thread must lead
            if not write.lead:
                write.wake.release()  # committed: result() reads it
                return
        self._lead()  # its batch holds this write (the lead was handed over for it)

    def flush(self) -> None:
        """Return once every write queued before this call is committed (or failed)."""
        self.execute("", ())  # an empty write, committed after them: see _commit

    def _lead(self) -> None:
        with self._mutex:
            batch, self._queue = self._queue, []
        successor = None
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                # A thread blocked on a write queued meanwhile leads the next batch; writes
                # only submitted wait for their result() (or a full batch).
                successor = next((write for write in self._queue if write.waiting), None)
                if successor is not None:
                    successor.lead = True
                else:
                    self._busy = False
            for write in batch:  # done: each result() returns now
                write.wake.release()
            if successor is not None:
                successor.wake.release()

    def _commit(self, batch: list[Write]) -> None:
        for write in batch:
            if callable(write.params):
                try:
                    write.params = write.params()
                except Exception as exc:  # that write's own failure
                    write.error = exc
        conn = self._conn
        with self._conn_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                for write in batch:
                    params = write.params
                    if write.error is not None or callable(params) or not write.sql:
                        continue  # its parameters failed (its own error), or flush()
                    try:
                        write.rowcount = conn.execute(write.sql, params).rowcount
                    except _STATEMENT_ERRORS as exc:
                        write.error = exc
                if self._before_commit is not None:
                    self._before_commit(len(batch))
                conn.execute("COMMIT")
            except BaseException as exc:
                # The first error is the one to report (a closed connection fails both).
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                for write in batch:
                    write.rowcount = -1
                    write.error = write.error or exc
                return
        self.batches += 1
        self.writes += sum(1 for write in batch if write.sql)  # not flush()'s
