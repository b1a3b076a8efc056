"""Runs a compiled machine and records the history the way Step Functions does."""

from __future__ import annotations

import uuid
from typing import Any

from .clock import Clock, SystemClock
from .encoding import encode_json, exceeds_payload_limit
from .errors import (
    DATA_LIMIT_EXCEEDED,
    TIMEOUT,
    ExecutionAborted,
    ExecutionTimedOut,
    StatesError,
)
from .execution import (
    ABORTED,
    FAILED,
    SUCCEEDED,
    TIMED_OUT,
    Execution,
    ExecutionConfig,
)
from .handlers import HANDLERS
from .resources import Resources
from .runtime import ExecutionRun, TerminalError, Track
from .states import Machine
from .templates import Variables


def run_execution(
    machine: Machine,
    input: Any,
    resources: Resources,
    *,
    name: str | None = None,
    clock: Clock | None = None,
    config: ExecutionConfig | None = None,
) -> Execution:
    clock = clock or SystemClock()
    config = config or ExecutionConfig()
    name = name or str(uuid.uuid4())
    arn_prefix = f"arn:{config.partition}:states:{config.region}:{config.account_id}"
    state_machine_arn = (
        config.state_machine_arn or f"{arn_prefix}:stateMachine:{config.state_machine_name}"
    )
    execution_arn = (
        config.execution_arn or f"{arn_prefix}:execution:{config.state_machine_name}:{name}"
    )
    role_arn = (
        config.role_arn or f"arn:{config.partition}:iam::{config.account_id}:role/StepFunctionsRole"
    )
    execution = Execution(name, execution_arn, input)
    run = ExecutionRun(
        machine, resources, clock, execution, config, HANDLERS, state_machine_arn, role_arn
    )
    start = clock.now()
    execution.start_date = start
    if machine.timeout_seconds is not None:
        run.deadline = start + machine.timeout_seconds
    top = Track(0, None, Variables())
    input_text = encode_json(input)
    run.emit(
        top,
        "ExecutionStarted",
        "executionStartedEventDetails",
        {"input": input_text, "inputDetails": {"truncated": False}, "roleArn": role_arn},
    )
    top.last_event_id = 0  # AWS links the first state's event to 0, not to ExecutionStarted
    try:
        if exceeds_payload_limit(input_text):
            raise TerminalError(
                DATA_LIMIT_EXCEEDED,
                "The execution input exceeds the maximum number of bytes service limit.",
            )
        output = run.run_machine(machine, input, top)
        execution.output = output
        execution.output_json = top.last_text if output is top.last_payload else encode_json(output)
        execution.status = SUCCEEDED
        _follow_last_event(run, top)
        run.emit(
            top,
            "ExecutionSucceeded",
            "executionSucceededEventDetails",
            {"output": execution.output_json, "outputDetails": {"truncated": False}},
        )
    except StatesError as error:
        execution.status = FAILED
        execution.error, execution.cause = error.error, error.cause
        details: dict[str, Any] = {}
        if error.error is not None:
            details["error"] = error.error
        if error.cause is not None:
            details["cause"] = error.cause
        _follow_last_event(run, top)
        run.emit(top, "ExecutionFailed", "executionFailedEventDetails", details)
    except ExecutionTimedOut:
        execution.status = TIMED_OUT
        execution.error = TIMEOUT
        execution.cause = "The execution timed out."
        run.emit(
            top,
            "ExecutionTimedOut",
            "executionTimedOutEventDetails",
            {"error": execution.error, "cause": execution.cause},
            previous_event_id=len(run.events),
        )
    except ExecutionAborted:
        execution.status = ABORTED
        run.emit(
            top,
            "ExecutionAborted",
            "executionAbortedEventDetails",
            {},
            previous_event_id=len(run.events),
        )
    execution.stop_date = clock.now()
    return execution


def _follow_last_event(run: ExecutionRun, top: Track) -> None:
    """Link the closing event to the last one when no state event moved the top track."""
    if top.last_event_id == 0:
        top.last_event_id = len(run.events)


__all__ = ["run_execution"]
