"""Load-time validation (statelint-like) and compilation of a definition into State objects.

Every problem is collected with its JSON-pointer location, then raised together in one
DefinitionError, so a user fixes a definition in one pass.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import DefinitionError
from .jsonata_expressions import compile_assign as compile_jsonata_assign
from .jsonata_expressions import compile_expression_tree
from .query_jsonata import JSONATA_QUERIES
from .query_jsonpath import JSONPATH_QUERIES
from .state_fields import (
    check_next,
    compile_catch,
    compile_choice,
    compile_fail,
    compile_jsonpath_io,
    compile_map_limits,
    compile_required_path,
    compile_retry,
    compile_task,
    compile_wait,
    is_int,
    no_type_fields,
)
from .states import JSONATA, JSONPATH, Machine, State

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
    _check_unique_names(definition, "", {}, problems)
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
        if not is_int(timeout) or timeout <= 0:
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


def _check_unique_names(spec: Any, loc: str, seen: dict[str, str], problems: list[str]) -> None:
    """State names are unique within the whole state machine, nested machines (Parallel
    branches, Map item processors) included: the ASL spec ("States") requires it and AWS
    refuses a definition that repeats one (DUPLICATE_STATE_NAME)."""
    states = spec.get("States") if isinstance(spec, dict) else None
    if not isinstance(states, dict):
        return
    for name, state_spec in states.items():
        state_loc = f"{loc}/States/{name}"
        if name in seen:
            problems.append(f"{state_loc}: duplicate state name {name!r} (also {seen[name]})")
        else:
            seen[name] = state_loc
        if not isinstance(state_spec, dict):
            continue
        branches = state_spec.get("Branches")
        for index, branch in enumerate(branches if isinstance(branches, list) else []):
            _check_unique_names(branch, f"{state_loc}/Branches/{index}", seen, problems)
        for key in ("ItemProcessor", "Iterator"):
            if key in state_spec:
                _check_unique_names(state_spec[key], f"{state_loc}/{key}", seen, problems)


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
        compile_jsonpath_io(state, spec, loc, problems)
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
        state.retriers = compile_retry(spec["Retry"], f"{loc}/Retry", problems)
    if "Catch" in spec:
        state.catchers = compile_catch(spec["Catch"], f"{loc}/Catch", problems, siblings, language)
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
        check_next(spec["Next"], f"{loc}/Next", problems, siblings)


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
        compile_map_limits(state, spec, loc, problems)
    state.max_concurrency_path = compile_required_path(spec, "MaxConcurrencyPath", loc, problems)
    state.tolerated_failure_count_path = compile_required_path(
        spec, "ToleratedFailureCountPath", loc, problems
    )
    state.tolerated_failure_percentage_path = compile_required_path(
        spec, "ToleratedFailurePercentagePath", loc, problems
    )
    if "MaxConcurrency" in spec and "MaxConcurrencyPath" in spec:
        problems.append(f"{loc}: MaxConcurrency and MaxConcurrencyPath cannot both be set")


_TYPE_COMPILERS = {
    "Pass": no_type_fields,
    "Succeed": no_type_fields,
    "Task": compile_task,
    "Choice": compile_choice,
    "Wait": compile_wait,
    "Fail": compile_fail,
    "Parallel": _compile_parallel,
    "Map": _compile_map,
}
