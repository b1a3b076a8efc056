"""Parallel branches and Map iterations on threads, with AWS's event order and failure rules."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .errors import (
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    ExecutionAborted,
    ExecutionTimedOut,
    StatesError,
    error_output,
)
from .runtime import ExecutionRun, Track
from .states import Machine, State
from .templates import Variables

# An inline Map runs at most 40 iterations at once on AWS.
MAP_THREAD_CAP = 40


@dataclass(frozen=True)
class FailureTolerance:
    """A Map's ToleratedFailureCount/Percentage; both None means no failure is tolerated."""

    count: int | None = None
    percentage: float | None = None

    @property
    def configured(self) -> bool:
        return self.count is not None or self.percentage is not None

    def exceeded(self, failures: int, total: int) -> bool:
        if not self.configured:
            return failures > 0
        # With both thresholds set, exceeding either one fails the Map.
        over_count = self.count is not None and failures > self.count
        over_percentage = self.percentage is not None and failures * 100.0 / total > self.percentage
        return over_count or over_percentage


def run_concurrently(
    run: ExecutionRun,
    track: Track,
    state: State,
    jobs: list[tuple[Machine, Any]],
    concurrency: int,
    tolerance: FailureTolerance | None = None,
) -> list[Any]:
    """Run branches (Parallel) or iterations (Map: `tolerance` given) at most `concurrency`
    at once (0: all).

    The first failure (beyond the tolerated ones for Map) aborts the others; results keep
    the input order.
    """
    job_count = len(jobs)
    results: list[Any] = [None] * job_count
    if job_count == 0:
        return results
    is_map = tolerance is not None
    failure_rule = tolerance or FailureTolerance()
    abort_signal = threading.Event()
    parent_abort = track.abort_signal
    if track.aborted():
        abort_signal.set()
    failures: list[StatesError] = []
    failure_lock = threading.Lock()
    first_error: list[BaseException] = []
    first_failed_job: list[int] = []
    started_after = track.last_event_id
    # Each job's last state event, before its *Iteration* event: AWS links later events there.
    last_event_of_job: list[int] = [track.last_event_id] * job_count
    # Distributed Map iterations are child executions: their events are not in this history.
    silent = track.silent or (is_map and state.distributed)

    def iteration_event(job_track: Track, event: str, index: int) -> None:
        key = "mapIteration" + event + "EventDetails"
        run.emit(job_track, "MapIteration" + event, key, {"index": index, "name": state.name})

    def run_job(index: int, previous_event_id: int) -> None:
        machine, job_input = jobs[index]
        job_track = Track(previous_event_id, abort_signal, Variables(track.variables))
        job_track.silent = silent
        try:
            if parent_abort is not None and parent_abort.is_set():
                abort_signal.set()
            results[index] = run.run_machine(machine, job_input, job_track)
            last_event_of_job[index] = job_track.last_event_id
            if is_map:
                iteration_event(job_track, "Succeeded", index)
        except StatesError as error:
            last_event_of_job[index] = job_track.last_event_id
            with failure_lock:
                failures.append(error)
                if is_map:
                    results[index] = error_output(error.error, error.cause)
                    iteration_event(job_track, "Failed", index)
                if failure_rule.exceeded(len(failures), job_count) or error.terminal:
                    if not first_error:
                        first_error.append(error)
                        first_failed_job.append(index)
                    abort_signal.set()
        except ExecutionAborted:
            if is_map:
                iteration_event(job_track, "Aborted", index)
        except BaseException as error:  # timeouts and bugs end the whole execution
            with failure_lock:
                if not first_error:
                    first_error.append(error)
            abort_signal.set()

    def start_job(index: int) -> int:
        if is_map and not silent:
            return run.emit(
                track,
                "MapIterationStarted",
                "mapIterationStartedEventDetails",
                {"index": index, "name": state.name},
                previous_event_id=started_after,
            )
        return started_after

    def stopping() -> bool:
        return abort_signal.is_set() or (parent_abort is not None and parent_abort.is_set())

    workers = min(concurrency if concurrency > 0 else job_count, job_count)
    if is_map:
        workers = min(workers, MAP_THREAD_CAP)
    if workers <= 1:
        for index in range(job_count):
            if stopping():
                break
            run_job(index, start_job(index))
            # The next iteration follows the last state event of this one.
            started_after = last_event_of_job[index]
    else:
        slot_free = threading.Semaphore(0)

        def job(index: int, previous_event_id: int) -> None:
            try:
                run_job(index, previous_event_id)
            finally:
                slot_free.release()

        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"asl-{state.name}"
        ) as pool:
            # The first batch starts together (all *IterationStarted events first, as on AWS);
            # later items start as slots free up.
            first_batch = [start_job(index) for index in range(workers)]
            futures: list[Future[None]] = [
                pool.submit(job, index, first_batch[index]) for index in range(workers)
            ]
            for index in range(workers, job_count):
                slot_free.acquire()
                if stopping():
                    break
                futures.append(pool.submit(job, index, start_job(index)))
            for future in futures:
                future.result()
    if first_failed_job:
        track.last_event_id = last_event_of_job[first_failed_job[0]]
    elif not silent:
        with run.lock:
            track.last_event_id = len(run.events)
    if first_error:
        # AWS marks the Task state that failed inside a branch/iteration as aborted.
        for failure in failures:
            if failure.failed_state_type == "Task":
                run.emit(track, "TaskStateAborted")
        error = first_error[0]
        if (
            isinstance(error, StatesError)
            and is_map
            and not error.terminal
            and failure_rule.configured
        ):
            raise StatesError(
                EXCEED_TOLERATED_FAILURE_THRESHOLD,
                "The specified tolerated failure threshold was exceeded",
            )
        raise error
    if parent_abort is not None and parent_abort.is_set():
        raise ExecutionAborted()
    if run.timed_out.is_set():
        raise ExecutionTimedOut()
    return results
