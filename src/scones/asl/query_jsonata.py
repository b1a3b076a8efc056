"""JSONata as the query language (QueryLanguage: "JSONata").

Expressions see `$states` (input, result, errorOutput, context) and the workflow
variables; Arguments shapes what a state sends, Output what it passes on.
"""

from __future__ import annotations

from typing import Any

from .causes import cause
from .choice import parse_timestamp
from .errors import QUERY_EVALUATION_ERROR
from .jsonata_expressions import Bindings, jsonata_bindings
from .states import Assigned, Catcher, MapInput, State, TaskInput
from .templates import EvaluationError, Scope

MAX_WAIT_SECONDS = 2**31 - 1


def _bindings(scope: Scope, **states: Any) -> Bindings:
    """The variables, plus $states with the input, the context object and `states`."""
    bindings = jsonata_bindings(scope.variables.all())
    bindings["states"] = jsonata_bindings(
        {"input": scope.input, "context": scope.context(), **states}
    )
    return bindings


def _field(state: State, name: str, bindings: Bindings, default: Any) -> Any:
    """The value of field `name`, or `default` when the state does not set it."""
    tree = state.jsonata_fields.get(name)
    if tree is None:
        return default
    return tree.evaluate(bindings, name)


def _assign(state: State, bindings: Bindings) -> Assigned:
    if state.jsonata_assign is None:
        return None
    result: dict[str, Any] = state.jsonata_assign.evaluate(bindings, "Assign")
    return result


def _failure(kind: str, location: str | None = None, **fields: Any) -> EvaluationError:
    """States.QueryEvaluationError with the cause `kind` of the causes table."""
    return EvaluationError(cause(kind, **fields), QUERY_EVALUATION_ERROR, location)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(state: State, name: str, bindings: Bindings) -> int | None:
    if name not in state.jsonata_fields:
        return None
    value = state.jsonata_fields[name].evaluate(bindings, name)
    if not _is_number(value) or int(value) != value or value <= 0:
        raise _failure("jsonata_not_positive_integer", field=name, json=value)
    return int(value)


def _non_negative_int(state: State, name: str, bindings: Bindings) -> int | None:
    if name not in state.jsonata_fields:
        return None
    value = state.jsonata_fields[name].evaluate(bindings, name)
    if not _is_number(value) or int(value) != value or value < 0:
        raise _failure("jsonata_not_non_negative_integer", field=name, json=value)
    return int(value)


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array"


def _items(state: State, scope: Scope, bindings: Bindings) -> list[Any]:
    tree = state.jsonata_fields.get("Items")
    if tree is None:
        if not isinstance(scope.input, list):
            raise _failure("jsonata_map_input_not_array", json=scope.input)
        return scope.input
    items = tree.evaluate(bindings, "Items")
    if not isinstance(items, list):
        raise _failure(
            "jsonata_items_not_array",
            location="Items",
            expression=tree.text(),
            type=_json_type_name(items),
            json=items,
        )
    return items


class JsonataQueries:
    """Evaluates the JSONata fields of a state (stateless; one instance serves all)."""

    def pass_output(self, state: State, scope: Scope) -> tuple[Any, Assigned]:
        bindings = _bindings(scope)
        return _field(state, "Output", bindings, scope.input), _assign(state, bindings)

    def succeed_output(self, state: State, scope: Scope) -> Any:
        return _field(state, "Output", _bindings(scope), scope.input)

    def fail_fields(self, state: State, scope: Scope) -> tuple[str | None, str | None]:
        bindings = _bindings(scope)
        return _field(state, "Error", bindings, None), _field(state, "Cause", bindings, None)

    def choose(self, state: State, scope: Scope) -> tuple[Any, str | None, Assigned]:
        bindings = _bindings(scope)
        for i, rule in enumerate(state.jsonata_choices):
            matched = (
                rule.condition.evaluate(bindings, f"Choices/{i}/Condition")
                if rule.condition is not None
                else False
            )
            if matched is True:
                output = (
                    rule.output.evaluate(bindings, "Output")
                    if rule.output is not None
                    else _field(state, "Output", bindings, scope.input)
                )
                assigned = (
                    rule.assign.evaluate(bindings, "Assign")
                    if rule.assign is not None
                    else _assign(state, bindings)
                )
                return output, rule.next, assigned
            if matched is not False:
                raise _failure("jsonata_condition_not_boolean", json=matched)
        if state.default is None:
            return None, None, None
        output = _field(state, "Output", bindings, scope.input)
        return output, state.default, _assign(state, bindings)

    def wait(self, state: State, scope: Scope, now: float) -> tuple[float, Any, Assigned]:
        bindings = _bindings(scope)
        if "Seconds" in state.jsonata_fields:
            value = state.jsonata_fields["Seconds"].evaluate(bindings, "Seconds")
            if not _is_number(value) or int(value) != value or value < 0:
                raise _failure("jsonata_not_non_negative_integer", field="Seconds", json=value)
            seconds = float(value)
        else:
            value = state.jsonata_fields["Timestamp"].evaluate(bindings, "Timestamp")
            timestamp = parse_timestamp(value)
            if timestamp is None:
                raise _failure("jsonata_not_timestamp", location="Timestamp", value=value)
            seconds = timestamp.timestamp() - now
        if seconds > MAX_WAIT_SECONDS:
            raise _failure("wait_too_long")
        output = _field(state, "Output", bindings, scope.input)
        return seconds, output, _assign(state, bindings)

    def task_input(self, state: State, scope: Scope) -> TaskInput:
        bindings = _bindings(scope)
        return TaskInput(
            parameters=_field(state, "Arguments", bindings, scope.input),
            timeout_seconds=_positive_int(state, "TimeoutSeconds", bindings),
            heartbeat_seconds=_positive_int(state, "HeartbeatSeconds", bindings),
            credentials=_field(state, "Credentials", bindings, None),
        )

    def branch_input(self, state: State, scope: Scope) -> Any:
        return _field(state, "Arguments", _bindings(scope), scope.input)

    def map_input(self, state: State, scope: Scope) -> MapInput:
        bindings = _bindings(scope)
        items = _items(state, scope, bindings)
        max_concurrency = _non_negative_int(state, "MaxConcurrency", bindings) or 0
        tolerated_count = _non_negative_int(state, "ToleratedFailureCount", bindings)
        tolerated_percentage: float | None = None
        if "ToleratedFailurePercentage" in state.jsonata_fields:
            value = state.jsonata_fields["ToleratedFailurePercentage"].evaluate(
                bindings, "ToleratedFailurePercentage"
            )
            if not _is_number(value) or not 0 <= value <= 100:
                raise _failure("jsonata_not_percentage", json=value)
            tolerated_percentage = float(value)
        selector = state.jsonata_fields.get("ItemSelector")
        if selector is None:
            item_inputs = list(items)
        else:
            item_inputs = [
                selector.evaluate(
                    _bindings(scope.with_context({"Map": {"Item": {"Index": i, "Value": item}}})),
                    "ItemSelector",
                )
                for i, item in enumerate(items)
            ]
        return MapInput(item_inputs, max_concurrency, tolerated_count, tolerated_percentage)

    def result_output(self, state: State, scope: Scope, result: Any) -> tuple[Any, Assigned]:
        bindings = _bindings(scope, result=result)
        return _field(state, "Output", bindings, result), _assign(state, bindings)

    def catch_output(
        self, state: State, scope: Scope, catcher: Catcher, error_output: dict[str, Any]
    ) -> tuple[Any, Assigned]:
        bindings = _bindings(scope, errorOutput=error_output)
        output = (
            catcher.jsonata_output.evaluate(bindings, "Output")
            if catcher.jsonata_output is not None
            else error_output
        )
        assigned = (
            catcher.jsonata_assign.evaluate(bindings, "Assign")
            if catcher.jsonata_assign is not None
            else None
        )
        return output, assigned


JSONATA_QUERIES = JsonataQueries()
