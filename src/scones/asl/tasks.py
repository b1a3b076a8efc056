"""One Task attempt: schedule, start, call the handler (with its timeout), record the outcome."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from .encoding import encode_json, encode_with_known_member, exceeds_payload_limit
from .errors import (
    DATA_LIMIT_EXCEEDED,
    RUNTIME,
    ExecutionAborted,
    ExecutionTimedOut,
    StatesError,
    TaskTimedOut,
)
from .resources import ResourceKind, TaskRequest
from .runtime import ExecutionRun, Track
from .states import State, TaskInput

# (event type, details key) for (legacy Lambda ARN, service integration) resources, by outcome.
_EVENT_TYPES = {
    outcome: tuple((name, name[0].lower() + name[1:] + "EventDetails") for name in names)
    for outcome, names in {
        "scheduled": ("LambdaFunctionScheduled", "TaskScheduled"),
        "timed_out": ("LambdaFunctionTimedOut", "TaskTimedOut"),
        "failed": ("LambdaFunctionFailed", "TaskFailed"),
        "succeeded": ("LambdaFunctionSucceeded", "TaskSucceeded"),
    }.items()
}


def _emit_task_event(
    run: ExecutionRun, track: Track, kind: ResourceKind, outcome: str, details: dict[str, Any]
) -> None:
    event_type, details_key = _EVENT_TYPES[outcome][0 if kind.legacy_lambda else 1]
    if not kind.legacy_lambda and outcome != "scheduled":
        resource = {"resourceType": kind.resource_type, "resource": kind.resource}
        # Key order as AWS records it: the resource leads on success, trails on failure.
        details = {**resource, **details} if outcome == "succeeded" else {**details, **resource}
    run.emit(track, event_type, details_key, details)


def _error_details(error: StatesError) -> dict[str, Any]:
    details: dict[str, Any] = {"error": error.error}
    if error.cause is not None:
        details["cause"] = error.cause
    return details


def _task_credentials(credentials: Any) -> Any:
    """History spells the Credentials block {"roleArn": ...}."""
    if isinstance(credentials, dict) and "RoleArn" in credentials:
        return {"roleArn": credentials["RoleArn"]}
    return credentials


def _emit_scheduled(
    run: ExecutionRun,
    state: State,
    track: Track,
    task_input: TaskInput,
    parameters_text: str,
    region: str,
) -> None:
    kind = state.resource_kind
    if kind.legacy_lambda:
        details: dict[str, Any] = {
            "resource": state.resource,
            "input": parameters_text,
            "inputDetails": {"truncated": False},
        }
    else:
        details = {
            "resourceType": kind.resource_type,
            "resource": kind.resource,
            "region": region,
            "parameters": parameters_text,
        }
    if task_input.timeout_seconds is not None:
        details["timeoutInSeconds"] = task_input.timeout_seconds
    if task_input.heartbeat_seconds is not None:
        details["heartbeatInSeconds"] = task_input.heartbeat_seconds
    if task_input.credentials is not None:
        details["taskCredentials"] = _task_credentials(task_input.credentials)
    _emit_task_event(run, track, kind, "scheduled", details)
    if kind.legacy_lambda:
        run.emit(track, "LambdaFunctionStarted")
    else:
        run.emit(
            track,
            "TaskStarted",
            "taskStartedEventDetails",
            {"resourceType": kind.resource_type, "resource": kind.resource},
        )


def invoke_task(
    run: ExecutionRun, state: State, task_input: TaskInput, track: Track, retry_count: int
) -> Any:
    """Schedule, start and complete one task attempt, emitting its events; the result."""
    kind = state.resource_kind
    config = run.config
    region = kind.region or config.region
    parameters = task_input.parameters
    parameters_text = encode_with_known_member(parameters, track.last_payload, track.last_text)
    _emit_scheduled(run, state, track, task_input, parameters_text, region)
    submitted: Callable[[Any], None] | None = None
    if not kind.legacy_lambda:

        def submitted(output: Any) -> None:
            run.emit(
                track,
                "TaskSubmitted",
                "taskSubmittedEventDetails",
                {
                    "resourceType": kind.resource_type,
                    "resource": kind.resource,
                    "output": encode_json(output),
                    "outputDetails": {"truncated": False},
                },
            )

    request = TaskRequest(
        resource=state.resource,
        # The handler gets its own copy, as AWS passes JSON text around.
        parameters=json.loads(parameters_text) if type(parameters) in (dict, list) else parameters,
        state_name=state.name,
        execution_name=run.execution.name,
        execution_arn=run.execution.arn,
        region=region,
        account_id=config.account_id,
        partition=config.partition,
        timeout_seconds=task_input.timeout_seconds,
        heartbeat_seconds=task_input.heartbeat_seconds,
        credentials=task_input.credentials,
        attempt=retry_count,
        clock=run.clock,
        deadline=run.deadline,
        submitted=submitted,
    )
    invoker = run.resources.invoker(state.resource)
    try:
        if invoker is None:
            raise StatesError(RUNTIME, f"No handler is registered for resource '{state.resource}'")
        result = _call_with_timeout(run, invoker, request, task_input.timeout_seconds)
        result_text = encode_json(result)
        if exceeds_payload_limit(result_text):
            name = kind.resource if kind.legacy_lambda else kind.resource_type
            raise StatesError(
                DATA_LIMIT_EXCEEDED,
                f"The state/task '{name}' returned a result with a size exceeding the maximum "
                "number of bytes service limit.",
            )
    except TaskTimedOut as error:
        _emit_task_event(run, track, kind, "timed_out", _error_details(error))
        raise
    except StatesError as error:
        if not error.terminal:
            _emit_task_event(run, track, kind, "failed", _error_details(error))
        raise
    except (ExecutionTimedOut, ExecutionAborted):
        raise
    except Exception as exc:  # a generic handler raised: AWS reports the exception's class name
        failure = StatesError(type(exc).__name__, str(exc))
        _emit_task_event(
            run, track, kind, "failed", {"error": failure.error, "cause": failure.cause}
        )
        raise failure from exc
    _emit_task_event(
        run,
        track,
        kind,
        "succeeded",
        {"output": result_text, "outputDetails": {"truncated": False}},
    )
    # Hand later states a fresh copy, as AWS does by passing JSON text around.
    return json.loads(result_text) if type(result) in (dict, list) else result


def _call_with_timeout(
    run: ExecutionRun,
    invoker: Callable[[TaskRequest], Any],
    request: TaskRequest,
    timeout: int | None,
) -> Any:
    limit: float | None = float(timeout) if timeout is not None else None
    machine_left = None if run.deadline is None else run.deadline - run.clock.now()
    if machine_left is not None and (limit is None or machine_left < limit):
        limit = max(0.0, machine_left)
    if limit is None:
        return invoker(request)
    if not run.real_time:
        # Fake time: run inline and judge the elapsed (fake) time afterwards.
        start = run.clock.now()
        result = invoker(request)
        elapsed = run.clock.now() - start
        if timeout is not None and elapsed > timeout:
            raise TaskTimedOut()
        if run.deadline is not None and run.clock.now() >= run.deadline:
            run.timed_out.set()
            raise ExecutionTimedOut()
        return result
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def call() -> None:
        try:
            outcome["result"] = invoker(request)
        except BaseException as e:  # handed back to the waiting thread
            outcome["error"] = e
        finally:
            done.set()

    threading.Thread(target=call, daemon=True, name=f"asl-task-{request.state_name}").start()
    if not done.wait(limit):
        if timeout is not None and (machine_left is None or timeout <= machine_left):
            raise TaskTimedOut()
        run.timed_out.set()
        raise ExecutionTimedOut()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
