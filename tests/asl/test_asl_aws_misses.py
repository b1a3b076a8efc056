"""Regression tests for the misses issue 17 names (seen on AWS-recorded executions).

A variable in a Map state's MaxConcurrencyPath, escape sequences in JSONPath string
literals, the causes of a Wait state's invalid SecondsPath (one table, several forms).
"""

from __future__ import annotations

from typing import Any

import pytest

from scones.asl import FakeClock, execute
from scones.asl.causes import CAUSES, cause
from scones.asl.paths import JsonPath

_PREFIX = "An error occurred while executing the state '{state}' (entered at the event id #{id}). "


def _map_machine(concurrency_path: str) -> dict[str, Any]:
    return {
        "StartAt": "Init",
        "States": {
            "Init": {
                "Type": "Pass",
                "Assign": {"limit": 1, "negative": -1, "word": "many"},
                "Next": "Fan",
            },
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrencyPath": concurrency_path,
                "ItemProcessor": {
                    "StartAt": "Item",
                    "States": {"Item": {"Type": "Pass", "End": True}},
                },
                "End": True,
            },
        },
    }


# --- a variable in MaxConcurrencyPath ---


def test_max_concurrency_path_reads_a_variable() -> None:
    execution = execute(_map_machine("$limit"), {"items": [1, 2, 3]}, clock=FakeClock())
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output == [1, 2, 3]
    # A limit of one runs the iterations one after another: each starts after the last ends.
    iteration_events = [t for t in execution.event_types if t.startswith("MapIteration")]
    assert iteration_events == ["MapIterationStarted", "MapIterationSucceeded"] * 3


def test_max_concurrency_path_with_an_undefined_variable_fails_the_execution() -> None:
    execution = execute(_map_machine("$nowhere"), {"items": [1]}, clock=FakeClock())
    assert execution.status == "FAILED"
    assert execution.error == "States.Runtime"
    assert execution.cause == _PREFIX.format(state="Fan", id=4) + cause(
        "invalid_path", path="$nowhere", reason=CAUSES["undefined_variable"]
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$negative", "Expected non-negative integer for MaxConcurrency, got '-1' instead."),
        (
            "$word",
            'The MaxConcurrencyPath field refers to value "many" which is not a valid integer: '
            "$word",
        ),
    ],
)
def test_max_concurrency_path_variable_with_a_bad_value(path: str, expected: str) -> None:
    execution = execute(_map_machine(path), {"items": [1]}, clock=FakeClock())
    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")
    assert execution.cause == _PREFIX.format(state="Fan", id=4) + expected


# --- escape sequences in JSONPath string literals ---

_DOCUMENT = {
    "a'b": 1,
    "tab\there": 2,
    "A": 3,
    'q"r': 4,
    "back\\slash": 5,
    "x,y": 6,
    "items": [{"n": "it's"}, {"n": "line\nbreak"}, {"n": "A"}, {"n": "back\\slash"}],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$['a\\'b']", 1),
        ("$['tab\\there']", 2),
        ("$['\\u0041']", 3),
        ('$["q\\"r"]', 4),
        ("$['back\\\\slash']", 5),
        ("$['a\\'b','x,y']", [1, 6]),
        ("$.items[?(@.n == 'it\\'s')].n", ["it's"]),
        ("$.items[?(@.n == 'line\\nbreak')].n", ["line\nbreak"]),
        ("$.items[?(@.n == '\\u0041')].n", ["A"]),
        ("$.items[?(@.n == 'back\\\\slash')].n", ["back\\slash"]),
    ],
)
def test_escape_sequences_in_quoted_names_and_filter_strings(path: str, expected: Any) -> None:
    assert JsonPath(path).get(_DOCUMENT) == expected


def test_escaped_names_work_in_a_state_machine() -> None:
    definition = {
        "StartAt": "Pick",
        "States": {
            "Pick": {
                "Type": "Pass",
                "Parameters": {"tab.$": "$['tab\\there']", "quoted.$": "$['a\\'b']"},
                "End": True,
            }
        },
    }
    execution = execute(definition, {"tab\there": "t", "a'b": "q"}, clock=FakeClock())
    assert execution.output == {"tab": "t", "quoted": "q"}


# --- the causes of a Wait state's invalid SecondsPath ---


def _wait_machine() -> dict[str, Any]:
    return {
        "StartAt": "WaitState",
        "States": {
            "WaitState": {"Type": "Wait", "SecondsPath": "$.input.waitSeconds", "End": True}
        },
    }


@pytest.mark.parametrize(
    ("wait_input", "expected"),
    [
        ({}, "The SecondsPath parameter does not reference an input value: $.input.waitSeconds"),
        (
            {"waitSeconds": 1.5},
            "The SecondsPath parameter cannot be parsed as a long value: "
            "$.input.waitSeconds == 1.5",
        ),
        (
            {"waitSeconds": -1.5},
            "The SecondsPath parameter cannot be parsed as a long value: "
            "$.input.waitSeconds == -1.5",
        ),
        (
            {"waitSeconds": "ten"},
            "The SecondsPath parameter cannot be parsed as a long value: "
            "$.input.waitSeconds == ten",
        ),
        (
            {"waitSeconds": True},
            "The SecondsPath parameter cannot be parsed as a long value: "
            "$.input.waitSeconds == true",
        ),
        (
            {"waitSeconds": -1},
            "The SecondsPath parameter references a negative value: $.input.waitSeconds == -1",
        ),
    ],
)
def test_wait_seconds_path_causes(wait_input: dict[str, Any], expected: str) -> None:
    execution = execute(_wait_machine(), {"input": wait_input}, clock=FakeClock())
    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")
    assert execution.cause == _PREFIX.format(state="WaitState", id=2) + expected


def test_wait_seconds_path_forms_come_from_one_table() -> None:
    forms = {kind for kind in CAUSES if kind.startswith("seconds_path_")}
    assert forms == {"seconds_path_missing", "seconds_path_not_long", "seconds_path_negative"}
    assert cause("seconds_path_negative", path="$.s", value=-2) == (
        "The SecondsPath parameter references a negative value: $.s == -2"
    )
    assert cause("seconds_path_not_long", path="$.s", value={"a": 1}) == (
        'The SecondsPath parameter cannot be parsed as a long value: $.s == {"a":1}'
    )


def test_wait_seconds_path_zero_and_positive_integers_wait() -> None:
    clock = FakeClock()
    start = clock.now()
    execution = execute(_wait_machine(), {"input": {"waitSeconds": 7}}, clock=clock)
    assert execution.status == "SUCCEEDED"
    assert clock.now() - start == pytest.approx(7)
