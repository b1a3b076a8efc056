"""The runtime state of one execution: its history, tracks, context object, Retry and Catch.

The state types themselves live in `handlers`; this module runs whatever handler table
it is given, so it never imports the modules that build on it.
"""

from __future__ import annotations

import datetime as _dt
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .clock import Clock, is_real
from .encoding import encode_json, exceeds_payload_limit, iso_timestamp
from .errors import (
    DATA_LIMIT_EXCEEDED,
    QUERY_EVALUATION_ERROR,
    RUNTIME,
    TIMEOUT,
    ExecutionAborted,
    ExecutionTimedOut,
    StatesError,
    error_output,
    state_error_text,
)
from .execution import Execution, ExecutionConfig
from .resources import Resources
from .states import Assigned, Machine, State
from .templates import EvaluationError, Scope, Variables

HISTORY_LIMIT = 25_000
# States whose context object carries $$.State.RetryCount.
_RETRIABLE_TYPES = frozenset({"Task", "Parallel", "Map"})
_NO_PAYLOAD = object()  # nothing encoded yet on a track

# A state type's handler: (run, state, raw input, track, entered event id, entered time)
# -> (output, next state name or None at the end).
StateHandler = Callable[["ExecutionRun", State, Any, "Track", int, float], tuple[Any, str | None]]


class TerminalError(StatesError):
    """A failure no Retry or Catch may handle (history or payload limits)."""

    @property
    def terminal(self) -> bool:
        return True


def data_limit_error(state_name: str) -> StatesError:
    return TerminalError(
        DATA_LIMIT_EXCEEDED,
        f"The state/task '{state_name}' returned a result with a size exceeding the maximum "
        "number of bytes service limit.",
    )


def error_matches(names: tuple[str, ...], error: str | None) -> bool:
    """Whether an ErrorEquals list matches `error` (States.TaskFailed excludes timeouts)."""
    for name in names:
        if name == error or name == "States.ALL":
            return True
        if name == "States.TaskFailed" and error != TIMEOUT:
            return True
    return False


class Track:
    """One thread of execution (top level, a branch or an iteration)."""

    __slots__ = (
        "abort_signal",
        "event_before_entered",
        "last_event_id",
        "last_payload",
        "last_text",
        "open_state",
        "silent",
        "variables",
    )

    def __init__(
        self, last_event_id: int, abort_signal: threading.Event | None, variables: Variables
    ) -> None:
        # The payload last written to this track's history and its JSON text: a state's
        # output is the next state's input, encoded once for both events. Payloads are never
        # mutated (paths copy, handlers get copies), so identity means the same text.
        self.last_payload: Any = _NO_PAYLOAD
        self.last_text = ""
        # Distributed Map iterations run as child executions: no events in this history.
        self.silent = False
        # Event ids that the next event links to (previousEventId).
        self.last_event_id = last_event_id
        self.event_before_entered = last_event_id
        self.abort_signal = abort_signal
        self.variables = variables
        # The state entered and neither exited nor failed yet (it gets a StateAborted event).
        self.open_state: str | None = None

    def aborted(self) -> bool:
        return self.abort_signal is not None and self.abort_signal.is_set()


class ExecutionRun:
    """Per-execution mutable state shared by all tracks."""

    def __init__(
        self,
        machine: Machine,
        resources: Resources,
        clock: Clock,
        execution: Execution,
        config: ExecutionConfig,
        handlers: Mapping[str, StateHandler],
        state_machine_arn: str,
        role_arn: str,
    ) -> None:
        self.machine = machine
        self.resources = resources
        self.clock = clock
        self.real_time = is_real(clock)
        self.execution = execution
        self.config = config
        self.handlers = handlers
        self.state_machine_arn = state_machine_arn
        self.role_arn = role_arn
        self.events = execution.history
        self.lock = threading.Lock()
        self.deadline: float | None = None
        self._start_time_iso: str | None = None
        self.timed_out = threading.Event()

    @property
    def start_time_iso(self) -> str:
        """$$.Execution.StartTime, formatted on first use: most executions never read it."""
        if self._start_time_iso is None:
            self._start_time_iso = iso_timestamp(self.execution.start_date)
        return self._start_time_iso

    # --- history ---

    def emit(
        self,
        track: Track,
        event_type: str,
        details_key: str | None = None,
        details: Any = None,
        previous_event_id: int | None = None,
    ) -> int:
        if track.silent:
            return track.last_event_id
        timestamp = _dt.datetime.fromtimestamp(self.clock.now(), _dt.UTC)
        with self.lock:
            event_id = len(self.events) + 1
            if event_id > HISTORY_LIMIT and not event_type.startswith("Execution"):
                # AWS caps a history at 25,000 events; this also stops runaway loops.
                raise TerminalError(
                    RUNTIME,
                    "The execution reached the maximum number of history events "
                    f"({HISTORY_LIMIT}).",
                )
            event = {
                "timestamp": timestamp,
                "type": event_type,
                "id": event_id,
                "previousEventId": (
                    track.last_event_id if previous_event_id is None else previous_event_id
                ),
            }
            if details_key is not None:
                event[details_key] = details
            self.events.append(event)
        track.last_event_id = event_id
        return event_id

    # --- context object ---

    def context_builder(
        self,
        state: State,
        entered_time: float,
        retry_count: int,
    ) -> Callable[[], dict[str, Any]]:
        def build() -> dict[str, Any]:
            state_context: dict[str, Any] = {
                "Name": state.name,
                "EnteredTime": iso_timestamp(entered_time),
            }
            if state.type in _RETRIABLE_TYPES:
                state_context["RetryCount"] = retry_count
            context = {
                "Execution": {
                    "Id": self.execution.arn,
                    "Input": self.execution.input,
                    "StartTime": self.start_time_iso,
                    "Name": self.execution.name,
                    "RoleArn": self.role_arn,
                    "RedriveCount": 0,
                },
                "StateMachine": {
                    "Id": self.state_machine_arn,
                    "Name": self.config.state_machine_name,
                },
                "State": state_context,
            }
            if state.type == "Task":
                context["Task"] = {"Token": self.task_token(state.name, retry_count)}
            return context

        return build

    def task_token(self, state_name: str, retry_count: int) -> str:
        # Opaque and unique per execution, state and attempt, like AWS's tokens.
        return uuid.uuid5(
            uuid.NAMESPACE_URL, f"{self.execution.arn}/{state_name}/{retry_count}"
        ).hex

    def scope(
        self,
        state: State,
        state_input: Any,
        track: Track,
        entered_time: float,
        retry_count: int = 0,
    ) -> Scope:
        return Scope(
            state_input, self.context_builder(state, entered_time, retry_count), track.variables
        )

    # --- liveness ---

    def check_alive(self, track: Track) -> None:
        if self.deadline is not None and self.clock.now() >= self.deadline:
            self.timed_out.set()
            raise ExecutionTimedOut()
        if self.timed_out.is_set():
            raise ExecutionTimedOut()
        if track.abort_signal is not None and track.abort_signal.is_set():
            raise ExecutionAborted()

    def sleep(self, seconds: float, track: Track) -> None:
        """Sleep, but wake for the machine deadline or an abort."""
        if seconds <= 0:
            self.check_alive(track)
            return
        limit = seconds
        if self.deadline is not None:
            limit = min(limit, max(0.0, self.deadline - self.clock.now()))
        if self.real_time and track.abort_signal is not None:
            track.abort_signal.wait(limit)
        else:
            self.clock.sleep(limit)
        self.check_alive(track)

    # --- running machines ---

    def run_machine(self, machine: Machine, machine_input: Any, track: Track) -> Any:
        name = machine.start_at
        states = machine.states
        state_input = machine_input
        while True:
            self.check_alive(track)
            output, next_name = self.run_state(states[name], state_input, track)
            if next_name is None:
                return output
            name, state_input = next_name, output

    def run_state(self, state: State, raw: Any, track: Track) -> tuple[Any, str | None]:
        entered_time = self.clock.now()
        track.event_before_entered = track.last_event_id
        if raw is track.last_payload:
            text = track.last_text
        else:
            text = encode_json(raw)
            track.last_payload, track.last_text = raw, text
        entered = self.emit(
            track,
            state.type + "StateEntered",
            "stateEnteredEventDetails",
            {"name": state.name, "input": text, "inputDetails": {"truncated": False}},
        )
        track.open_state = state.name
        try:
            return self.handlers[state.type](self, state, raw, track, entered, entered_time)
        except EvaluationError as e:
            raise self.evaluation_failure(state, track, entered, e) from None
        except ExecutionAborted:
            if track.open_state == state.name:
                self.emit(track, state.type + "StateAborted")
                track.open_state = None
            raise

    def evaluation_failure(
        self, state: State, track: Track, entered: int, error: EvaluationError
    ) -> StatesError:
        """The StatesError for a failed evaluation (JSONata ones also get an event)."""
        cause = state_error_text(state.name, entered, error.message)
        if error.error == QUERY_EVALUATION_ERROR:
            details = {"error": error.error, "cause": cause, "state": state.name}
            if error.location:
                details["location"] = error.location
            # AWS links this event to the state's predecessor (to the state itself for Wait).
            previous = entered if state.type == "Wait" else track.event_before_entered
            self.emit(
                track,
                "EvaluationFailed",
                "evaluationFailedEventDetails",
                details,
                previous_event_id=previous,
            )
        return StatesError(error.error, cause)

    def exit_state(self, state: State, output: Any, track: Track, assigned: Assigned) -> None:
        text = encode_json(output)
        if exceeds_payload_limit(text):
            raise data_limit_error(state.name)
        track.last_payload, track.last_text = output, text
        details: dict[str, Any] = {
            "name": state.name,
            "output": text,
            "outputDetails": {"truncated": False},
        }
        if assigned:
            track.variables.local.update(assigned)
            details["assignedVariables"] = {k: encode_json(v) for k, v in assigned.items()}
            details["assignedVariablesDetails"] = {"truncated": False}
        track.open_state = None
        self.emit(track, state.type + "StateExited", "stateExitedEventDetails", details)

    # --- retry / catch ---

    def with_retry_and_catch(
        self,
        state: State,
        raw: Any,
        track: Track,
        entered: int,
        entered_time: float,
        attempt: Callable[[int], tuple[Any, Assigned]],
        failed_event: str | None = None,
    ) -> tuple[Any, str | None]:
        """Run `attempt(retry_count)` under the state's Retry and Catch, then exit the state.

        `failed_event` (ParallelStateFailed, MapStateFailed) is emitted when no retrier
        takes the error.
        """
        try:
            output, assigned = self._with_retry(state, track, entered, attempt, failed_event)
        except StatesError as error:
            caught = self._catch(state, error, raw, track, entered_time)
            if caught is None:
                track.open_state = None
                error.failed_state_type = state.type
                raise
            return caught
        if track.abort_signal is not None and track.abort_signal.is_set():
            raise ExecutionAborted()
        self.exit_state(state, output, track, assigned)
        return output, state.next

    def _with_retry(
        self,
        state: State,
        track: Track,
        entered: int,
        attempt: Callable[[int], tuple[Any, Assigned]],
        failed_event: str | None,
    ) -> tuple[Any, Assigned]:
        attempts_by_retrier = [0] * len(state.retriers)
        retry_count = 0
        while True:
            try:
                try:
                    return attempt(retry_count)
                except EvaluationError as e:
                    raise self.evaluation_failure(state, track, entered, e) from None
            except StatesError as error:
                if error.terminal:
                    raise
                index = next(
                    (
                        i
                        for i, retrier in enumerate(state.retriers)
                        if error_matches(retrier.errors, error.error)
                    ),
                    None,
                )
                if (
                    index is None
                    or attempts_by_retrier[index] >= state.retriers[index].max_attempts
                ):
                    if failed_event is not None:
                        self.emit(track, failed_event)
                    raise
                retrier = state.retriers[index]
                delay = retrier.interval * (retrier.backoff ** attempts_by_retrier[index])
                if retrier.max_delay is not None:
                    delay = min(delay, retrier.max_delay)
                if retrier.jitter == "FULL":
                    delay = random.uniform(0, delay)
                attempts_by_retrier[index] += 1
                retry_count += 1
                self.sleep(delay, track)

    def _catch(
        self, state: State, error: StatesError, raw: Any, track: Track, entered_time: float
    ) -> tuple[Any, str] | None:
        if error.terminal:
            return None
        for catcher in state.catchers:
            if error_matches(catcher.errors, error.error):
                cause = error.cause
                if cause is None and error.error == TIMEOUT:
                    cause = ""  # AWS hands Catch an empty Cause for timeouts
                scope = self.scope(state, raw, track, entered_time)
                output, assigned = state.queries.catch_output(
                    state, scope, catcher, error_output(error.error, cause)
                )
                self.exit_state(state, output, track, assigned)
                return output, catcher.next
        return None
