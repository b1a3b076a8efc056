"""Error types and the error names Step Functions uses."""

from __future__ import annotations

from typing import Any

# Error names as AWS spells them.
ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
BRANCH_FAILED = "States.BranchFailed"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"
PERMISSIONS = "States.Permissions"

# States.ALL does not match these; they end the execution (AWS docs, "Error names").
TERMINAL_ERRORS = frozenset({RUNTIME})


class DefinitionError(ValueError):
    """A state machine definition is invalid; lists every problem with its JSON location."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        body = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid state machine definition ({len(self.problems)} {noun}):\n{body}")


class MissingResourceError(DefinitionError):
    """A Task names a Resource for which no handler is registered."""


class StatesError(Exception):
    """A runtime failure with an AWS error name; it flows through Retry and Catch."""

    def __init__(self, error: str | None, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}" if cause else str(error))
        self.error = error
        self.cause = cause
        # The type of the state that failed with this error, once it leaves that state
        # (a Task failing inside a branch gets a TaskStateAborted event there).
        self.failed_state_type: str | None = None

    @property
    def terminal(self) -> bool:
        return self.error in TERMINAL_ERRORS


class TaskError(StatesError):
    """Raise from a handler to fail the task with a chosen error name and cause."""


class TaskTimedOut(StatesError):
    """A task ran past its TimeoutSeconds."""

    def __init__(self, cause: str | None = None) -> None:
        super().__init__(TIMEOUT, cause)


class ExecutionTimedOut(Exception):
    """The machine-level TimeoutSeconds elapsed; unwinds every running state."""


class ExecutionAborted(Exception):
    """The execution was stopped, or a sibling branch/iteration failed."""


def runtime_error(state: str, entered_id: int, message: str) -> StatesError:
    """States.Runtime with the cause text AWS uses."""
    return StatesError(RUNTIME, state_error_text(state, entered_id, message))


def state_error_text(state: str, entered_id: int, message: str) -> str:
    return (
        f"An error occurred while executing the state '{state}' "
        f"(entered at the event id #{entered_id}). {message}"
    )


def error_output(error: str | None, cause: str | None) -> dict[str, Any]:
    """The {"Error", "Cause"} object a Catch passes on (Cause omitted when absent)."""
    out: dict[str, Any] = {"Error": error}
    if cause is not None:
        out["Cause"] = cause
    return out
