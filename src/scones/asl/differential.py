"""Differential testing of scones.asl against moto's Step Functions interpreter.

    python -m scones.asl.differential [--seed N] [--count N] [--json] [--out DIR]

Generates random but valid state machines and inputs from a small grammar of the language
(Pass with payload templates and intrinsic functions, Choice with its operators, Wait with
seconds or a path, Task with Retry and Catch and deliberate errors, Succeed, Fail, Parallel,
Map with an item selector), runs each on scones.asl and on moto's interpreter (LocalStack's,
embedded in moto), and compares status, error, output and the event types. Both sides run
in process: moto's backend is called directly and each execution runs to its end on the
calling thread; the Lambda tasks of both sides are answered by the same Python functions;
neither side sleeps (a FakeClock here, moto's waits patched out there). Everything is
seeded: ``--seed S --count N`` is the same N cases on every machine.

A disagreement is classified by a stable signature (which dimension differs, and the state
types and error involved) and shrunk to a minimal definition and input that still shows the
same signature (states dropped, fields dropped, input keys dropped, one at a time, as long
as the signature persists). Classes that were triaged as moto's mistake or as unspecified
(:data:`TRIAGE`, with the reason and the document that settles it; docs/asl-conformance.md)
are counted as explained; any other class makes the run exit 1.

moto is a development dependency (the ``dev`` and ``bench`` extras); it is imported only
when the moto side runs.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scones.asl import DefinitionError, FakeClock, Resources, execute, load
from scones.errors import SconesError

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/differential"

# Class signature -> (verdict, reason). Verdicts: "moto wrong" (AWS does what we do, per the
# document named) or "unspecified" (the documents do not settle it). Never "ours wrong":
# those are fixed, with the minimal case as a regression test.
_RUNTIME_IS_FATAL = (
    "Developer guide, error names: a States.Runtime error is not retriable and always fails "
    "the execution; a Retry or Catch on States.ALL does not catch it. Recorded "
    "(shared/asl-conformance): test_catch_states_runtime (a Catch on States.Runtime itself "
    "does not catch it; TaskStateEntered ... ExecutionFailed, no TaskStateFailed)"
)
TRIAGE: dict[str, tuple[str, str]] = {
    "ExecutionFailed(States.Runtime)/MapStateFailed at Map": (
        "moto wrong",
        "A States.Runtime while the Map state reads its input (ItemsPath not found) fails "
        "the execution at once; moto emits MapStateFailed and lets a Catch take it. "
        + _RUNTIME_IS_FATAL
        + "; test_max_concurrency_path_NoNumber and _max_concurrency_value0 (MapStateEntered "
        "then ExecutionFailed, no MapStateFailed).",
    ),
    "ExecutionFailed(States.Runtime)/MapStateFailed at Pass": (
        "unspecified",
        "A States.Runtime inside a Map iteration (a path not found in an item): ours emits "
        "MapIterationFailed then ExecutionFailed; moto adds MapStateFailed, and then lets a "
        "Catch on States.ALL take it. The Catch part is moto's mistake: "
        + _RUNTIME_IS_FATAL
        + ". The MapStateFailed itself is not settled: no recording has a run-time error "
        "inside an iteration, the recordings of a Fail state inside one do have "
        "MapStateFailed (test_map_state_catch_empty_fail), those of a run-time error in a "
        "state's own fields do not (we follow the latter).",
    ),
    "ExecutionFailed(States.Runtime)/ChoiceStateExited at Choice": (
        "moto wrong",
        "A Choice rule whose Variable path is not in the input fails the execution with "
        "States.Runtime; moto evaluates the rule as false and takes the Default. Developer "
        "guide, Choice state: the execution fails if the input lacks the field, and the "
        "IsPresent example guards a comparison for that reason. Not recorded.",
    ),
    "MapIterationFailed/PassStateExited at Pass": (
        "moto wrong",
        "A ResultPath of two steps ($.nested.out) on an input that is not an object (a Map "
        "item that is a number): moto (jsonpath-ng update_or_create) leaves the input as it "
        'was and succeeds; AWS fails the state ("Unable to apply ReferencePath ... to '
        'input", aws/aws-cdk issue 29473), and the ASL spec has an error for it '
        "(States.ResultPathMatchFailure). Which error name AWS reports is not settled: ours "
        "says States.Runtime.",
    ),
    "ExecutionFailed(States.Runtime)/PassStateExited at Pass": (
        "moto wrong",
        "The same ResultPath cause as 'MapIterationFailed/PassStateExited at Pass', in a "
        "Parallel branch or at the top level (no iteration event before the failure).",
    ),
}


class MotoMissingError(SconesError):
    """moto is not installed: the differential run needs it."""


# --- the Lambda functions both sides call ---------------------------------------------------


# What the Lambda service adds around a payload (request ids, headers): AWS's own response
# metadata, which moto's stand-in does not invent; compared without it.
LAMBDA_METADATA = ("ExecutedVersion", "SdkHttpMetadata", "SdkResponseMetadata")


class DeliberateError(Exception):
    """What the ``boom`` function raises: a Task that fails on purpose."""


def echo(event: Any, context: Any) -> Any:
    return event


def boom(event: Any, context: Any) -> Any:
    raise DeliberateError("deliberate failure")


def count_keys(event: Any, context: Any) -> Any:
    """The keys of its input, not counting the Lambda service's response metadata that a
    previous Task's whole result carries on AWS (and on our side) but not on moto's stand-in:
    what it returns must not depend on that metadata, or every chain of two Tasks differs."""
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
        # Map items that are objects with the same keys, so that the paths an iteration's
        # Pass state reads resolve more often than on the numbers in "items".
        "records": [random_record(rng) for _ in range(rng.randint(0, 3))],
    }


def random_record(rng: random.Random) -> dict[str, Any]:
    return {
        "n": rng.randint(-3, 12),
        "name": rng.choice(["bike", "moto", "scone", ""]),
        "items": [rng.randint(0, 9) for _ in range(rng.randint(0, 2))],
        "nested": {"k": rng.choice(["a", "b"]), "v": rng.randint(0, 5)},
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
        ("contains.$", "States.ArrayContains($.items, 3)"),
        ("range.$", "States.ArrayRange(1, 9, 3)"),
        ("unique.$", "States.ArrayUnique($.items)"),
        ("parts.$", "States.ArrayPartition($.items, 2)"),
        ("split.$", "States.StringSplit('a,b,,c', ',')"),
        ("b64.$", "States.Base64Encode($.name)"),
        ("hash.$", "States.Hash($.name, 'SHA-1')"),
        ("parsed.$", "States.StringToJson('{\"a\": [1, 2.5, null]}')"),
        ("item.$", "States.ArrayGetItem($.items, 0)"),
        ("xadd.$", "States.MathAdd($.x, 1)"),
        ("xfmt.$", "States.Format('x={}', $.x)"),
        ("xjson.$", "States.JsonToString($.x)"),
        ("flt.$", "States.StringToJson('1.0')"),
    ]
    picked = rng.sample(choices, rng.randint(1, 4))
    return {key: value for key, value in picked}


def random_condition(rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(11)
    if kind == 8:
        return {"Variable": "$.x", rng.choice(["IsNumeric", "IsString", "IsNull"]): True}
    if kind == 9:
        return {"Variable": "$.name", "StringLessThanEquals": rng.choice(["bike", "n", ""])}
    if kind == 10:
        return {"Variable": "$.x", "NumericEquals": rng.choice([1.5, 7, 42.0])}
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
    if rng.random() < 0.1:
        state["OutputPath"] = rng.choice(["$", "$.nested"])
    return state


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
    if rng.random() < 0.5:
        return {"Type": "Wait", "Seconds": rng.randint(0, 3)}
    return {"Type": "Wait", "SecondsPath": rng.choice(["$.n", "$.x", "$.name", "$.missing"])}


def map_state(rng: random.Random) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Map",
        "ItemsPath": rng.choice(["$.items", "$.records", "$.records"]),
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": "Inner",
            "States": {"Inner": {**pass_state(rng), "End": True}},
        },
        "ResultPath": rng.choice(["$.mapped", "$"]),
    }
    if rng.random() < 0.5:
        state["ItemSelector"] = {"item.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"}
    if rng.random() < 0.3:
        state["MaxConcurrency"] = rng.randint(0, 2)
    if rng.random() < 0.2:
        state["ToleratedFailureCount"] = rng.randint(0, 1)
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
        state["ResultSelector"] = {"first.$": "$[0]", "all.$": "$"}
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
            state["Catch"] = [
                {
                    # States.ALL only alone (and last): the spec requires it
                    "ErrorEquals": rng.choice(
                        [
                            ["States.ALL"],
                            ["States.ALL"],
                            ["DeliberateError"],
                            ["States.TaskFailed"],
                            ["Other", "DeliberateError"],
                        ]
                    ),
                    "ResultPath": rng.choice(["$.error", "$", None]),
                    "Next": rng.choice(["Done", "Failed"]),
                }
            ]
        states[name] = state
    states["Done"] = {"Type": "Succeed"}
    states["Failed"] = {"Type": "Fail", "Error": "Generated", "Cause": "a generated Fail state"}
    if rng.random() < 0.3:
        states["Failed"] = {"Type": "Fail", "ErrorPath": "$.nested.k", "CausePath": "$.name"}
    definition = with_unique_names({"StartAt": names[0], "States": states})
    return without_unreachable(definition), random_input(rng)


def with_unique_names(definition: dict[str, Any]) -> dict[str, Any]:
    """The states of nested machines renamed after the state that holds them (S1 -> S1.Inner,
    S2 -> S2.B0, S2.B1): the language requires state names to be unique within the whole
    state machine (ASL spec, "States"; AWS refuses with DUPLICATE_STATE_NAME), and two Maps
    or two Parallel branches built alike would otherwise share names."""
    definition = copy.deepcopy(definition)
    for name, state in definition["States"].items():
        nested = [state["ItemProcessor"]] if "ItemProcessor" in state else []
        nested += state.get("Branches", [])
        for index, machine in enumerate(nested):
            prefix = f"{name}.B{index}" if "Branches" in state else name
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
    # One per event: a state's output for a *StateExited event, else None. Used to find
    # where the two runs part, not compared on its own.
    exit_outputs: tuple[Any, ...] = field(default=(), compare=False)


def exit_outputs(history: list[dict[str, Any]]) -> tuple[Any, ...]:
    outputs = []
    for event in history:
        details = event.get("stateExitedEventDetails")
        text = details.get("output") if isinstance(details, dict) else None
        outputs.append(json.loads(text) if isinstance(text, str) else None)
    return tuple(outputs)


def resources() -> Resources:
    registry = Resources()
    for name, function in FUNCTIONS.items():
        registry = registry.register_lambda(name, function)
    return registry


def run_ours(definition: dict[str, Any], input: Any) -> Outcome:
    execution = execute(load(definition), input, resources(), clock=FakeClock())
    return Outcome(
        execution.status,
        execution.error,
        execution.output,
        tuple(execution.event_types),
        exit_outputs(execution.history),
    )


def launch_map_worker_inline(component: Any, env: Any, eval_input: Any, job_pool: Any) -> Any:
    """moto's Map launches one worker thread per concurrent slot, each taking items from a
    shared pool; run the worker on the calling thread instead: the first one takes every
    item, in order, and stops at the first failure; the others find the pool empty."""
    worker = component._create_worker(env=env, eval_input=eval_input, job_pool=job_pool)
    worker.eval()
    return worker


def start_branch_inline(worker: Any) -> None:
    """moto's Parallel starts one thread per branch; run the branch on the calling thread
    instead, and none after a branch has failed (the pool has then stopped waiting)."""
    import threading

    if worker._worker_thread is not None:
        raise RuntimeError("a BranchWorker runs once")
    worker._worker_thread = threading.current_thread()  # its log lines name the thread
    if worker._branch_worker_comm._termination_event.is_set():
        return
    worker._thread_routine()


@contextmanager
def sequential_scones() -> Iterator[None]:
    """scones.asl's Parallel branches and Map iterations one at a time, in order.

    Under concurrency the order of the iterations' events, and which iterations are aborted
    when one fails, depend on thread timing on both sides (and on AWS); run one at a time,
    both sides are deterministic and comparable event by event. What this gives up: the
    event order of concurrent iterations is not compared (the conformance recordings cover it).
    """
    from scones.asl import handlers

    original = handlers.run_concurrently

    def one_at_a_time(
        run: Any, track: Any, state: Any, jobs: Any, concurrency: int, tolerance: Any = None
    ) -> list[Any]:
        return original(run, track, state, jobs, 1, tolerance)

    handlers.run_concurrently = one_at_a_time
    try:
        yield
    finally:
        handlers.run_concurrently = original


_NAME_COUNTER = itertools.count()


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
        # moto's backend is one per process: names unique across interpreters, or a second
        # interpreter's first machine would be taken for an earlier one of the same name
        self._names = (f"d{next(_NAME_COUNTER)}" for _ in iter(int, 1))
        self._machine: Any = None
        self._machine_text = ""

    @contextmanager
    def patched(self, *, sequential: bool = False) -> Iterator[MotoInterpreter]:
        """moto's interpreter with Lambda, waits and retry sleeps replaced; with
        ``sequential``, Parallel branches and Map iterations also run one at a time on the
        calling thread, in order (see :func:`sequential_scones`)."""
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
            inline_iteration_component,
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
        from moto.stepfunctions.parser.backend import execution_worker

        def invoke(parameters: dict, region: str, state_credentials: Any) -> dict[str, Any]:
            function = self.functions[function_name(str(parameters["FunctionName"]))]
            payload = json.loads(parameters.get("Payload") or "null")
            try:
                # AWS's order of the keys (less its response metadata, see LAMBDA_METADATA)
                return {"Payload": function(payload, None), "StatusCode": 200}
            except Exception as exc:  # an unhandled Lambda error, as AWS reports it
                body = {"errorMessage": str(exc), "errorType": type(exc).__name__}
                return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": body}

        class NoSleep:
            time = staticmethod(time.time)

            @staticmethod
            def sleep(seconds: float) -> None:
                return None

        patches: list[tuple[Any, str, Any]] = [
            (lambda_eval_utils, "_invoke_lambda_function", invoke),
            # as moto's own synchronous executions run: on the calling thread
            (execution_worker.ExecutionWorker, "start", lambda worker: worker._execution_logic()),
            # moto calls it with keywords: _wait_interval(env=..., wait_seconds=...)
            (wait_function.WaitFunction, "_wait_interval", lambda self, env, wait_seconds: None),
            (retrier_decl, "time", NoSleep),
        ]
        if sequential:
            patches += [
                (
                    inline_iteration_component.InlineIterationComponent,
                    "_launch_worker",
                    launch_map_worker_inline,
                ),
                (branch_worker.BranchWorker, "start", start_branch_inline),
            ]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
        for owner, name, value in patches:
            setattr(owner, name, value)
        try:
            yield self
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)
            if self._machine is not None:
                self.backend.delete_state_machine(self._machine.arn)
                self._machine, self._machine_text = None, ""

    def machine_for(self, definition: dict[str, Any]) -> Any:
        """moto's state machine for ``definition``: created once while the same definition
        runs again (a throughput run), replaced when it changes (a fuzzing run)."""
        # Not sort_keys: the order of a payload template's keys is the order of the object
        # it builds, which States.JsonToString and the output show.
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
            exit_outputs(events),
        )


# --- comparing, classifying, shrinking -----------------------------------------------------


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
    if isinstance(value, str) and value[:1] in "{[" and any(k in value for k in LAMBDA_METADATA):
        # A whole Lambda result serialised into a string (States.JsonToString): compared
        # without the metadata too, in the compact form JsonToString writes.
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return json.dumps(without_lambda_metadata(parsed), separators=(",", ":"))
    if isinstance(value, dict):
        return {
            key: without_lambda_metadata(item)
            for key, item in value.items()
            if key not in LAMBDA_METADATA
        }
    if isinstance(value, list):
        return [without_lambda_metadata(item) for item in value]
    return value


def parting(ours: Outcome, moto: Outcome) -> tuple[str, str]:
    """Where the two runs part: the type of the state being run (the last state entered
    before that point; "start" before any) and how they part there: "X/Y" for the first
    events that differ (ours/moto; "end" when a history has ended; an ExecutionFailed with
    its error name), "output" for the first state whose output differs, "" when the
    histories agree to the end."""

    def named(outcome: Outcome, index: int) -> str:
        if index >= len(outcome.event_types):
            return "end"
        event = outcome.event_types[index]
        return f"{event}({outcome.error})" if event == "ExecutionFailed" else event

    site = "start"
    count = min(len(ours.event_types), len(moto.event_types))
    for index in range(count):
        ours_type, moto_type = ours.event_types[index], moto.event_types[index]
        if ours_type != moto_type:
            return site, f"{named(ours, index)}/{named(moto, index)}"
        if ours_type.endswith("StateEntered"):
            site = ours_type.removesuffix("StateEntered")
        ours_exit, moto_exit = (
            outcome.exit_outputs[index] if index < len(outcome.exit_outputs) else None
            for outcome in (ours, moto)
        )
        if without_lambda_metadata(ours_exit) != without_lambda_metadata(moto_exit):
            return ours_type.removesuffix("StateExited"), "output"
    if len(ours.event_types) != len(moto.event_types):
        return site, f"{named(ours, count)}/{named(moto, count)}"
    return site, ""


def difference(
    ours: Outcome, moto: Outcome, definition: dict[str, Any] | None = None
) -> str | None:
    """The signature of the disagreement, or None when both sides agree.

    One root cause should be one class, whatever follows from it (a status, an error or
    only the events), so a signature is where the two runs part (:func:`parting`): the
    first events that differ, ours/moto, with an ExecutionFailed's error name, at the type
    of the state being run; or the first state output that differs. No values, and no
    other states of the machine. Only when the histories agree to the end does it name the
    dimension (status, error, output). ``definition`` is not used (kept for callers)."""
    ours_output, moto_output = (
        without_lambda_metadata(ours.output),
        without_lambda_metadata(moto.output),
    )
    differs = (
        ours.status != moto.status
        or ours.error != moto.error
        or (ours.status == "SUCCEEDED" and ours_output != moto_output)
        or ours.event_types != moto.event_types
    )
    if not differs:
        return None
    site, how = parting(ours, moto)
    if how:
        return f"{how} at {site}"
    if ours.status != moto.status:
        return f"status {ours.status}/{moto.status} only"
    if ours.error != moto.error:
        return f"error {ours.error}/{moto.error} only"
    return "output only"


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


def nested_machines(machine: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``machine`` and every machine inside it (Map item processors, Parallel branches)."""
    yield machine
    for state in machine["States"].values():
        inner = [state["ItemProcessor"]] if "ItemProcessor" in state else []
        for nested in [*inner, *state.get("Branches", [])]:
            yield from nested_machines(nested)


def shrink_candidates(definition: dict[str, Any], input: Any) -> Iterator[tuple[dict, Any]]:
    """Smaller variants: a state dropped (its predecessors skip it to its Next, or a Choice's
    Default; the first state too), a field dropped or a Pass state's Parameters key dropped (in
    nested machines too), an input key dropped."""
    states = definition["States"]
    start = states.get(definition["StartAt"], {})
    if start.get("Next") or start.get("Default"):  # a Choice is replaced by its Default
        smaller = copy.deepcopy(definition)
        smaller["StartAt"] = start.get("Next") or start["Default"]
        yield without_unreachable(smaller), input
    for name, state in states.items():
        if name == definition["StartAt"]:
            continue
        target = state.get("Next") or state.get("Default")
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
    kept = ("Type", "Next", "End", "Resource", "Choices", "Default", "ItemProcessor", "Branches")
    for index, machine in enumerate(nested_machines(definition)):
        for name, state in machine["States"].items():
            parameters = state.get("Parameters") if state["Type"] == "Pass" else None
            for key in list(parameters or {}):
                smaller = copy.deepcopy(definition)
                target_state = list(nested_machines(smaller))[index]["States"][name]
                del target_state["Parameters"][key]
                yield smaller, input
            for key in list(state):
                if key in kept or (key == "Parameters" and state["Type"] == "Task"):
                    continue
                smaller = copy.deepcopy(definition)
                del list(nested_machines(smaller))[index]["States"][name][key]
                yield smaller, input
    if isinstance(input, dict):
        for key in list(input):
            yield definition, {k: v for k, v in input.items() if k != key}


def shrink(
    moto: MotoInterpreter, definition: dict[str, Any], input: Any, signature: str
) -> tuple[dict[str, Any], Any]:
    """The smallest variant (greedy, to a fixed point) that shows the same signature."""
    improved = True
    while improved:
        improved = False
        for candidate, candidate_input in shrink_candidates(definition, input):
            if (candidate, candidate_input) == (definition, input):
                continue  # dropping "Done" puts it back: not smaller, and never a fixed point
            try:
                load(candidate)
            except (SconesError, DefinitionError):
                continue
            if signature_of(moto, candidate, candidate_input)[0] == signature:
                definition, input, improved = candidate, candidate_input, True
                break
    return definition, input


# --- the run -------------------------------------------------------------------------------


@dataclass
class Report:
    seed: int
    executions: int = 0
    seconds: float = 0.0
    classes: Counter[str] = field(default_factory=Counter)
    minimal: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def unexplained(self) -> dict[str, int]:
        return {sig: n for sig, n in self.classes.items() if sig not in TRIAGE}

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "executions": self.executions,
            "seconds": round(self.seconds, 1),
            "disagreements": sum(self.classes.values()),
            "classes": [
                {
                    "signature": sig,
                    "count": n,
                    "triage": TRIAGE.get(sig, ("unexplained", ""))[0],
                    "reason": TRIAGE.get(sig, ("", ""))[1],
                    "minimal": self.minimal.get(sig),
                }
                for sig, n in self.classes.most_common()
            ],
            "unexplained": sum(self.unexplained.values()),
        }


def run(seed: int, count: int, *, shrink_cases: bool = True) -> Report:
    rng = random.Random(seed)
    report = Report(seed)
    started = time.perf_counter()
    with sequential_scones(), MotoInterpreter().patched(sequential=True) as moto:
        for _ in range(count):
            definition, input = random_case(rng)
            signature, _, _ = signature_of(moto, definition, input)
            report.executions += 1
            if signature is None:
                continue
            report.classes[signature] += 1
            if signature not in report.minimal:
                if shrink_cases:
                    definition, input = shrink(moto, definition, input, signature)
                report.minimal[signature] = {"definition": definition, "input": input}
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed")
    parser.add_argument("--count", type=int, default=1000, help="cases to generate and run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="write each class's minimal case here")
    parser.add_argument("--no-shrink", action="store_true", help="keep the first case as is")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    try:
        report = run(args.seed, args.count, shrink_cases=not args.no_shrink)
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
        for entry in summary["classes"]:
            print(f"  {entry['count']:6d}  {entry['triage']:12s} {entry['signature']}")
    return 1 if report.unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
