"""JSONPath as the query language: InputPath, Parameters, ResultSelector, ResultPath, OutputPath.

Data flows through a state as AWS describes it ("Processing input and output"): InputPath
picks the effective input, Parameters shapes it, ResultSelector shapes the result,
ResultPath places it into the raw input and OutputPath picks the output.
"""

from __future__ import annotations

from typing import Any

from .causes import CAUSES, cause
from .choice import parse_timestamp
from .paths import JsonPath, PathNotFound, PathWriteError, set_path
from .states import (
    MISSING,
    Assigned,
    Catcher,
    MapInput,
    OptionalPath,
    State,
    TaskInput,
)
from .templates import EvaluationError, Scope, Template, UndefinedVariable

MAX_WAIT_SECONDS = 2**31 - 1


def _is_integer(value: Any) -> bool:
    """A JSON integer; a float with no fraction counts, as JSON does not tell them apart."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and float(value).is_integer()
    )


def _resolve(path: JsonPath, scope: Scope) -> Any:
    """A path's value; a missing one is an "Invalid path" error."""
    try:
        return scope.resolve(path)
    except PathNotFound as e:
        raise EvaluationError(cause("invalid_path", path=path.text, reason=e.message)) from None
    except UndefinedVariable:
        reason = CAUSES["undefined_variable"]
        raise EvaluationError(cause("invalid_path", path=path.text, reason=reason)) from None


def _apply(path: OptionalPath, scope: Scope) -> Any:
    """InputPath/OutputPath/ItemsPath: absent keeps the input, null gives {}."""
    if path is MISSING:
        return scope.input
    if path is None:
        return {}
    assert isinstance(path, JsonPath)
    return _resolve(path, scope)


def _effective_scope(state: State, scope: Scope) -> Scope:
    """The scope over the effective input (after InputPath)."""
    if state.input_path is MISSING:
        return scope
    return scope.with_input(_apply(state.input_path, scope))


def _assign(template: Template | None, scope: Scope, value: Any) -> Any:
    """Assign, evaluated with `value` as its input ($)."""
    return None if template is None else template.evaluate(scope.with_input(value))


def _output(state: State, scope: Scope, result: Any) -> Any:
    """ResultPath places `result` into the raw input (scope.input); OutputPath filters it."""
    result_path = state.result_path
    if result_path is MISSING:
        output = result
    elif result_path is None:
        output = scope.input
    else:
        assert isinstance(result_path, JsonPath)
        output = _set_result(scope.input, result_path, result)
    if state.output_path is MISSING:
        return output
    return _apply(state.output_path, scope.with_input(output))


def _set_result(data: Any, path: JsonPath, result: Any) -> Any:
    try:
        return set_path(data, path, result)
    except PathWriteError as e:
        raise EvaluationError(cause("invalid_path", path=path.text, reason=str(e))) from None


def _positive_int(path: JsonPath, scope: Scope, field: str) -> int:
    value = _resolve(path, scope)
    if not (isinstance(value, int) and not isinstance(value, bool)) or value <= 0:
        raise EvaluationError(
            cause("path_not_positive_integer", field=field, value=value, path=path.text)
        )
    return value


def _non_negative_int(path: JsonPath, scope: Scope, field: str) -> int:
    value = _resolve(path, scope)
    if not _is_integer(value):
        raise EvaluationError(cause("path_not_integer", field=field, value=value, path=path.text))
    if value < 0:
        if field == "MaxConcurrencyPath":
            raise EvaluationError(cause("max_concurrency_negative", value=value))
        raise EvaluationError(cause("path_not_integer", field=field, value=value, path=path.text))
    return int(value)


def _percentage(path: JsonPath, scope: Scope) -> float:
    value = _resolve(path, scope)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise EvaluationError(
            cause(
                "path_not_percentage",
                field="ToleratedFailurePercentagePath",
                value=value,
                path=path.text,
            )
        )
    return float(value)


def _wait_seconds(state: State, scope: Scope, now: float) -> float:
    if state.wait_seconds is not None:
        return float(state.wait_seconds)
    if state.seconds_path is not None:
        path = state.seconds_path
        try:
            value = scope.resolve(path)
        except (PathNotFound, UndefinedVariable):
            raise EvaluationError(cause("seconds_path_missing", path=path.text)) from None
        if not (isinstance(value, int) and not isinstance(value, bool)):
            raise EvaluationError(cause("seconds_path_not_long", path=path.text, value=value))
        if value < 0:
            raise EvaluationError(cause("seconds_path_negative", path=path.text, value=value))
        return float(value)
    timestamp = state.wait_timestamp
    if timestamp is None:
        timestamp_path = state.timestamp_path
        assert timestamp_path is not None  # the compiler requires one of the four fields
        try:
            value = scope.resolve(timestamp_path)
        except (PathNotFound, UndefinedVariable):
            raise EvaluationError(
                cause("timestamp_path_missing", path=timestamp_path.text)
            ) from None
        timestamp = parse_timestamp(value)
        if timestamp is None:
            raise EvaluationError(
                cause("timestamp_path_not_timestamp", path=timestamp_path.text, value=value)
            )
    return timestamp.timestamp() - now


class JsonPathQueries:
    """Evaluates the JSONPath fields of a state (stateless; one instance serves all)."""

    def pass_output(self, state: State, scope: Scope) -> tuple[Any, Assigned]:
        effective = _apply(state.input_path, scope)
        if state.parameters is not None:
            effective = state.parameters.evaluate(scope.with_input(effective))
        result = effective if state.result is MISSING else state.result
        return _output(state, scope, result), _assign(state.assign, scope, result)

    def succeed_output(self, state: State, scope: Scope) -> Any:
        effective = _apply(state.input_path, scope)
        return _output(state, scope.with_input(effective), effective)

    def fail_fields(self, state: State, scope: Scope) -> tuple[str | None, str | None]:
        error = state.error if state.error_path is None else state.error_path(scope)
        cause_value = state.cause if state.cause_path is None else state.cause_path(scope)
        for field, value, evaluator in (
            ("ErrorPath", error, state.error_path),
            ("CausePath", cause_value, state.cause_path),
        ):
            if evaluator is not None and not isinstance(value, str):
                raise EvaluationError(
                    cause("fail_path_not_string", field=field, value=value, path=state.spec[field])
                )
        return error, cause_value

    def choose(self, state: State, scope: Scope) -> tuple[Any, str | None, Assigned]:
        effective_scope = _effective_scope(state, scope)
        target = state.default
        rule_assign = None
        for rule in state.choices:
            if rule.predicate is not None and rule.predicate(effective_scope):
                target, rule_assign = rule.next, rule.assign
                break
        if target is None:
            return None, None, None
        assigned = None
        if state.assign is not None or rule_assign is not None:
            assigned = {}
            if state.assign is not None:
                assigned.update(state.assign.evaluate(effective_scope))
            if rule_assign is not None:
                assigned.update(rule_assign.evaluate(effective_scope))
        return _output(state, effective_scope, effective_scope.input), target, assigned

    def wait(self, state: State, scope: Scope, now: float) -> tuple[float, Any, Assigned]:
        effective_scope = _effective_scope(state, scope)
        seconds = _wait_seconds(state, effective_scope, now)
        if seconds > MAX_WAIT_SECONDS:
            raise EvaluationError(cause("wait_too_long"))
        assigned = None if state.assign is None else state.assign.evaluate(effective_scope)
        return seconds, _output(state, effective_scope, effective_scope.input), assigned

    def task_input(self, state: State, scope: Scope) -> TaskInput:
        effective_scope = _effective_scope(state, scope)
        parameters = (
            effective_scope.input
            if state.parameters is None
            else state.parameters.evaluate(effective_scope)
        )
        timeout: int | None
        heartbeat: int | None
        if state.timeout_seconds_path is not None:
            timeout = _positive_int(
                state.timeout_seconds_path, effective_scope, "TimeoutSecondsPath"
            )
        else:
            timeout = state.timeout_seconds
        if state.heartbeat_seconds_path is not None:
            heartbeat = _positive_int(
                state.heartbeat_seconds_path, effective_scope, "HeartbeatSecondsPath"
            )
        else:
            heartbeat = state.heartbeat_seconds
        credentials = (
            None if state.credentials is None else state.credentials.evaluate(effective_scope)
        )
        return TaskInput(parameters, timeout, heartbeat, credentials)

    def branch_input(self, state: State, scope: Scope) -> Any:
        effective = _apply(state.input_path, scope)
        if state.parameters is not None:
            effective = state.parameters.evaluate(scope.with_input(effective))
        return effective

    def map_input(self, state: State, scope: Scope) -> MapInput:
        effective_scope = _effective_scope(state, scope)
        items = _apply(state.items_path, effective_scope)
        if not isinstance(items, list):
            path_text = state.items_path.text if isinstance(state.items_path, JsonPath) else "$"
            raise EvaluationError(cause("map_input_not_array", path=path_text, json=items))
        if state.max_concurrency_path is not None:
            max_concurrency = _non_negative_int(
                state.max_concurrency_path, effective_scope, "MaxConcurrencyPath"
            )
        else:
            max_concurrency = state.max_concurrency
        if state.tolerated_failure_count_path is not None:
            tolerated_count: int | None = _non_negative_int(
                state.tolerated_failure_count_path, effective_scope, "ToleratedFailureCountPath"
            )
        else:
            tolerated_count = state.tolerated_failure_count
        if state.tolerated_failure_percentage_path is not None:
            tolerated_percentage: float | None = _percentage(
                state.tolerated_failure_percentage_path, effective_scope
            )
        else:
            tolerated_percentage = state.tolerated_failure_percentage
        selector = state.item_selector
        if selector is None:
            item_inputs = list(items)
        else:
            item_inputs = [
                selector.evaluate(
                    effective_scope.with_context({"Map": {"Item": {"Index": i, "Value": item}}})
                )
                for i, item in enumerate(items)
            ]
        return MapInput(item_inputs, max_concurrency, tolerated_count, tolerated_percentage)

    def result_output(self, state: State, scope: Scope, result: Any) -> tuple[Any, Assigned]:
        if state.result_selector is not None:
            result = state.result_selector.evaluate(scope.with_input(result))
        return _output(state, scope, result), _assign(state.assign, scope, result)

    def catch_output(
        self, state: State, scope: Scope, catcher: Catcher, error_output: dict[str, Any]
    ) -> tuple[Any, Assigned]:
        if catcher.result_path is None:
            output = scope.input
        else:
            output = _set_result(scope.input, catcher.result_path, error_output)
        return output, _assign(catcher.assign, scope, error_output)


JSONPATH_QUERIES = JsonPathQueries()
