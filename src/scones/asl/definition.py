"""Load-time validation (statelint-like) and compilation of a definition into State objects.

Every problem is collected with its JSON-pointer location, then raised together in one
DefinitionError, so a user fixes a definition in one pass.
"""

from __future__ import annotations

import json
from typing import Any

from .choice import compile_rule, parse_timestamp
from .errors import DefinitionError
from .jsonata_expressions import (
    ExpressionTree,
    compile_condition,
    compile_expression_tree,
)
from .jsonata_expressions import (
    compile_assign as compile_jsonata_assign,
)
from .paths import JsonPath, PathSyntaxError
from .query_jsonata import JSONATA_QUERIES
from .query_jsonpath import JSONPATH_QUERIES
from .resources import classify
from .states import (
    JSONATA,
    JSONPATH,
    MISSING,
    Catcher,
    ChoiceRule,
    JsonataChoiceRule,
    Machine,
    OptionalPath,
    Retrier,
    State,
)
from .templates import Template, compile_template, compile_value_expr

TOP_FIELDS = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
SUB_FIELDS = {"StartAt", "States", "Comment", "ProcessorConfig", "QueryLanguage"}

_COMMON = {"Type", "Comment", "QueryLanguage"}
_IO = {"InputPath", "OutputPath"}
_FLOW = {"Next", "End"}
_JSONATA_IO = {"Output", "Assign"}
FIELDS: dict[str, set[str]] = {
    "Pass": _COMMON | _IO | _FLOW | _JSONATA_IO | {"ResultPath", "Parameters", "Result"},
    "Task": _COMMON
    | _IO
    | _FLOW
    | _JSONATA_IO
    | {
        "ResultPath",
        "Parameters",
        "ResultSelector",
        "Retry",
        "Catch",
        "Resource",
        "TimeoutSeconds",
        "TimeoutSecondsPath",
        "HeartbeatSeconds",
        "HeartbeatSecondsPath",
        "Credentials",
        "Arguments",
    },
    "Choice": _COMMON | _IO | _JSONATA_IO | {"Choices", "Default"},
    "Wait": _COMMON
    | _IO
    | _FLOW
    | _JSONATA_IO
    | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Succeed": _COMMON | _IO | {"Output"},
    "Fail": _COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": _COMMON
    | _IO
    | _FLOW
    | _JSONATA_IO
    | {"ResultPath", "Parameters", "ResultSelector", "Retry", "Catch", "Branches", "Arguments"},
    "Map": _COMMON
    | _IO
    | _FLOW
    | _JSONATA_IO
    | {
        "ResultPath",
        "Parameters",
        "ItemSelector",
        "ResultSelector",
        "Retry",
        "Catch",
        "Iterator",
        "ItemProcessor",
        "ItemsPath",
        "Items",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailureCount",
        "ToleratedFailureCountPath",
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
        "ItemReader",
        "ResultWriter",
        "ItemBatcher",
        "Label",
        "Arguments",
    },
}
# Fields only JSONPath states may use, and fields only JSONata states may use.
JSONPATH_ONLY = {
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "ItemsPath",
    "SecondsPath",
    "TimestampPath",
    "ErrorPath",
    "CausePath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
}
JSONATA_ONLY = {"Arguments", "Output", "Items"}
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
_NO_TRANSITION = {"Choice", "Succeed", "Fail"}
# JSONata fields a state may hold as expressions (Assign is compiled on its own).
JSONATA_FIELDS = (
    "Arguments",
    "Output",
    "Items",
    "ItemSelector",
    "Seconds",
    "Timestamp",
    "TimeoutSeconds",
    "HeartbeatSeconds",
    "MaxConcurrency",
    "ToleratedFailureCount",
    "ToleratedFailurePercentage",
    "Error",
    "Cause",
    "Credentials",
)


def parse_definition(definition: Any) -> dict[str, Any]:
    if isinstance(definition, (str, bytes, bytearray)):
        try:
            definition = json.loads(definition)
        except ValueError as e:
            raise DefinitionError([f": definition is not valid JSON: {e}"]) from None
    if not isinstance(definition, dict):
        raise DefinitionError(
            [f": definition must be a JSON object, got {type(definition).__name__}"]
        )
    return definition


def compile_machine(definition: Any) -> Machine:
    definition = parse_definition(definition)
    problems: list[str] = []
    machine = _compile_machine(definition, "", problems, JSONPATH, top=True)
    if problems:
        raise DefinitionError(problems)
    machine.definition = definition
    return machine


def _query_language(spec: dict[str, Any], default: str, loc: str, problems: list[str]) -> str:
    language = spec.get("QueryLanguage", default)
    if language not in (JSONPATH, JSONATA):
        problems.append(
            f'{loc}/QueryLanguage: must be "JSONPath" or "JSONata", got {json.dumps(language)}'
        )
        return default
    return str(language)


def _compile_machine(
    spec: Any, loc: str, problems: list[str], query_language: str, top: bool
) -> Machine:
    machine = Machine()
    if not isinstance(spec, dict):
        problems.append(f"{loc or '/'}: must be an object with StartAt and States")
        return machine
    allowed = TOP_FIELDS if top else SUB_FIELDS
    for key in spec:
        if key not in allowed:
            problems.append(f"{loc}/{key}: unknown field {key!r}")
    machine.query_language = _query_language(spec, query_language, loc, problems)
    if top and "TimeoutSeconds" in spec:
        timeout = spec["TimeoutSeconds"]
        if not _is_int(timeout) or timeout <= 0:
            problems.append(
                f"{loc}/TimeoutSeconds: must be a positive integer, got {json.dumps(timeout)}"
            )
        else:
            machine.timeout_seconds = timeout
    states = spec.get("States")
    if "StartAt" not in spec:
        problems.append(f"{loc}/StartAt: missing required field StartAt")
    elif not isinstance(spec["StartAt"], str):
        problems.append(f"{loc}/StartAt: must be a string, got {json.dumps(spec['StartAt'])}")
    if not isinstance(states, dict) or not states:
        problems.append(f"{loc}/States: must be a non-empty object of states")
        return machine
    start = spec.get("StartAt")
    if isinstance(start, str):
        machine.start_at = start
        if start not in states:
            problems.append(f"{loc}/StartAt: state {start!r} does not exist")
    for name, state_spec in states.items():
        state_loc = f"{loc}/States/{name}"
        if len(name) > 80:
            problems.append(f"{state_loc}: state name is longer than 80 characters")
        machine.states[name] = _compile_state(
            name, state_spec, state_loc, problems, machine.query_language, states
        )
    if isinstance(start, str) and start in states:
        _check_reachable(start, states, loc, problems)
    return machine


def _check_reachable(start: str, states: dict[str, Any], loc: str, problems: list[str]) -> None:
    seen = {start}
    pending = [start]
    while pending:
        state_spec = states.get(pending.pop())
        if not isinstance(state_spec, dict):
            continue
        for target in _transitions(state_spec):
            if isinstance(target, str) and target in states and target not in seen:
                seen.add(target)
                pending.append(target)
    for name in states:
        if name not in seen:
            problems.append(f"{loc}/States/{name}: state {name!r} is not reachable from StartAt")


def _transitions(spec: dict[str, Any]) -> list[Any]:
    targets = [spec.get("Next"), spec.get("Default")]
    for rule in spec.get("Choices") or []:
        if isinstance(rule, dict):
            targets.append(rule.get("Next"))
    for catcher in spec.get("Catch") or []:
        if isinstance(catcher, dict):
            targets.append(catcher.get("Next"))
    return [t for t in targets if t is not None]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _path(
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


def _required_path(
    spec: dict[str, Any], key: str, loc: str, problems: list[str]
) -> JsonPath | None:
    """A path field that may be absent but not null (SecondsPath, MaxConcurrencyPath, ...)."""
    path = _path(spec, key, loc, problems, nullable=False)
    return path if isinstance(path, JsonPath) else None


def _compile_state(
    name: str,
    spec: Any,
    loc: str,
    problems: list[str],
    query_language: str,
    siblings: dict[str, Any],
) -> State:
    if not isinstance(spec, dict):
        problems.append(f"{loc}: a state must be an object, got {json.dumps(spec)}")
        return State(name, {}, query_language)
    state_type = spec.get("Type")
    if state_type not in FIELDS:
        problems.append(f"{loc}/Type: unknown state type {json.dumps(state_type)}")
        return State(name, spec, query_language)
    language = _query_language(spec, query_language, loc, problems)
    state = State(name, spec, language)
    for key in spec:
        if key not in FIELDS[state_type]:
            problems.append(f"{loc}/{key}: unknown field {key!r} for a {state_type} state")
        elif language == JSONATA and key in JSONPATH_ONLY:
            problems.append(f"{loc}/{key}: field {key!r} is not allowed in a JSONata state")
        elif language == JSONPATH and key in JSONATA_ONLY:
            problems.append(
                f"{loc}/{key}: field {key!r} is not allowed in a JSONPath state (use QueryLanguage "
                f"JSONata)"
            )
    _check_transitions(state_type, spec, loc, problems, siblings)
    if language == JSONPATH:
        state.queries = JSONPATH_QUERIES
        _compile_jsonpath_io(state, spec, loc, problems)
    else:
        state.queries = JSONATA_QUERIES
        for field in JSONATA_FIELDS:
            if field in spec:
                state.jsonata_fields[field] = compile_expression_tree(
                    spec[field], f"{loc}/{field}", problems
                )
        if "Assign" in spec:
            state.jsonata_assign = compile_jsonata_assign(spec["Assign"], f"{loc}/Assign", problems)
    if "Retry" in spec:
        state.retriers = _compile_retry(spec["Retry"], f"{loc}/Retry", problems)
    if "Catch" in spec:
        state.catchers = _compile_catch(spec["Catch"], f"{loc}/Catch", problems, siblings, language)
    _TYPE_COMPILERS[state_type](state, spec, loc, problems, siblings)
    return state


def _check_transitions(
    state_type: str, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    if state_type in _NO_TRANSITION:
        for key in ("Next", "End"):
            if key in spec:
                problems.append(f"{loc}/{key}: a {state_type} state cannot have {key}")
        return
    has_next, has_end = "Next" in spec, spec.get("End") is True
    if "End" in spec and spec["End"] is not True:
        problems.append(f"{loc}/End: must be true, got {json.dumps(spec['End'])}")
    if has_next and has_end:
        problems.append(f"{loc}: a state cannot have both Next and End")
    elif not has_next and not has_end:
        problems.append(f"{loc}: state has neither Next nor End")
    if has_next:
        _check_next(spec["Next"], f"{loc}/Next", problems, siblings)


def _compile_jsonpath_io(state: State, spec: dict[str, Any], loc: str, problems: list[str]) -> None:
    state.input_path = _path(spec, "InputPath", loc, problems)
    state.output_path = _path(spec, "OutputPath", loc, problems)
    state.result_path = _path(spec, "ResultPath", loc, problems, reference=True)
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
        state.assign = _compile_assign(spec["Assign"], f"{loc}/Assign", problems)


def _check_next(target: Any, loc: str, problems: list[str], siblings: dict[str, Any]) -> None:
    if not isinstance(target, str):
        problems.append(f"{loc}: must be a state name, got {json.dumps(target)}")
    elif target not in siblings:
        problems.append(f"{loc}: state {target!r} does not exist")


def _compile_assign(node: Any, loc: str, problems: list[str]) -> Template | None:
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
    "IntervalSeconds": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "MaxAttempts": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "BackoffRate": (lambda v: _is_num(v) and v >= 1, "a number >= 1.0"),
    "MaxDelaySeconds": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
}


def _compile_retry(node: Any, loc: str, problems: list[str]) -> list[Retrier]:
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


def _compile_catch(
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
            _check_next(spec["Next"], f"{catcher_loc}/Next", problems, siblings)
        if ok and "States.ALL" in spec["ErrorEquals"] and i != len(node) - 1:
            problems.append(f"{catcher_loc}/ErrorEquals: a States.ALL catcher must be the last one")
        result_path = _path(spec, "ResultPath", catcher_loc, problems, reference=True)
        if query_language == JSONPATH:
            assign = (
                _compile_assign(spec["Assign"], f"{catcher_loc}/Assign", problems)
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


def _no_extra(
    state: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    return None


def _compile_task(
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
            if not _is_int(value) or value <= 0:
                problems.append(
                    f"{loc}/{field}: must be a positive integer, got {json.dumps(value)}"
                )
            elif field == "TimeoutSeconds":
                state.timeout_seconds = value
            else:
                state.heartbeat_seconds = value
    state.timeout_seconds_path = _required_path(spec, "TimeoutSecondsPath", loc, problems)
    state.heartbeat_seconds_path = _required_path(spec, "HeartbeatSecondsPath", loc, problems)
    if state.query_language == JSONPATH and "Credentials" in spec:
        credentials = spec["Credentials"]
        if not isinstance(credentials, dict):
            problems.append(f"{loc}/Credentials: must be an object")
        else:
            state.credentials = compile_template(credentials, f"{loc}/Credentials", problems)


def _compile_choice(
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
            _check_next(rule["Next"], f"{rule_loc}/Next", problems, siblings)
        if state.query_language == JSONPATH:
            predicate = compile_rule(rule, rule_loc, problems, True)
            assign = (
                _compile_assign(rule["Assign"], f"{rule_loc}/Assign", problems)
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
        _check_next(spec["Default"], f"{loc}/Default", problems, siblings)


def _compile_wait(
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
            if not _is_int(seconds) or seconds < 0:
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
    state.seconds_path = _required_path(spec, "SecondsPath", loc, problems)
    state.timestamp_path = _required_path(spec, "TimestampPath", loc, problems)


def _compile_fail(
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


def _compile_parallel(
    state: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    branches = spec.get("Branches")
    if not isinstance(branches, list) or not branches:
        problems.append(f"{loc}/Branches: must be a non-empty array of branches")
        return
    for i, branch in enumerate(branches):
        state.branches.append(
            _compile_machine(
                branch, f"{loc}/Branches/{i}", problems, state.query_language, top=False
            )
        )


def _compile_map(
    state: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    processor_key = (
        "ItemProcessor" if "ItemProcessor" in spec else "Iterator" if "Iterator" in spec else None
    )
    if processor_key is None:
        problems.append(f"{loc}: a Map state needs an ItemProcessor (or Iterator)")
    elif "ItemProcessor" in spec and "Iterator" in spec:
        problems.append(f"{loc}: ItemProcessor and Iterator cannot both be set")
    else:
        processor = spec[processor_key]
        state.processor = _compile_machine(
            processor, f"{loc}/{processor_key}", problems, state.query_language, top=False
        )
        config = processor.get("ProcessorConfig") if isinstance(processor, dict) else None
        if isinstance(config, dict):
            mode = config.get("Mode", "INLINE")
            state.distributed = mode == "DISTRIBUTED"
            if mode not in ("INLINE", "DISTRIBUTED"):
                problems.append(
                    f"{loc}/{processor_key}/ProcessorConfig/Mode: must be INLINE or DISTRIBUTED, "
                    f"got {json.dumps(mode)}"
                )
    if "Parameters" in spec and "ItemSelector" in spec:
        problems.append(f"{loc}: Parameters and ItemSelector cannot both be set")
    if state.parameters is not None and state.item_selector is None:
        # In a Map state, Parameters is the legacy name of ItemSelector.
        state.item_selector, state.parameters = state.parameters, None
    if state.query_language == JSONPATH:
        _compile_map_limits(state, spec, loc, problems)
    state.max_concurrency_path = _required_path(spec, "MaxConcurrencyPath", loc, problems)
    state.tolerated_failure_count_path = _required_path(
        spec, "ToleratedFailureCountPath", loc, problems
    )
    state.tolerated_failure_percentage_path = _required_path(
        spec, "ToleratedFailurePercentagePath", loc, problems
    )
    if "MaxConcurrency" in spec and "MaxConcurrencyPath" in spec:
        problems.append(f"{loc}: MaxConcurrency and MaxConcurrencyPath cannot both be set")


def _compile_map_limits(state: State, spec: dict[str, Any], loc: str, problems: list[str]) -> None:
    state.items_path = _path(spec, "ItemsPath", loc, problems, nullable=False)
    max_concurrency = spec.get("MaxConcurrency")
    if max_concurrency is not None:
        if not _is_int(max_concurrency) or max_concurrency < 0:
            problems.append(
                f"{loc}/MaxConcurrency: must be a non-negative integer, got "
                f"{json.dumps(max_concurrency)}"
            )
        else:
            state.max_concurrency = max_concurrency
    tolerated_count = spec.get("ToleratedFailureCount")
    if tolerated_count is not None:
        if not _is_int(tolerated_count) or tolerated_count < 0:
            problems.append(
                f"{loc}/ToleratedFailureCount: must be a non-negative integer, got "
                f"{json.dumps(tolerated_count)}"
            )
        else:
            state.tolerated_failure_count = tolerated_count
    tolerated_percentage = spec.get("ToleratedFailurePercentage")
    if tolerated_percentage is not None:
        if not _is_num(tolerated_percentage) or not 0 <= tolerated_percentage <= 100:
            problems.append(
                f"{loc}/ToleratedFailurePercentage: must be a number between 0 and 100, got "
                f"{json.dumps(tolerated_percentage)}"
            )
        else:
            state.tolerated_failure_percentage = float(tolerated_percentage)


_TYPE_COMPILERS = {
    "Pass": _no_extra,
    "Succeed": _no_extra,
    "Task": _compile_task,
    "Choice": _compile_choice,
    "Wait": _compile_wait,
    "Fail": _compile_fail,
    "Parallel": _compile_parallel,
    "Map": _compile_map,
}
