"""The eight state types: what each does between its Entered and Exited events.

Field evaluation is the state's query-language strategy (`state.queries`); events,
Retry/Catch and exit are the runtime's.
"""

from __future__ import annotations

import uuid
from typing import Any

from .concurrency import FailureTolerance, run_concurrently
from .errors import NO_CHOICE_MATCHED, StatesError
from .runtime import ExecutionRun, StateHandler, Track
from .states import Assigned, State
from .tasks import invoke_task

Transition = tuple[Any, str | None]


def run_pass(
    run: ExecutionRun, state: State, raw: Any, track: Track, entered: int, entered_time: float
) -> Transition:
    output, assigned = state.queries.pass_output(state, run.scope(state, raw, track, entered_time))
    run.exit_state(state, output, track, assigned)
    return output, state.next


def run_succeed(
    run: ExecutionRun, state: State, raw: Any, track: Track, entered: int, entered_time: float
) -> Transition:
    output = state.queries.succeed_output(state, run.scope(state, raw, track, entered_time))
    run.exit_state(state, output, track, None)
    return output, None


def run_fail(
    run: ExecutionRun, state: State, raw: Any, track: Track, entered: int, entered_time: float
) -> Transition:
    error, cause = state.queries.fail_fields(state, run.scope(state, raw, track, entered_time))
    track.open_state = None
    raise StatesError(error, cause)


def run_choice(
    run: ExecutionRun, state: State, raw: Any, track: Track, entered: int, entered_time: float
) -> Transition:
    scope = run.scope(state, raw, track, entered_time)
    output, next_name, assigned = state.queries.choose(state, scope)
    if next_name is None:
        track.open_state = None
        raise StatesError(NO_CHOICE_MATCHED, "No Matches!")
    run.exit_state(state, output, track, assigned)
    return output, next_name


def run_wait(
    run: ExecutionRun, state: State, raw: Any, track: Track, entered: int, entered_time: float
) -> Transition:
    scope = run.scope(state, raw, track, entered_time)
    seconds, output, assigned = state.queries.wait(state, scope, run.clock.now())
    run.sleep(seconds, track)
    run.exit_state(state, output, track, assigned)
    return output, state.next


def run_task(
    run: ExecutionRun, state: State, raw: Any, track: Track, entered: int, entered_time: float
) -> Transition:
    def attempt(retry_count: int) -> tuple[Any, Assigned]:
        scope = run.scope(state, raw, track, entered_time, retry_count)
        task_input = state.queries.task_input(state, scope)
        result = invoke_task(run, state, task_input, track, retry_count)
        return state.queries.result_output(state, scope, result)

    return run.with_retry_and_catch(state, raw, track, entered, entered_time, attempt)


def run_parallel(
    run: ExecutionRun, state: State, raw: Any, track: Track, entered: int, entered_time: float
) -> Transition:
    def attempt(retry_count: int) -> tuple[Any, Assigned]:
        scope = run.scope(state, raw, track, entered_time, retry_count)
        branch_input = state.queries.branch_input(state, scope)
        run.emit(track, "ParallelStateStarted")
        jobs = [(branch, branch_input) for branch in state.branches]
        result = run_concurrently(run, track, state, jobs, len(jobs))
        run.emit(track, "ParallelStateSucceeded")
        return state.queries.result_output(state, scope, result)

    return run.with_retry_and_catch(
        state, raw, track, entered, entered_time, attempt, "ParallelStateFailed"
    )


def run_map(
    run: ExecutionRun, state: State, raw: Any, track: Track, entered: int, entered_time: float
) -> Transition:
    def attempt(retry_count: int) -> tuple[Any, Assigned]:
        scope = run.scope(state, raw, track, entered_time, retry_count)
        map_input = state.queries.map_input(state, scope)
        run.emit(
            track,
            "MapStateStarted",
            "mapStateStartedEventDetails",
            {"length": len(map_input.item_inputs)},
        )
        assert state.processor is not None  # the compiler requires an ItemProcessor
        jobs = [(state.processor, item) for item in map_input.item_inputs]
        tolerance = FailureTolerance(
            map_input.tolerated_failure_count, map_input.tolerated_failure_percentage
        )
        if state.distributed:
            result = _run_map_run(run, state, track, jobs, map_input.max_concurrency, tolerance)
        else:
            result = run_concurrently(run, track, state, jobs, map_input.max_concurrency, tolerance)
        # MapStateSucceeded does not move the track: AWS links the exit to the last iteration.
        last_event_id = track.last_event_id
        run.emit(track, "MapStateSucceeded")
        track.last_event_id = last_event_id
        return state.queries.result_output(state, scope, result)

    return run.with_retry_and_catch(
        state, raw, track, entered, entered_time, attempt, "MapStateFailed"
    )


def _run_map_run(
    run: ExecutionRun,
    state: State,
    track: Track,
    jobs: list[Any],
    max_concurrency: int,
    tolerance: FailureTolerance,
) -> list[Any]:
    """A Distributed Map: its iterations are a Map Run with its own events."""
    config = run.config
    map_run_arn = (
        f"arn:{config.partition}:states:{config.region}:{config.account_id}:"
        f"mapRun:{config.state_machine_name}/{state.name}:{uuid.uuid4()}"
    )
    run.emit(track, "MapRunStarted", "mapRunStartedEventDetails", {"mapRunArn": map_run_arn})
    try:
        result = run_concurrently(run, track, state, jobs, max_concurrency, tolerance)
    except StatesError as error:
        details = {"error": error.error, "cause": error.cause}
        run.emit(
            track,
            "MapRunFailed",
            "mapRunFailedEventDetails",
            {key: value for key, value in details.items() if value is not None},
        )
        raise
    run.emit(track, "MapRunSucceeded")
    return result


HANDLERS: dict[str, StateHandler] = {
    "Pass": run_pass,
    "Task": run_task,
    "Choice": run_choice,
    "Wait": run_wait,
    "Succeed": run_succeed,
    "Fail": run_fail,
    "Parallel": run_parallel,
    "Map": run_map,
}
