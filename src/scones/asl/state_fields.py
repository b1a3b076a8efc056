"""Compilation of the fields inside one state: paths, Assign, Retry, Catch, and the fields
of each state type (Task, Choice, Wait, Fail, a Map's limits).

Problems are appended to `problems` with their JSON-pointer location; `definition` builds
states and machines from these pieces.
"""

from __future__ import annotations

import json
from typing import Any

from .choice import compile_rule, parse_timestamp
from .jsonata_expressions import (
    ExpressionTree,
    compile_condition,
    compile_expression_tree,
)
from .jsonata_expressions import (
    compile_assign as compile_jsonata_assign,
)
from .paths import JsonPath, PathSyntaxError
from .resources import classify
from .states import (
    JSONPATH,
    MISSING,
    Catcher,
    ChoiceRule,
    JsonataChoiceRule,
    OptionalPath,
    Retrier,
    State,
)
from .templates import Template, compile_template, compile_value_expr

RETRY_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
CATCH_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Comment", "Assign", "Output"}


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compile_path(
    spec: dict[str, Any],
    key: str,
    loc: str,
    problems: list[str],
    nullable: bool = True,
    reference: bool = False,
) -> OptionalPath:
    if key not in spec:
        return MISSING
    text = spec[key]
    if text is None:
        if not nullable:
            problems.append(f"{loc}/{key}: cannot be null")
        return None
    if not isinstance(text, str):
        problems.append(f"{loc}/{key}: must be a path string, got {json.dumps(text)}")
        return MISSING
    try:
        path = JsonPath(text)
    except PathSyntaxError as e:
        problems.append(f"{loc}/{key}: invalid path {text!r}: {e}")
        return MISSING
    if reference and (not path.is_reference or path.root != "$"):
        problems.append(f"{loc}/{key}: {text!r} is not a valid reference path")
        return MISSING
    return path


def compile_required_path(
    spec: dict[str, Any], key: str, loc: str, problems: list[str]
) -> JsonPath | None:
    """A path field that may be absent but not null (SecondsPath, MaxConcurrencyPath, ...)."""
    path = compile_path(spec, key, loc, problems, nullable=False)
    return path if isinstance(path, JsonPath) else None


def compile_jsonpath_io(state: State, spec: dict[str, Any], loc: str, problems: list[str]) -> None:
    state.input_path = compile_path(spec, "InputPath", loc, problems)
    state.output_path = compile_path(spec, "OutputPath", loc, problems)
    state.result_path = compile_path(spec, "ResultPath", loc, problems, reference=True)
    if "Parameters" in spec:
        state.parameters = compile_template(spec["Parameters"], f"{loc}/Parameters", problems)
    if "ResultSelector" in spec:
        state.result_selector = compile_template(
            spec["ResultSelector"], f"{loc}/ResultSelector", problems
        )
    if "ItemSelector" in spec:
        state.item_selector = compile_template(
            spec["ItemSelector"], f"{loc}/ItemSelector", problems
        )
    if "Assign" in spec:
        state.assign = compile_assign(spec["Assign"], f"{loc}/Assign", problems)


def check_next(target: Any, loc: str, problems: list[str], siblings: dict[str, Any]) -> None:
    if not isinstance(target, str):
        problems.append(f"{loc}: must be a state name, got {json.dumps(target)}")
    elif target not in siblings:
        problems.append(f"{loc}: state {target!r} does not exist")


def compile_assign(node: Any, loc: str, problems: list[str]) -> Template | None:
    if not isinstance(node, dict):
        problems.append(f"{loc}: must be an object, got {json.dumps(node)}")
        return None
    for key in node:
        name = key[:-2] if key.endswith(".$") else key
        if not name or name.startswith("$") or not (name[0].isalpha() or name[0] == "_"):
            problems.append(f"{loc}/{key}: invalid variable name {name!r}")
    return compile_template(node, loc, problems)


def _error_equals(spec: dict[str, Any], loc: str, problems: list[str]) -> bool:
    ee = spec.get("ErrorEquals")
    if not isinstance(ee, list) or not ee or not all(isinstance(e, str) for e in ee):
        problems.append(
            f"{loc}/ErrorEquals: must be a non-empty array of error names, got {json.dumps(ee)}"
        )
        return False
    if "States.ALL" in ee and len(ee) != 1:
        problems.append(f"{loc}/ErrorEquals: States.ALL must appear alone")
    return True


# Retrier fields that take a number: (check, what the error says it must be).
_RETRIER_NUMBERS: dict[str, tuple[Any, str]] = {
    "IntervalSeconds": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "MaxAttempts": (lambda v: is_int(v) and v >= 0, "a non-negative integer"),
    "BackoffRate": (lambda v: is_number(v) and v >= 1, "a number >= 1.0"),
    "MaxDelaySeconds": (lambda v: is_int(v) and v >= 1, "a positive integer"),
}


def compile_retry(node: Any, loc: str, problems: list[str]) -> list[Retrier]:
    if not isinstance(node, list):
        problems.append(f"{loc}: must be an array of retriers, got {json.dumps(node)}")
        return []
    retriers = []
    for i, spec in enumerate(node):
        retrier_loc = f"{loc}/{i}"
        if not isinstance(spec, dict):
            problems.append(f"{retrier_loc}: a retrier must be an object, got {json.dumps(spec)}")
            continue
        ok = _error_equals(spec, retrier_loc, problems)
        for key in spec:
            if key not in RETRY_FIELDS:
                problems.append(f"{retrier_loc}/{key}: unknown field {key!r} in a retrier")
        for field, (valid, meaning) in _RETRIER_NUMBERS.items():
            if field in spec and not valid(spec[field]):
                problems.append(
                    f"{retrier_loc}/{field}: must be {meaning}, got {json.dumps(spec[field])}"
                )
                ok = False
        if "JitterStrategy" in spec and spec["JitterStrategy"] not in ("FULL", "NONE"):
            problems.append(
                f'{retrier_loc}/JitterStrategy: must be "FULL" or "NONE", got '
                f"{json.dumps(spec['JitterStrategy'])}"
            )
            ok = False
        if ok and "States.ALL" in spec.get("ErrorEquals", []) and i != len(node) - 1:
            problems.append(f"{retrier_loc}/ErrorEquals: a States.ALL retrier must be the last one")
        if ok:
            retriers.append(Retrier(spec))
    return retriers


def compile_catch(
    node: Any, loc: str, problems: list[str], siblings: dict[str, Any], query_language: str
) -> list[Catcher]:
    if not isinstance(node, list):
        problems.append(f"{loc}: must be an array of catchers, got {json.dumps(node)}")
        return []
    catchers = []
    for i, spec in enumerate(node):
        catcher_loc = f"{loc}/{i}"
        if not isinstance(spec, dict):
            problems.append(f"{catcher_loc}: a catcher must be an object, got {json.dumps(spec)}")
            continue
        ok = _error_equals(spec, catcher_loc, problems)
        for key in spec:
            if key not in CATCH_FIELDS:
                problems.append(f"{catcher_loc}/{key}: unknown field {key!r} in a catcher")
        if "Next" not in spec:
            problems.append(f"{catcher_loc}/Next: missing required field Next")
            ok = False
        else:
            check_next(spec["Next"], f"{catcher_loc}/Next", problems, siblings)
        if ok and "States.ALL" in spec["ErrorEquals"] and i != len(node) - 1:
            problems.append(f"{catcher_loc}/ErrorEquals: a States.ALL catcher must be the last one")
        result_path = compile_path(spec, "ResultPath", catcher_loc, problems, reference=True)
        if query_language == JSONPATH:
            assign = (
                compile_assign(spec["Assign"], f"{catcher_loc}/Assign", problems)
                if "Assign" in spec
                else None
            )
            if ok:
                # An absent ResultPath replaces the input with the error output ("$").
                catcher_path = (
                    result_path
                    if isinstance(result_path, JsonPath) or result_path is None
                    else JsonPath("$")
                )
                catchers.append(Catcher(spec, catcher_path, assign=assign))
            continue
        jsonata_assign = (
            compile_jsonata_assign(spec["Assign"], f"{catcher_loc}/Assign", problems)
            if "Assign" in spec
            else None
        )
        jsonata_output = (
            compile_expression_tree(spec["Output"], f"{catcher_loc}/Output", problems)
            if "Output" in spec
            else None
        )
        if ok:
            catchers.append(
                Catcher(
                    spec,
                    JsonPath("$"),
                    jsonata_assign=jsonata_assign,
                    jsonata_output=jsonata_output,
                )
            )
    return catchers


def no_type_fields(
    state: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    return None


def compile_task(
    state: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    resource = spec.get("Resource")
    if isinstance(resource, str):
        state.resource_kind = classify(resource)
    if not isinstance(resource, str) or not resource:
        problems.append(f"{loc}/Resource: missing or not a string: {json.dumps(resource)}")
    elif state.query_language == JSONPATH and not resource.startswith("arn:"):
        problems.append(f"{loc}/Resource: {resource!r} is not an ARN")
    for field, path_field in (
        ("TimeoutSeconds", "TimeoutSecondsPath"),
        ("HeartbeatSeconds", "HeartbeatSecondsPath"),
    ):
        if field in spec and path_field in spec:
            problems.append(f"{loc}: {field} and {path_field} cannot both be set")
        value = spec.get(field)
        if value is not None and state.query_language == JSONPATH:
            if not is_int(value) or value <= 0:
                problems.append(
                    f"{loc}/{field}: must be a positive integer, got {json.dumps(value)}"
                )
            elif field == "TimeoutSeconds":
                state.timeout_seconds = value
            else:
                state.heartbeat_seconds = value
    state.timeout_seconds_path = compile_required_path(spec, "TimeoutSecondsPath", loc, problems)
    state.heartbeat_seconds_path = compile_required_path(
        spec, "HeartbeatSecondsPath", loc, problems
    )
    if state.query_language == JSONPATH and "Credentials" in spec:
        credentials = spec["Credentials"]
        if not isinstance(credentials, dict):
            problems.append(f"{loc}/Credentials: must be an object")
        else:
            state.credentials = compile_template(credentials, f"{loc}/Credentials", problems)


def compile_choice(
    state: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    rules = spec.get("Choices")
    if not isinstance(rules, list) or not rules:
        problems.append(f"{loc}/Choices: must be a non-empty array of choice rules")
        rules = []
    for i, rule in enumerate(rules):
        rule_loc = f"{loc}/Choices/{i}"
        if not isinstance(rule, dict):
            problems.append(f"{rule_loc}: a choice rule must be an object")
            continue
        if "Next" not in rule:
            problems.append(f"{rule_loc}/Next: missing required field Next")
        else:
            check_next(rule["Next"], f"{rule_loc}/Next", problems, siblings)
        if state.query_language == JSONPATH:
            predicate = compile_rule(rule, rule_loc, problems, True)
            assign = (
                compile_assign(rule["Assign"], f"{rule_loc}/Assign", problems)
                if "Assign" in rule
                else None
            )
            state.choices.append(ChoiceRule(predicate, rule.get("Next"), assign))
            continue
        condition = compile_condition(rule, rule_loc, problems)
        jsonata_assign = (
            compile_jsonata_assign(rule["Assign"], f"{rule_loc}/Assign", problems)
            if "Assign" in rule
            else None
        )
        output: ExpressionTree | None = (
            compile_expression_tree(rule["Output"], f"{rule_loc}/Output", problems)
            if "Output" in rule
            else None
        )
        state.jsonata_choices.append(
            JsonataChoiceRule(condition, rule.get("Next"), jsonata_assign, output)
        )
    if "Default" in spec:
        check_next(spec["Default"], f"{loc}/Default", problems, siblings)


def compile_wait(
    state: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    kinds = [k for k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if k in spec]
    if len(kinds) != 1:
        problems.append(
            f"{loc}: a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, "
            f"TimestampPath; got {kinds or 'none'}"
        )
    if state.query_language == JSONPATH:
        if "Seconds" in spec:
            seconds = spec["Seconds"]
            if not is_int(seconds) or seconds < 0:
                problems.append(
                    f"{loc}/Seconds: must be a non-negative integer, got {json.dumps(seconds)}"
                )
            else:
                state.wait_seconds = seconds
        if "Timestamp" in spec:
            state.wait_timestamp = parse_timestamp(spec["Timestamp"])
            if state.wait_timestamp is None:
                problems.append(
                    f"{loc}/Timestamp: {json.dumps(spec['Timestamp'])} is not an ISO-8601 timestamp"
                )
    state.seconds_path = compile_required_path(spec, "SecondsPath", loc, problems)
    state.timestamp_path = compile_required_path(spec, "TimestampPath", loc, problems)


def compile_fail(
    state: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    for field, path_field in (("Error", "ErrorPath"), ("Cause", "CausePath")):
        if field in spec and path_field in spec:
            problems.append(f"{loc}: {field} and {path_field} cannot both be set")
        if state.query_language == JSONPATH and field in spec:
            if not isinstance(spec[field], str):
                problems.append(f"{loc}/{field}: must be a string, got {json.dumps(spec[field])}")
            elif field == "Error":
                state.error = spec[field]
            else:
                state.cause = spec[field]
        if path_field in spec:
            evaluator = compile_value_expr(
                spec[path_field], path_field, f"{loc}/{path_field}", problems
            )
            if path_field == "ErrorPath":
                state.error_path = evaluator
            else:
                state.cause_path = evaluator


def compile_map_limits(state: State, spec: dict[str, Any], loc: str, problems: list[str]) -> None:
    state.items_path = compile_path(spec, "ItemsPath", loc, problems, nullable=False)
    max_concurrency = spec.get("MaxConcurrency")
    if max_concurrency is not None:
        if not is_int(max_concurrency) or max_concurrency < 0:
            problems.append(
                f"{loc}/MaxConcurrency: must be a non-negative integer, got "
                f"{json.dumps(max_concurrency)}"
            )
        else:
            state.max_concurrency = max_concurrency
    tolerated_count = spec.get("ToleratedFailureCount")
    if tolerated_count is not None:
        if not is_int(tolerated_count) or tolerated_count < 0:
            problems.append(
                f"{loc}/ToleratedFailureCount: must be a non-negative integer, got "
                f"{json.dumps(tolerated_count)}"
            )
        else:
            state.tolerated_failure_count = tolerated_count
    tolerated_percentage = spec.get("ToleratedFailurePercentage")
    if tolerated_percentage is not None:
        if not is_number(tolerated_percentage) or not 0 <= tolerated_percentage <= 100:
            problems.append(
                f"{loc}/ToleratedFailurePercentage: must be a number between 0 and 100, got "
                f"{json.dumps(tolerated_percentage)}"
            )
        else:
            state.tolerated_failure_percentage = float(tolerated_percentage)
