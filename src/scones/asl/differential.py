"""Differential testing of scones.asl against moto's Step Functions interpreter.

    python -m scones.asl.differential [--seed N] [--count N] [--jobs N] [--json] [--out DIR]

Generates random but valid state machines and inputs from a small grammar of the language
(Pass with payload templates and intrinsic functions, Choice with its operators, Wait with
seconds or a path, Task with Retry and Catch and deliberate errors, Succeed, Fail, Parallel,
Map with an item selector), runs each on scones.asl and on moto's interpreter (LocalStack's,
embedded in moto), and compares status, error, output and the event types. Both sides run
in process: moto's backend is called directly and each execution runs to its end on the
calling thread; the Lambda tasks of both sides are answered by the same Python functions;
neither side sleeps (a FakeClock here, moto's waits patched out there). Everything is
seeded: ``--seed S --count N`` is the same N cases on every machine, and case i of a seed
is the same case in any run (``case(seed, i)``).

A disagreement is classified by what differs (status, error, output, event types; in order,
or as counts where branches run at once) and the state types of its minimal case: it is
shrunk to a minimal definition and input that still show the same difference (states,
fields and input keys dropped one at a time while it persists). Each disagreement is also
matched against the triaged causes (:data:`CAUSES`: moto's mistakes and what the documents
leave open, each with the recording or document that settles it; docs/asl-conformance.md);
any disagreement no cause explains makes the run exit 1.

moto is a development dependency (the ``dev`` and ``bench`` extras); it is imported only
when the moto side runs.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import multiprocessing
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scones.asl import DefinitionError, FakeClock, Resources, execute, load
from scones.errors import SconesError

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/differential"

# Causes found and triaged: each a verdict, the reason with what settles it, and a test on
# (definition, ours, moto) that recognises the cause in any case that shows it (a class name
# says what differs, not why). Verdicts: "moto wrong" (AWS does what we do, per the recording
# or document named) or "unspecified" (nothing settles it). Never "ours wrong": those are
# fixed, with the minimal case as a regression test. docs/asl-conformance.md has the table.


@dataclass(frozen=True)
class Cause:
    name: str
    verdict: str
    reason: str
    matches: Callable[[dict[str, Any], Outcome, Outcome], bool]


def _failed_at(outcome: Outcome, state_event: str) -> bool:
    return outcome.event_types[-2:] == (state_event, "ExecutionFailed")


def _choice_on_absent_variable(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return (
        ours.error == "States.Runtime"
        and _failed_at(ours, "ChoiceStateEntered")
        and moto.event_types.count("ChoiceStateExited")
        > ours.event_types.count("ChoiceStateExited")
    )


def _runtime_error_in_map_field(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return (
        ours.error == "States.Runtime"
        and _failed_at(ours, "MapStateEntered")
        and moto.event_types.count("MapStateFailed") > ours.event_types.count("MapStateFailed")
    )


def _has_catch(definition: dict[str, Any]) -> bool:
    return "Catch" in json.dumps(definition)


def _runtime_error_caught(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return (
        ours.error == "States.Runtime" and moto.error != "States.Runtime" and _has_catch(definition)
    )


def _max_concurrency_not_integer(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return "MaxConcurrencyPath field refers to value" in (ours.cause or "") and (
        moto.status == "SUCCEEDED" or moto.error != ours.error
    )


def _moto_cannot_evaluate(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    # The cause text is lost where a branch or iteration failed: moto then fails again,
    # re-raising a States.* error name it refuses; the note survives.
    return NOTE_NO_EVALUATOR in moto.notes or "'NoneType' object is not callable" in (
        moto.cause or ""
    )


def _inner_scope_assigns_outer_variable(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return NOTE_OUTER_SCOPE_WRITE in moto.notes


def _runtime_error_in_map_iteration(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return (
        ours.error == moto.error == "States.Runtime"
        and "MapIterationFailed" in ours.event_types
        and moto.event_types.count("MapStateFailed") > ours.event_types.count("MapStateFailed")
    )


def _result_path_not_applicable(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return (
        ours.error == "States.Runtime"
        and "Unable to apply step" in (ours.cause or "")
        and (moto.status == "SUCCEEDED" or "MapIterationFailed" not in moto.event_types)
    )


def _fail_path_not_string(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return ours.error == "States.Runtime" and "which is not a valid string" in (ours.cause or "")


def _empty_error_name(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return ours.error == "" and moto.error is None


def _branch_scheduling(definition: dict, ours: Outcome, moto: Outcome) -> bool:
    return (
        concurrent(definition)
        and ours.status == moto.status == "FAILED"
        and ours.error == moto.error
        and "MapStateFailed" not in moto.event_types
    )


CAUSES: tuple[Cause, ...] = (
    Cause(
        "moto-has-no-evaluator",
        "moto wrong",
        "moto fails the execution with \"'NoneType' object is not callable\" where a state "
        "reads a variable ($label in a template, a variable assigned from an intrinsic): its "
        "JSONata evaluator, which it also uses for variables, is left unset "
        "(moto.stepfunctions.parser.asl.jsonata.jsonata: _eval_jsonata = None). Variables "
        "in templates are in the developer guide (Passing data between states with "
        "variables) and in 24 recorded cases, which we pass.",
        _moto_cannot_evaluate,
    ),
    Cause(
        "fail-path-not-string",
        "moto wrong",
        "A Fail state whose ErrorPath or CausePath selects a number (or anything but a "
        "string): we fail the execution with States.Runtime; moto passes the value on as the "
        "cause, and crashes on it as an error name. Settled by the developer guide, Fail "
        "state: ErrorPath and CausePath must select a field whose value is a string. Which "
        "error and wording AWS reports is not recorded (ours: States.Runtime, worded as the "
        "recorded MaxConcurrencyPath value errors).",
        _fail_path_not_string,
    ),
    Cause(
        "fail-empty-error-name",
        "unspecified",
        "A Fail state whose ErrorPath selects an empty string: we fail the execution with the "
        "error name '' ; moto reports no error name (a truthiness test in its Fail state). "
        "Nothing recorded has an empty error name; an empty string is a string, as the "
        "developer guide asks of ErrorPath.",
        _empty_error_name,
    ),
    Cause(
        "inner-scope-assigns-outer-variable",
        "unspecified",
        "A state inside a Map iteration or a Parallel branch assigns a variable that an outer "
        "scope already holds: we bind it in the inner scope (the outer value is untouched and "
        "reads inside the scope see the new one); moto fails the iteration or branch "
        "(IllegalOuterScopeWrite, 'Cannot bind value ... as it belongs to an outer scope', "
        "taken from LocalStack), an error with no AWS wording. The recordings show inner "
        "scopes reading outer variables (BASE_SCOPE_MAP, BASE_SCOPE_PARALLEL, "
        "BASE_REFERENCE_IN_ITERATOR_OUTER_SCOPE) and none assigning one; the developer guide "
        "says inner scopes read outer variables and outer scopes never see inner ones. A "
        "recording would settle it: if AWS refuses, ours is wrong.",
        _inner_scope_assigns_outer_variable,
    ),
    Cause(
        "choice-on-absent-variable",
        "moto wrong",
        "A Choice rule whose Variable is absent from the state's input (IsPresent aside): AWS "
        "fails the execution with States.Runtime; moto treats the rule as not matching and "
        "goes on. Settled by the Step Functions developer guide, Choice state: 'If the state "
        "input doesn't contain the $.type field, the execution fails and an error is "
        "displayed in the execution history.'",
        _choice_on_absent_variable,
    ),
    Cause(
        "map-field-runtime-error",
        "moto wrong",
        "A Map whose ItemsPath is absent, or whose items are not an array (JSONPath): AWS "
        "fails with States.Runtime, goes from MapStateEntered straight to ExecutionFailed "
        "(no MapStateFailed), and no Catch catches it. moto reports MapStateFailed, and for "
        "a non-array a catchable States.QueryEvaluationError (the JSONata error name). "
        "Settled by the recordings: the JSONPath Map failing on its MaxConcurrencyPath "
        "(test_max_concurrency_path, two cases) has no MapStateFailed; every recorded "
        "JSONPath failure of an invalid path or value is States.Runtime (23 cases); and "
        "test_catch_states_runtime shows that even a Catch naming States.Runtime does not "
        "catch it.",
        _runtime_error_in_map_field,
    ),
    Cause(
        "max-concurrency-path-not-integer",
        "moto wrong",
        "A MaxConcurrencyPath whose value is a number but not an integer (1.5): we fail with "
        "States.Runtime ('The MaxConcurrencyPath field refers to value ... which is not a "
        "valid integer'), moto truncates it and runs. Settled by the recordings "
        "test_max_concurrency_path (NoNumber and {}: that failure and that cause) for values "
        "that are not integers; 1.5 is not one either.",
        _max_concurrency_not_integer,
    ),
    Cause(
        "catch-of-states-runtime",
        "moto wrong",
        "A States.Runtime error (an invalid path, an intrinsic on a missing value) in a state "
        "with a Catch on States.ALL: AWS fails the execution, moto catches it and goes on. "
        "Settled by the recording test_catch_states_runtime (a Catch naming States.Runtime "
        "itself does not catch it) and the developer guide's error names: States.Runtime "
        "errors are not retriable and always fail the execution; a retry or catch on "
        "States.ALL does not catch them.",
        _runtime_error_caught,
    ),
    Cause(
        "map-iteration-runtime-error",
        "unspecified",
        "A States.Runtime error inside a Map iteration (an intrinsic on a missing path): "
        "both fail the execution with States.Runtime; moto adds MapStateFailed after "
        "MapIterationFailed, we do not. No recording has a run-time error inside an "
        "iteration; the recordings of a Fail state inside one do have MapStateFailed (and we "
        "emit it there), the recordings of a run-time error in a state's own fields do not. "
        "We follow the latter; a recording would settle it.",
        _runtime_error_in_map_iteration,
    ),
    Cause(
        "result-path-not-applicable",
        "moto wrong",
        "A ResultPath that cannot be applied to the state's input (a field set inside a "
        "number, or inside an array): we fail the state with States.Runtime ('Invalid path "
        "... Unable to apply step', the recorded form of a path error); moto fails it on a "
        "number outside a Map but lets it pass inside a Map iteration or on an array. The "
        "ASL specification settles that the state fails ('States.ResultPathMatchFailure: A "
        "state's ResultPath field cannot be applied to the input the state received'); "
        "which of the two error names AWS reports is not recorded (ours: States.Runtime).",
        _result_path_not_applicable,
    ),
    Cause(
        "concurrent-branch-scheduling",
        "unspecified",
        "A Parallel branch or Map iteration fails with a run-time error while others run: "
        "both fail the same way, and differ only in how far the other branches got (their "
        "state events). AWS runs branches at once and aborts the rest when one fails, so how "
        "many of their events appear depends on timing; the harness runs moto's branches one "
        "after another, ours run at once.",
        _branch_scheduling,
    ),
)


def explain(definition: dict[str, Any], ours: Outcome, moto: Outcome) -> Cause | None:
    """The triaged cause of a disagreement, or None while it is unexplained."""
    return next((cause for cause in CAUSES if cause.matches(definition, ours, moto)), None)


class MotoMissingError(SconesError):
    """moto is not installed: the differential run needs it."""


# --- the Lambda functions both sides call ---------------------------------------------------


class DeliberateError(Exception):
    """What the ``boom`` function raises: a Task that fails on purpose."""


def echo(event: Any, context: Any) -> Any:
    return event


def boom(event: Any, context: Any) -> Any:
    raise DeliberateError("deliberate failure")


def count_keys(event: Any, context: Any) -> Any:
    # Blind to the Lambda service's response metadata (a previous Task's whole result may
    # arrive here): moto's stand-in has none of it, and the comparison leaves it out.
    if isinstance(event, dict):
        event = {key: value for key, value in event.items() if key not in LAMBDA_METADATA}
    return {"keys": sorted(event) if isinstance(event, dict) else [], "n": len(event or [])}


FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "echo": echo,
    "boom": boom,
    "countKeys": count_keys,
}


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def function_name(arn: str) -> str:
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 else arn


# --- the generator -------------------------------------------------------------------------


def random_input(rng: random.Random) -> dict[str, Any]:
    return {
        "n": rng.randint(-3, 12),
        "x": rng.choice([0, 1.5, 7, 42]),
        "name": rng.choice(["bike", "moto", "scone", ""]),
        "items": [rng.randint(0, 9) for _ in range(rng.randint(0, 4))],
        "flag": rng.choice([True, False]),
        "nested": {"k": rng.choice(["a", "b"]), "v": rng.randint(0, 5)},
        **({"maybe": rng.randint(0, 3)} if rng.random() < 0.5 else {}),
        # For TimestampPath: past (no wait on either side), not ISO-8601, not a string.
        **(
            {"when": rng.choice(["2020-01-02T03:04:05Z", "2020-01-02T03:04:05.123Z", "soon", 5])}
            if rng.random() < 0.3
            else {}
        ),
    }


PATHS = ["$.n", "$.x", "$.name", "$.items", "$.flag", "$.nested", "$.nested.k", "$.maybe"]


def random_parameters(rng: random.Random) -> dict[str, Any]:
    choices: list[tuple[str, Any]] = [
        ("const", rng.choice([1, "s", None, [1, 2], {"a": 1}])),
        ("copy.$", rng.choice(["$.n", "$.name", "$.nested", "$.items"])),
        ("fmt.$", "States.Format('{} and {}', $.name, $.n)"),
        ("len.$", "States.ArrayLength($.items)"),
        ("sum.$", "States.MathAdd($.n, 1)"),
        ("arr.$", "States.Array($.n, $.name)"),
        ("json.$", "States.JsonToString($.nested)"),
        ("ctx.$", "$$.State.Name"),
        ("var.$", rng.choice(["$limit", "$label"])),
    ]
    picked = rng.sample(choices, rng.randint(1, 4))
    return {key: value for key, value in picked}


def random_condition(rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(8)
    if kind == 0:
        return {"Variable": "$.n", "NumericGreaterThan": rng.randint(-2, 10)}
    if kind == 1:
        return {"Variable": "$.name", "StringEquals": rng.choice(["bike", "moto", ""])}
    if kind == 2:
        return {"Variable": "$.maybe", "IsPresent": rng.choice([True, False])}
    if kind == 3:
        return {"Variable": "$.flag", "BooleanEquals": True}
    if kind == 4:
        return {"Variable": "$.x", "NumericLessThanEqualsPath": "$.n"}
    if kind == 5:
        return {"Variable": "$.name", "StringMatches": rng.choice(["b*", "*o", "\\*"])}
    if kind == 6:
        return {"Not": random_condition(rng)}
    return {rng.choice(["And", "Or"]): [random_condition(rng), random_condition(rng)]}


def random_result_path(rng: random.Random) -> str | None:
    return rng.choice(["$", "$.result", "$.nested.out", None])


def pass_state(rng: random.Random) -> dict[str, Any]:
    state: dict[str, Any] = {"Type": "Pass"}
    roll = rng.random()
    if roll < 0.4:
        state["Parameters"] = random_parameters(rng)
    elif roll < 0.6:
        state["Result"] = {"r": rng.randint(0, 9)}
    if rng.random() < 0.5:
        state["ResultPath"] = random_result_path(rng)
    if rng.random() < 0.15:
        state["InputPath"] = rng.choice(["$", "$.nested"])
    if rng.random() < 0.25:
        state["Assign"] = random_assign(rng)
    if rng.random() < 0.1:
        state["OutputPath"] = rng.choice(["$.nested", "$.result"])
    return state


# Variables (JSONPath): Assign sets them from constants, paths, intrinsics and other
# variables; later states read them as "$name" in templates, Choice rules and Map fields.
VARIABLES = ("limit", "label")


def random_assign(rng: random.Random) -> dict[str, Any]:
    choices: list[tuple[str, Any]] = [
        ("limit", rng.choice([0, 1, 2, 5])),
        ("limit.$", rng.choice(["$.n", "$.maybe", "States.MathAdd($.n, 1)"])),
        ("label", rng.choice(["bike", "x"])),
        ("label.$", rng.choice(["$.name", "$$.State.Name"])),
    ]
    # One key per variable ("limit" and "limit.$" together are refused): the last wins.
    by_name = {key.removesuffix(".$"): (key, value) for key, value in rng.sample(choices, 2)}
    return dict(list(by_name.values())[: rng.randint(1, len(by_name))])


def task_state(rng: random.Random) -> dict[str, Any]:
    name = rng.choice(["echo", "echo", "countKeys", "boom"])
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn(name), "Payload.$": "$"},
    }
    if rng.random() < 0.7:
        state["OutputPath"] = "$.Payload"
    if rng.random() < 0.4:
        state["ResultSelector"] = {"payload.$": "$.Payload", "code.$": "$.StatusCode"}
        state.pop("OutputPath", None)
    if rng.random() < 0.4:
        state["Retry"] = [
            {
                "ErrorEquals": [rng.choice(["States.ALL", "DeliberateError", "Other"])],
                "IntervalSeconds": 1,
                "MaxAttempts": rng.randint(0, 2),
                "BackoffRate": 2.0,
            }
        ]
    return state


def wait_state(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.4:
        return {"Type": "Wait", "Seconds": rng.randint(0, 3)}
    if roll < 0.8:
        return {"Type": "Wait", "SecondsPath": rng.choice(["$.n", "$.x", "$.name", "$.missing"])}
    if roll < 0.9:
        return {"Type": "Wait", "Timestamp": "2020-01-02T03:04:05Z"}
    return {"Type": "Wait", "TimestampPath": rng.choice(["$.when", "$.name"])}


def map_state(rng: random.Random) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Map",
        "ItemsPath": "$.items",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": "Inner",
            "States": {"Inner": {**pass_state(rng), "End": True}},
        },
        "ResultPath": rng.choice(["$.mapped", "$"]),
    }
    if rng.random() < 0.5:
        state["ItemSelector"] = {"item.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"}
    roll = rng.random()
    if roll < 0.2:
        state["MaxConcurrency"] = rng.randint(0, 2)
    elif roll < 0.35:
        state["MaxConcurrencyPath"] = rng.choice(["$.n", "$.x", "$limit"])
    return state


def parallel_state(rng: random.Random) -> dict[str, Any]:
    branches = [
        {"StartAt": "B", "States": {"B": {**pass_state(rng), "End": True}}}
        for _ in range(rng.randint(1, 2))
    ]
    state: dict[str, Any] = {
        "Type": "Parallel",
        "Branches": branches,
        "ResultPath": rng.choice(["$.par", "$"]),
    }
    if rng.random() < 0.2:
        state["ResultSelector"] = {"first.$": "$[0]", "count.$": "States.ArrayLength($)"}
    return state


MAKERS: list[Callable[[random.Random], dict[str, Any]]] = [
    pass_state,
    pass_state,
    task_state,
    task_state,
    wait_state,
    map_state,
    parallel_state,
]


def random_case(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """One valid definition (a chain with branches to later states) and its input."""
    count = rng.randint(1, 5)
    names = [f"S{i}" for i in range(count)]
    states: dict[str, Any] = {}
    for index, name in enumerate(names):
        last = index == count - 1
        if not last and rng.random() < 0.2:
            later = names[index + 1 :]
            states[name] = {
                "Type": "Choice",
                "Choices": [{**random_condition(rng), "Next": rng.choice(later)}],
                "Default": rng.choice([*later, "Failed"]),
            }
            continue
        state = rng.choice(MAKERS)(rng)
        if last:
            state["End"] = True
        else:
            state["Next"] = names[index + 1]
        if state["Type"] in ("Task", "Map", "Parallel") and rng.random() < 0.4:
            errors = rng.choice([["States.ALL"], ["States.ALL"], ["DeliberateError"], ["Other"]])
            if errors != ["States.ALL"] and rng.random() < 0.5:
                errors.append("States.TaskFailed")
            state["Catch"] = [
                {
                    "ErrorEquals": errors,
                    "ResultPath": rng.choice(["$.error", "$", None]),
                    "Next": rng.choice(["Done", "Failed"]),
                }
            ]
        states[name] = state
    states["Done"] = {"Type": "Succeed"}
    states["Failed"] = rng.choice(
        [
            {"Type": "Fail", "Error": "Generated", "Cause": "a generated Fail state"},
            {"Type": "Fail", "ErrorPath": "$.name", "CausePath": rng.choice(["$.name", "$.x"])},
            {"Type": "Fail", "ErrorPath": "$.missing"},
        ]
    )
    definition = with_unique_names({"StartAt": names[0], "States": states})
    return without_unreachable(definition), random_input(rng)


def with_unique_names(definition: dict[str, Any]) -> dict[str, Any]:
    """Nested states renamed after the state that holds them (S1 -> S1.Inner, S2 -> S2.B0.B):
    a state name must be unique in the whole machine (ASL spec, "States"; AWS refuses a
    repeat with DUPLICATE_STATE_NAME), and two Maps or branches built alike share names."""
    definition = copy.deepcopy(definition)
    for name, state in definition["States"].items():
        if "ItemProcessor" in state:
            nested = [(name, state["ItemProcessor"])]
        else:
            nested = [
                (f"{name}.B{i}", branch) for i, branch in enumerate(state.get("Branches", []))
            ]
        for prefix, machine in nested:
            renamed = {old: f"{prefix}.{old}" for old in machine["States"]}
            machine["StartAt"] = renamed[machine["StartAt"]]
            machine["States"] = {renamed[old]: inner for old, inner in machine["States"].items()}
            for inner in machine["States"].values():
                for rule in [inner, *inner.get("Catch", []), *inner.get("Choices", [])]:
                    if rule.get("Next") in renamed:
                        rule["Next"] = renamed[rule["Next"]]
                if inner.get("Default") in renamed:
                    inner["Default"] = renamed[inner["Default"]]
    return definition


def targets(state: dict[str, Any]) -> list[str]:
    rules = [*state.get("Catch", []), *state.get("Choices", [])]
    named = [state.get("Next"), state.get("Default"), *(rule.get("Next") for rule in rules)]
    return [name for name in named if name]


def without_unreachable(definition: dict[str, Any]) -> dict[str, Any]:
    """AWS refuses a definition with a state nothing reaches: drop such states."""
    states = definition["States"]
    seen, todo = set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        todo.extend(targets(states[name]))
    kept = {name: state for name, state in states.items() if name in seen}
    return {**definition, "States": kept}


# --- the two sides -------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str | None
    output: Any
    event_types: tuple[str, ...]
    cause: str | None = None  # not compared (wordings differ); read by the triage
    # What each Lambda call was given (JSON, sorted: concurrent branches call in any order).
    task_inputs: tuple[str, ...] = ()
    # moto only: the paths of its own it took that no AWS execution has (NOTE_*).
    notes: frozenset[str] = frozenset()


# moto called its JSONata evaluator, which it leaves unset (it samples variables with it).
NOTE_NO_EVALUATOR = "no-evaluator"
# moto refused to bind a variable in an inner scope because an outer scope holds it.
NOTE_OUTER_SCOPE_WRITE = "outer-scope-write"


def task_input_text(payload: Any) -> str:
    """A Lambda call's payload as compared: JSON with sorted keys, without the response
    metadata of an earlier Lambda call that the payload may carry (moto's stand-in has none)."""
    return json.dumps(without_lambda_metadata(payload), sort_keys=True, separators=(",", ":"))


def resources(calls: list[str] | None = None) -> Resources:
    """The functions registered for our side; each call's payload noted in ``calls``."""
    registry = Resources()
    for name, function in FUNCTIONS.items():
        registry = registry.register_lambda(name, _noting(function, calls))
    return registry


def _noting(
    function: Callable[[Any, Any], Any], calls: list[str] | None
) -> Callable[[Any, Any], Any]:
    if calls is None:
        return function

    def noted(event: Any, context: Any) -> Any:
        calls.append(task_input_text(event))
        return function(event, context)

    return noted


def run_ours(definition: dict[str, Any], input: Any) -> Outcome:
    calls: list[str] = []
    execution = execute(load(definition), input, resources(calls), clock=FakeClock())
    return Outcome(
        execution.status,
        execution.error,
        execution.output,
        tuple(execution.event_types),
        execution.cause,
        tuple(sorted(calls)),
    )


_MACHINE_NUMBERS = itertools.count()


class MotoInterpreter:
    """moto's interpreter in process: its backend called directly, executions run on the
    calling thread, Lambda answered by :data:`FUNCTIONS`, waits and retry sleeps skipped."""

    def __init__(self, functions: dict[str, Callable[[Any, Any], Any]] | None = None) -> None:
        self.functions = FUNCTIONS if functions is None else functions
        try:
            from moto.stepfunctions.parser.models import stepfunctions_parser_backends
        except ImportError:
            raise MotoMissingError(
                "the differential run needs moto: pip install 'moto[stepfunctions]'"
            ) from None
        # moto logs every failed state at ERROR level; failures are what the fuzzer makes.
        logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        self.backend = stepfunctions_parser_backends[ACCOUNT][REGION]
        # Names never repeat in a process: the backend is moto's global one, and creating a
        # machine under a name it knows returns the old machine.
        self._names = (f"d{n}" for n in _MACHINE_NUMBERS)
        self._machine: Any = None
        self._calls: list[str] = []  # the payloads of this run's Lambda calls
        self._notes: set[str] = set()  # NOTE_* of this run
        self._machine_text = ""

    @contextmanager
    def patched(self) -> Iterator[MotoInterpreter]:
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
            inline_iteration_component as inline_map,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import (
            branch_worker,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
            lambda_eval_utils,
        )
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (
            wait_function,
        )
        from moto.stepfunctions.parser.asl.eval import variable_store
        from moto.stepfunctions.parser.asl.jsonata import jsonata
        from moto.stepfunctions.parser.backend import execution_worker

        def no_evaluator(expression: str) -> Any:
            # What moto does with its evaluator unset (calls None), noted for the triage.
            self._notes.add(NOTE_NO_EVALUATOR)
            raise TypeError("'NoneType' object is not callable")

        unnoted_set = variable_store.VariableStore.set

        def noted_set(store: Any, *args: Any, **kwargs: Any) -> None:
            try:
                unnoted_set(store, *args, **kwargs)
            except variable_store.IllegalOuterScopeWrite:
                self._notes.add(NOTE_OUTER_SCOPE_WRITE)
                raise

        def invoke(parameters: dict, region: str, state_credentials: Any) -> dict[str, Any]:
            function = self.functions[function_name(str(parameters["FunctionName"]))]
            payload = json.loads(parameters.get("Payload") or "null")
            self._calls.append(task_input_text(payload))
            try:
                return {"StatusCode": 200, "Payload": function(payload, None)}
            except Exception as exc:  # an unhandled Lambda error, as AWS reports it
                body = {"errorMessage": str(exc), "errorType": type(exc).__name__}
                return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": body}

        class NoSleep:
            time = staticmethod(time.time)

            @staticmethod
            def sleep(seconds: float) -> None:
                return None

        def map_worker_inline(component: Any, env: Any, eval_input: Any, job_pool: Any) -> Any:
            # The first worker takes every item in order; the others find the pool empty.
            worker = component._create_worker(env=env, eval_input=eval_input, job_pool=job_pool)
            worker.eval()
            return worker

        def branch_inline(worker: Any) -> None:
            if worker._branch_worker_comm._termination_event.is_set():
                return  # an earlier branch failed: AWS would stop this one, not run it whole
            worker._program.eval(worker.env)
            worker._branch_worker_comm.on_terminated(env=worker.env)

        patches: list[tuple[Any, str, Any]] = [
            # Map iterations and Parallel branches one after another on the calling thread:
            # moto's threads made the events (and which iterations a failure aborts) differ
            # from run to run, so no seeded run could be repeated.
            (inline_map.InlineIterationComponent, "_launch_worker", map_worker_inline),
            (branch_worker.BranchWorker, "start", branch_inline),
            (lambda_eval_utils, "_invoke_lambda_function", invoke),
            # as moto's own synchronous executions run: on the calling thread
            (execution_worker.ExecutionWorker, "start", lambda worker: worker._execution_logic()),
            (wait_function.WaitFunction, "_wait_interval", lambda self, env, wait_seconds: None),
            (retrier_decl, "time", NoSleep),
            (jsonata, "_eval_jsonata", no_evaluator),
            (variable_store.VariableStore, "set", noted_set),
        ]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
        for owner, name, value in patches:
            setattr(owner, name, value)
        try:
            yield self
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)

    def machine_for(self, definition: dict[str, Any]) -> Any:
        """moto's state machine for ``definition``: created once while the same definition
        runs again (a throughput run), replaced when it changes (a fuzzing run)."""
        # Not sort_keys: a payload template builds its object in its own key order, which
        # States.JsonToString and the output show.
        text = json.dumps(definition)
        if self._machine is not None and self._machine_text == text:
            return self._machine
        if self._machine is not None:
            self.backend.delete_state_machine(self._machine.arn)
        self._machine = self.backend.create_state_machine(
            name=next(self._names), definition=text, roleArn=ROLE_ARN
        )
        self._machine_text = text
        return self._machine

    def run(self, definition: dict[str, Any], input: Any) -> Outcome:
        self._calls = []
        self._notes = set()
        machine = self.machine_for(definition)
        execution = self.backend.start_execution(
            machine.arn, name=next(self._names), execution_input=json.dumps(input)
        )
        machine.executions.clear()  # memory stays flat over many executions
        worker: Any = execution.exec_worker
        events = worker.env.event_manager.get_event_history()
        status = getattr(execution.exec_status, "value", str(execution.exec_status))
        output = execution.output
        if isinstance(output, str):
            output = json.loads(output)
        return Outcome(
            str(status),
            execution.error,
            output if status == "SUCCEEDED" else None,
            tuple(str(getattr(event["type"], "value", event["type"])) for event in events),
            None if execution.cause is None else str(execution.cause),
            tuple(sorted(self._calls)),
            frozenset(self._notes),
        )


# --- comparing, classifying, shrinking -----------------------------------------------------


def state_types(definition: dict[str, Any]) -> str:
    return "+".join(sorted({state["Type"] for state in definition["States"].values()}))


# What the Lambda service adds around a payload (request ids, headers): AWS's own response
# metadata, which moto's stand-in does not invent; compared without it.
LAMBDA_METADATA = ("ExecutedVersion", "SdkHttpMetadata", "SdkResponseMetadata")


def without_lambda_metadata(value: Any) -> Any:
    """``value`` without the Lambda service's metadata: no response metadata, and an
    unhandled error's cause reduced to its type and message (AWS adds a request id and a
    stack trace, which moto's stand-in cannot know)."""
    if isinstance(value, dict) and isinstance(value.get("Cause"), str):
        try:
            cause = json.loads(value["Cause"])
        except ValueError:
            cause = None
        if isinstance(cause, dict) and "errorType" in cause:
            brief = {key: cause.get(key) for key in ("errorMessage", "errorType")}
            value = {**value, "Cause": json.dumps(brief, separators=(",", ":"))}
    if isinstance(value, dict):
        return {
            key: without_lambda_metadata(item)
            for key, item in value.items()
            if key not in LAMBDA_METADATA
        }
    if isinstance(value, list):
        return [without_lambda_metadata(item) for item in value]
    return value


# How many Map iterations start before one fails and the others are aborted depends on
# scheduling (AWS starts up to MaxConcurrency at once; moto here runs them one by one).
SCHEDULING_EVENTS = ("MapIterationStarted", "MapIterationAborted")


def concurrent(definition: dict[str, Any]) -> bool:
    """Whether branches or iterations may run at once (their events interleave freely)."""
    return any(state["Type"] in ("Map", "Parallel") for state in definition["States"].values())


def difference(ours: Outcome, moto: Outcome, definition: dict[str, Any]) -> str | None:
    """What differs (the dimension and the two values, no state types), or None.

    Event types are compared in order, except where Map iterations or Parallel branches run
    at once: AWS interleaves their events in any order, so there only the counts count.
    """
    if ours.status != moto.status:
        return f"status {ours.status}/{moto.status}"
    if ours.error != moto.error:
        return f"error {ours.error}/{moto.error}"
    ours_output, moto_output = (
        without_lambda_metadata(ours.output),
        without_lambda_metadata(moto.output),
    )
    if ours.status == "SUCCEEDED" and ours_output != moto_output:
        return "output"
    if ours.task_inputs != moto.task_inputs:
        return "task inputs"
    if concurrent(definition):
        ours_count, moto_count = Counter(ours.event_types), Counter(moto.event_types)
        for scheduled in SCHEDULING_EVENTS:  # how many started before a failure stopped them
            ours_count.pop(scheduled, None)
            moto_count.pop(scheduled, None)
        if ours_count == moto_count:
            return None
        # Which types differ, not by how many: how many iterations a failure aborts depends
        # on the items, not on the cause.
        ours_only = sorted(ours_count - moto_count)
        moto_only = sorted(moto_count - ours_count)
        return f"event counts +{','.join(ours_only)} -{','.join(moto_only)}"
    if ours.event_types != moto.event_types:
        ours_only = sorted(set(ours.event_types) - set(moto.event_types))
        moto_only = sorted(set(moto.event_types) - set(ours.event_types))
        if not ours_only and not moto_only:
            return "event order"
        return f"event types +{','.join(ours_only)} -{','.join(moto_only)}"
    return None


# States the shrinker keeps as targets of what it cannot drop (a Catch, a Choice rule): in a
# minimal case they are there for the others, so they do not name a class (unless alone).
INCIDENTAL_TYPES = {"Succeed", "Fail", "Choice"}


def class_of(difference: str, minimal: dict[str, Any]) -> str:
    """A disagreement's class: what differs, and the state types of its minimal case (one
    class per cause, not one per combination of the states around it)."""
    types = {state["Type"] for state in minimal["States"].values()}
    named = types - INCIDENTAL_TYPES or types
    if difference.startswith(("error States.Runtime/", "status FAILED/")) and "Choice" in types:
        named |= {"Choice"}  # a Choice that fails at run time is the cause, not a bystander
    return f"{difference} @ {'+'.join(sorted(named))}"


def signature_of(
    moto: MotoInterpreter, definition: dict[str, Any], input: Any
) -> tuple[str | None, Outcome | None, Outcome | None]:
    try:
        ours = run_ours(definition, input)
    except (SconesError, DefinitionError) as exc:  # a definition ours refuses, moto may run
        return f"ours refused: {type(exc).__name__}", None, None
    try:
        theirs = moto.run(definition, input)
    except Exception as exc:  # moto refusing the definition, or crashing on it
        return f"moto refused: {type(exc).__name__}", ours, None
    return difference(ours, theirs, definition), ours, theirs


def shrink_candidates(definition: dict[str, Any], input: Any) -> Iterator[tuple[dict, Any]]:
    """Smaller variants: a state dropped (its predecessors skip it), a field dropped, an
    input key dropped."""
    states = definition["States"]
    for name, state in states.items():
        if name == definition["StartAt"] or state["Type"] == "Choice":
            continue
        target = state.get("Next")
        smaller = copy.deepcopy(definition)
        del smaller["States"][name]
        for other in smaller["States"].values():
            if other.get("Next") == name:
                if target is None:
                    other.pop("Next")
                    other["End"] = True
                else:
                    other["Next"] = target
            for rule in [*other.get("Catch", []), *other.get("Choices", [])]:
                if rule.get("Next") == name:
                    rule["Next"] = target or "Done"
            if other.get("Default") == name:
                other["Default"] = target or "Done"
        smaller["States"].setdefault("Done", {"Type": "Succeed"})
        yield without_unreachable(smaller), input
    for name, state in states.items():
        for key in list(state):
            if key in ("Type", "Next", "End", "Resource", "Parameters", "Choices", "Default"):
                continue
            if key in ("ItemProcessor", "Branches"):
                continue
            smaller = copy.deepcopy(definition)
            del smaller["States"][name][key]
            yield smaller, input
    if isinstance(input, dict):
        for key in list(input):
            yield definition, {k: v for k, v in input.items() if k != key}


def case_size(definition: dict[str, Any], input: Any) -> int:
    return len(json.dumps(definition)) + len(json.dumps(input))


def shrink(
    moto: MotoInterpreter, definition: dict[str, Any], input: Any, signature: str
) -> tuple[dict[str, Any], Any]:
    """The smallest variant (greedy, to a fixed point) that shows the same signature."""
    improved = True
    while improved:
        improved = False
        size = case_size(definition, input)
        for candidate, candidate_input in shrink_candidates(definition, input):
            if case_size(candidate, candidate_input) >= size:
                continue  # not smaller (a dropped Done comes back): no progress, no loop
            try:
                load(candidate)
            except (SconesError, DefinitionError):
                continue
            if signature_of(moto, candidate, candidate_input)[0] == signature:
                definition, input, improved = candidate, candidate_input, True
                break
    return definition, input


# --- the run -------------------------------------------------------------------------------


UNEXPLAINED = "unexplained"


@dataclass
class Report:
    seed: int
    executions: int = 0
    seconds: float = 0.0
    classes: Counter[str] = field(default_factory=Counter)
    # class -> how many of its disagreements each cause explains (or UNEXPLAINED)
    causes: dict[str, Counter[str]] = field(default_factory=dict)
    minimal: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (difference, state types of the generated case) -> its class, so a case like one
    # already shrunk is not shrunk again.
    known: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def unexplained(self) -> int:
        return sum(found[UNEXPLAINED] for found in self.causes.values())

    def by_cause(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for found in self.causes.values():
            total.update(found)
        return total

    def merge(self, other: Report) -> None:
        """Add another slice's findings (the first slice's minimal case of a class stays)."""
        self.executions += other.executions
        self.classes.update(other.classes)
        for name, found in other.causes.items():
            self.causes.setdefault(name, Counter()).update(found)
        for name, minimal in other.minimal.items():
            self.minimal.setdefault(name, minimal)
        for key, name in other.known.items():
            self.known.setdefault(key, name)

    def to_dict(self) -> dict[str, Any]:
        verdicts = {cause.name: cause for cause in CAUSES}
        return {
            "seed": self.seed,
            "executions": self.executions,
            "seconds": round(self.seconds, 1),
            "disagreements": sum(self.classes.values()),
            "causes": [
                {
                    "cause": name,
                    "count": n,
                    "verdict": verdicts[name].verdict if name in verdicts else UNEXPLAINED,
                    "reason": verdicts[name].reason if name in verdicts else "",
                }
                for name, n in self.by_cause().most_common()
            ],
            "classes": [
                {
                    "signature": name,
                    "count": n,
                    "causes": dict(self.causes[name].most_common()),
                    "minimal": self.minimal.get(name),
                }
                for name, n in self.classes.most_common()
            ],
            "unexplained": self.unexplained,
        }


def case(seed: int, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Case ``index`` of seed ``seed``: each case has its own generator, so any one of a long
    run is reproduced alone, and a run splits across processes."""
    return random_case(random.Random(f"{seed}/{index}"))


def run(seed: int, count: int, *, shrink_cases: bool = True, jobs: int = 1) -> Report:
    """Cases 0 .. count-1 of ``seed``, in ``jobs`` processes (each a contiguous slice).

    The counts per cause and the executions are the same for any ``jobs``; with shrinking,
    a class first met in another slice may shrink to another minimal case (and name)."""
    started = time.perf_counter()
    if jobs <= 1 or count < 2 * jobs:
        report = run_slice(seed, 0, count, shrink_cases)
    else:
        bounds = [count * job // jobs for job in range(jobs + 1)]
        context = multiprocessing.get_context("spawn")  # moto's patches stay in each child
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            slices = pool.map(
                run_slice,
                itertools.repeat(seed),
                bounds[:-1],
                bounds[1:],
                itertools.repeat(shrink_cases),
            )
            report = Report(seed)
            for part in slices:
                report.merge(part)
    report.seconds = time.perf_counter() - started
    return report


def run_slice(seed: int, start: int, stop: int, shrink_cases: bool = True) -> Report:
    report = Report(seed)
    with MotoInterpreter().patched() as moto:
        for index in range(start, stop):
            definition, input = case(seed, index)
            found, ours, theirs = signature_of(moto, definition, input)
            report.executions += 1
            if found is None:
                continue
            cause = explain(definition, ours, theirs) if ours and theirs else None
            key = (found, state_types(definition))
            name = report.known.get(key)
            if name is None:
                if shrink_cases:
                    definition, input = shrink(moto, definition, input, found)
                name = report.known[key] = class_of(found, definition)
                report.minimal.setdefault(
                    name, {"definition": definition, "input": input, "case": index}
                )
            report.classes[name] += 1
            report.causes.setdefault(name, Counter())[cause.name if cause else UNEXPLAINED] += 1
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed")
    parser.add_argument("--count", type=int, default=1000, help="cases to generate and run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="write each class's minimal case here")
    parser.add_argument("--no-shrink", action="store_true", help="keep the first case as is")
    parser.add_argument(
        "--jobs", type=int, default=1, help="processes, each running a slice of the cases"
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        report = run(args.seed, args.count, shrink_cases=not args.no_shrink, jobs=args.jobs)
    except MotoMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = report.to_dict()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for index, entry in enumerate(summary["classes"]):
            (args.out / f"class-{index:02d}.json").write_text(json.dumps(entry, indent=2))
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['executions']} executions (seed {args.seed}) in {summary['seconds']} s: "
            f"{summary['disagreements']} disagreements in {len(summary['classes'])} classes, "
            f"{summary['unexplained']} unexplained"
        )
        print("by cause:")
        for entry in summary["causes"]:
            print(f"  {entry['count']:6d}  {entry['verdict']:12s} {entry['cause']}")
        print("by class:")
        for entry in summary["classes"]:
            found = ", ".join(f"{name} {n}" for name, n in entry["causes"].items())
            print(f"  {entry['count']:6d}  {entry['signature']}  ({found})")
    return 1 if report.unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
