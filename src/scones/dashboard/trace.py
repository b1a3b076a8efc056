"""The path an execution took, read from its event history, per state of its definition.

Events carry ``previousEventId``; a state's events chain back to its ``...StateEntered``,
and the first state of a Map iteration or a Parallel branch chains back to
``MapIterationStarted`` or ``ParallelStateStarted``. Following those links places every state
run in its branch (``Map/0/Inner``), so states of the same name in different branches stay
apart, even when iterations interleave.

Statuses are the Step Functions console's: ``succeeded``, ``failed``, ``caught`` (failed,
then a Catch moved on), ``running``, and ``not_reached`` for states without a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SUCCEEDED, FAILED, CAUGHT, RUNNING, NOT_REACHED = (
    "succeeded",
    "failed",
    "caught",
    "running",
    "not_reached",
)
# The worst status of a state's runs colours it: one failed iteration makes a Map state red.
_SEVERITY = {FAILED: 4, CAUGHT: 3, RUNNING: 2, SUCCEEDED: 1, NOT_REACHED: 0}
_ATTEMPT_EVENTS = frozenset(
    {
        "TaskScheduled",
        "LambdaFunctionScheduled",
        "ActivityScheduled",
        "MapStateStarted",
        "ParallelStateStarted",
    }
)
_FAILURE_EVENTS = frozenset(
    {
        "TaskFailed",
        "TaskTimedOut",
        "LambdaFunctionFailed",
        "LambdaFunctionTimedOut",
        "LambdaFunctionScheduleFailed",
        "LambdaFunctionStartFailed",
        "TaskStartFailed",
        "TaskSubmitFailed",
        "ActivityFailed",
        "ActivityTimedOut",
        "MapStateFailed",
        "ParallelStateFailed",
        "EvaluationFailed",
    }
)
_SUCCESS_EVENTS = frozenset(
    {"TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded", "MapStateSucceeded"}
)
# Events of a Map or Parallel state that follow the last event of one of its branches.
_CONTAINER_EVENTS = frozenset(
    {
        "MapIterationSucceeded",
        "MapIterationFailed",
        "MapIterationAborted",
        "MapStateSucceeded",
        "MapStateFailed",
        "MapStateAborted",
        "MapStateExited",
        "ParallelStateSucceeded",
        "ParallelStateFailed",
        "ParallelStateAborted",
        "ParallelStateExited",
    }
)
MAX_RUNS_KEPT = 25  # runs per state whose input and output the page shows


def state_path(scope: tuple[str, ...], name: str) -> str:
    """The id of a state in its definition: branch scopes then its name, joined by '/'."""
    return "/".join((*scope, name))


@dataclass
class StateRun:
    """One time an execution entered a state."""

    path: str
    name: str
    type: str
    scope: tuple[str, ...]
    parent: StateRun | None
    entered_at: str | None
    input: str | None
    output: str | None = None
    exited_at: str | None = None
    error: str | None = None
    cause: str | None = None
    attempts: int = 0
    last_failed: bool = False
    status: str = RUNNING

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)

    def seconds(self) -> float | None:
        if self.entered_at is None or self.exited_at is None:
            return None
        try:
            start = datetime.fromisoformat(self.entered_at)
            stop = datetime.fromisoformat(self.exited_at)
        except ValueError:
            return None
        return (stop - start).total_seconds()


@dataclass
class StateTrace:
    """Every run of one state in one execution, and the status that colours it."""

    path: str
    status: str = NOT_REACHED
    runs: list[StateRun] = field(default_factory=list)
    entered: int = 0
    failed: int = 0
    caught: int = 0
    retries: int = 0
    seconds: float = 0.0

    def add(self, run: StateRun) -> None:
        self.entered += 1
        self.failed += run.status == FAILED
        self.caught += run.status == CAUGHT
        self.retries += run.retries
        self.seconds += run.seconds() or 0.0
        if _SEVERITY[run.status] > _SEVERITY[self.status]:
            self.status = run.status
        if len(self.runs) < MAX_RUNS_KEPT:
            self.runs.append(run)


@dataclass
class ExecutionTrace:
    """Per state path: its trace; and the transitions taken, as (from path, to path, kind)."""

    states: dict[str, StateTrace]
    transitions: set[tuple[str, str, str]]

    def status_of(self, path: str) -> str:
        trace = self.states.get(path)
        return trace.status if trace is not None else NOT_REACHED


def _details(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _branch_of(definition: dict[str, Any] | None, container: StateRun, first_state: str) -> int:
    """Which Parallel branch starts with ``first_state`` (0 when unknown)."""
    state = _find_state(definition, container.path)
    branches = state.get("Branches") if isinstance(state, dict) else None
    if isinstance(branches, list):
        for index, branch in enumerate(branches):
            if isinstance(branch, dict) and branch.get("StartAt") == first_state:
                return index
    return 0


def _find_state(definition: dict[str, Any] | None, path: str) -> dict[str, Any] | None:
    """The state at ``path`` (``Outer/0/Inner``) in a definition, or None."""
    if not isinstance(definition, dict):
        return None
    parts = path.split("/")
    states: Any = definition.get("States")
    state: Any = None
    index = 0
    while index < len(parts):
        if not isinstance(states, dict):
            return None
        state = states.get(parts[index])
        if not isinstance(state, dict):
            return None
        index += 1
        if index == len(parts):
            return state
        branches = sub_machines(state)
        try:
            states = branches[int(parts[index])].get("States")
        except (ValueError, IndexError):
            return None
        index += 1
    return None


def sub_machines(state: dict[str, Any]) -> list[dict[str, Any]]:
    """A Parallel state's branches, or a Map state's item processor as its one branch."""
    if state.get("Type") == "Parallel":
        return [b for b in state.get("Branches") or [] if isinstance(b, dict)]
    if state.get("Type") == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator")
        return [processor] if isinstance(processor, dict) else []
    return []


def trace_execution(
    history: list[dict[str, Any]],
    execution_status: str,
    definition: dict[str, Any] | None = None,
) -> ExecutionTrace:
    """Each state's runs and status from an execution's history (see the module docstring)."""
    by_id: dict[int, dict[str, Any]] = {}
    owner: dict[int, StateRun | None] = {}
    runs: list[StateRun] = []
    transitions: set[tuple[str, str, str]] = set()
    for event in history:
        event_id = event.get("id")
        if not isinstance(event_id, int):
            continue
        by_id[event_id] = event
        event_type = str(event.get("type", ""))
        prev_id = event.get("previousEventId")
        prev = by_id.get(prev_id) if isinstance(prev_id, int) else None
        prev_owner = owner.get(prev_id) if isinstance(prev_id, int) else None
        details = _details(event)
        if event_type.endswith("StateEntered"):
            name = str(details.get("name", "?"))
            prev_type = str(prev.get("type", "")) if prev else ""
            if prev_type in ("MapIterationStarted", "ParallelStateStarted") and prev_owner:
                branch = 0
                if prev_type == "ParallelStateStarted":
                    branch = _branch_of(definition, prev_owner, name)
                scope = (*prev_owner.path.split("/"), str(branch))
                parent: StateRun | None = prev_owner
                came_from = None
            else:
                scope = prev_owner.scope if prev_owner else ()
                parent = prev_owner.parent if prev_owner else None
                came_from = prev_owner
            run = StateRun(
                path=state_path(scope, name),
                name=name,
                type=event_type.removesuffix("StateEntered"),
                scope=scope,
                parent=parent,
                entered_at=_text(event.get("timestamp")),
                input=_text(details.get("input")),
            )
            runs.append(run)
            owner[event_id] = run
            if came_from is not None:
                kind = "catch" if came_from.last_failed else "next"
                transitions.add((came_from.path, run.path, kind))
            continue
        run_owner = prev_owner
        if event_type in _CONTAINER_EVENTS:
            prefix = "Map" if event_type.startswith("Map") else "Parallel"
            while run_owner is not None and run_owner.type != prefix:
                run_owner = run_owner.parent
        owner[event_id] = run_owner
        if run_owner is None:
            continue
        if event_type in _ATTEMPT_EVENTS:
            run_owner.attempts += 1
        elif event_type in _FAILURE_EVENTS:
            run_owner.last_failed = True
            run_owner.error = _text(details.get("error"))
            run_owner.cause = _text(details.get("cause"))
        elif event_type in _SUCCESS_EVENTS:
            run_owner.last_failed = False
        elif event_type.endswith("StateExited") and event_type != "MapIterationExited":
            run_owner.exited_at = _text(event.get("timestamp"))
            run_owner.output = _text(details.get("output"))
            run_owner.status = CAUGHT if run_owner.last_failed else SUCCEEDED
        elif event_type.endswith("StateAborted"):
            run_owner.exited_at = _text(event.get("timestamp"))
            run_owner.status = FAILED
    ended_at = _text(history[-1].get("timestamp")) if history else None
    states: dict[str, StateTrace] = {}
    for run in runs:
        if run.status == RUNNING and execution_status != "RUNNING":
            # Never left: the state the execution failed, timed out or was aborted in.
            run.status = FAILED
            run.exited_at = run.exited_at or ended_at
        states.setdefault(run.path, StateTrace(run.path)).add(run)
    return ExecutionTrace(states, transitions)
