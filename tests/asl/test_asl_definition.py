"""load() validates a definition before anything runs, listing every problem with its location."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scones.asl import DefinitionError, MissingResourceError, Resources, execute, load


def _problems(definition: Any) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load(definition)
    return info.value.problems


def _one(states: dict[str, Any], start: str = "A") -> dict[str, Any]:
    return {"StartAt": start, "States": states}


def test_valid_definition_loads_from_dict_and_json_text() -> None:
    d = _one({"A": {"Type": "Pass", "End": True}})
    assert load(d).definition == d
    assert load(json.dumps(d)).definition == d


def test_invalid_json_text() -> None:
    problems = _problems("{not json")
    assert "not valid JSON" in problems[0]


def test_unknown_state_type() -> None:
    problems = _problems(_one({"A": {"Type": "Bogus", "End": True}}))
    assert problems == ['/States/A/Type: unknown state type "Bogus"']


def test_unknown_field() -> None:
    problems = _problems(_one({"A": {"Type": "Pass", "End": True, "Colour": "red"}}))
    assert problems == ["/States/A/Colour: unknown field 'Colour' for a Pass state"]


def test_unknown_top_level_field() -> None:
    problems = _problems(
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}, "Extra": 1}
    )
    assert problems == ["/Extra: unknown field 'Extra'"]


def test_missing_start_at() -> None:
    problems = _problems({"States": {"A": {"Type": "Pass", "End": True}}})
    assert "/StartAt: missing required field StartAt" in problems


def test_start_at_names_missing_state() -> None:
    problems = _problems(_one({"A": {"Type": "Pass", "End": True}}, start="Nope"))
    assert "/StartAt: state 'Nope' does not exist" in problems


def test_next_to_nonexistent_state() -> None:
    problems = _problems(_one({"A": {"Type": "Pass", "Next": "Ghost"}}))
    assert problems == ["/States/A/Next: state 'Ghost' does not exist"]


def test_unreachable_state() -> None:
    problems = _problems(_one({"A": {"Type": "Pass", "End": True}, "Orphan": {"Type": "Succeed"}}))
    assert problems == ["/States/Orphan: state 'Orphan' is not reachable from StartAt"]


def test_state_with_neither_next_nor_end() -> None:
    problems = _problems(_one({"A": {"Type": "Pass"}}))
    assert problems == ["/States/A: state has neither Next nor End"]


def test_state_with_both_next_and_end() -> None:
    problems = _problems(
        _one({"A": {"Type": "Pass", "Next": "B", "End": True}, "B": {"Type": "Succeed"}})
    )
    assert "/States/A: a state cannot have both Next and End" in problems


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("InputPath", "no-dollar"),
        ("OutputPath", "$.a["),
        ("ResultPath", "$.a[*]"),
        ("ResultPath", 5),
    ],
)
def test_malformed_paths(field: str, value: Any) -> None:
    problems = _problems(_one({"A": {"Type": "Pass", "End": True, field: value}}))
    assert len(problems) == 1
    assert problems[0].startswith(f"/States/A/{field}: ")


def test_malformed_parameter_path_and_intrinsic() -> None:
    problems = _problems(
        _one(
            {
                "A": {
                    "Type": "Pass",
                    "End": True,
                    "Parameters": {
                        "a.$": "nope",
                        "b.$": "States.Nope($.x)",
                        "c": {"d.$": "States.Format('{}'"},
                    },
                }
            }
        )
    )
    assert [p.split(":")[0] for p in problems] == [
        "/States/A/Parameters/a.$",
        "/States/A/Parameters/b.$",
        "/States/A/Parameters/c/d.$",
    ]


def test_retry_shape_errors() -> None:
    task = {
        "Type": "Task",
        "Resource": "arn:aws:lambda:us-east-1:1:function:f",
        "End": True,
        "Retry": [
            {"ErrorEquals": []},
            {
                "ErrorEquals": ["X"],
                "MaxAttempts": -1,
                "BackoffRate": 0.5,
                "IntervalSeconds": 0,
                "JitterStrategy": "SOME",
                "Bogus": 1,
            },
            {"ErrorEquals": ["States.ALL"]},
            {"ErrorEquals": ["Y"]},
        ],
    }
    problems = _problems(_one({"A": task}))
    assert problems == [
        "/States/A/Retry/0/ErrorEquals: must be a non-empty array of error names, got []",
        "/States/A/Retry/1/Bogus: unknown field 'Bogus' in a retrier",
        "/States/A/Retry/1/IntervalSeconds: must be a positive integer, got 0",
        "/States/A/Retry/1/MaxAttempts: must be a non-negative integer, got -1",
        "/States/A/Retry/1/BackoffRate: must be a number >= 1.0, got 0.5",
        '/States/A/Retry/1/JitterStrategy: must be "FULL" or "NONE", got "SOME"',
        "/States/A/Retry/2/ErrorEquals: a States.ALL retrier must be the last one",
    ]


def test_retry_not_an_array() -> None:
    task = {
        "Type": "Task",
        "Resource": "arn:aws:lambda:us-east-1:1:function:f",
        "End": True,
        "Retry": {},
    }
    assert _problems(_one({"A": task})) == ["/States/A/Retry: must be an array of retriers, got {}"]


def test_catch_shape_errors() -> None:
    task = {
        "Type": "Task",
        "Resource": "arn:aws:lambda:us-east-1:1:function:f",
        "End": True,
        "Catch": [
            {"ErrorEquals": ["X"]},
            {"ErrorEquals": ["Y"], "Next": "Missing", "ResultPath": "bad"},
            {"ErrorEquals": "States.ALL", "Next": "A"},
        ],
    }
    problems = _problems(_one({"A": task}))
    assert problems == [
        "/States/A/Catch/0/Next: missing required field Next",
        "/States/A/Catch/1/Next: state 'Missing' does not exist",
        "/States/A/Catch/1/ResultPath: invalid path 'bad': path 'bad' must start with '$'",
        '/States/A/Catch/2/ErrorEquals: must be a non-empty array of error names, got "States.ALL"',
    ]


def test_every_problem_is_reported_at_once() -> None:
    d = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Next": "B", "Colour": 1},
            "B": {"Type": "Wait", "End": True},
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "NumericEquals": "one", "Next": "Z"}],
            },
        },
    }
    problems = _problems(d)
    assert problems == [
        "/States/A/Colour: unknown field 'Colour' for a Pass state",
        "/States/B: a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, "
        "TimestampPath; got none",
        "/States/C/Choices/0/Next: state 'Z' does not exist",
        '/States/C/Choices/0/NumericEquals: "one" is not a valid numeric value',
        "/States/C: state 'C' is not reachable from StartAt",
    ]
    assert "5 problems" in str(DefinitionError(problems))


def test_nested_branch_locations() -> None:
    d = _one(
        {
            "P": {
                "Type": "Parallel",
                "End": True,
                "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass"}}}],
            }
        },
        start="P",
    )
    assert _problems(d) == ["/States/P/Branches/0/States/X: state has neither Next nor End"]


def test_map_processor_validated() -> None:
    d = _one(
        {
            "M": {
                "Type": "Map",
                "End": True,
                "ItemProcessor": {"StartAt": "X", "States": {"X": {"Type": "Task", "End": True}}},
            }
        },
        start="M",
    )
    assert _problems(d) == [
        "/States/M/ItemProcessor/States/X/Resource: missing or not a string: null"
    ]


def test_missing_resource_handler_refused_at_load_and_execute() -> None:
    d = _one(
        {
            "A": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:1:function:known:$LATEST"},
                "Next": "B",
            },
            "B": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:1:function:unknownFn",
                "Next": "C",
            },
            "C": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": True},
        }
    )
    resources = Resources().register_lambda("known", lambda e, c: e)
    with pytest.raises(MissingResourceError) as info:
        load(d, resources)
    assert info.value.problems == [
        "/States/B/Resource: no handler registered for resource "
        "'arn:aws:lambda:us-east-1:1:function:unknownFn'",
        "/States/C/Resource: no handler registered for resource 'arn:aws:states:::sqs:sendMessage'",
    ]
    machine = load(d)  # without resources, loading only validates
    with pytest.raises(MissingResourceError):
        execute(machine, {}, resources)


def test_missing_lambda_function_name_refused() -> None:
    d = _one(
        {
            "A": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "ghost"},
                "End": True,
            }
        }
    )
    with pytest.raises(MissingResourceError) as info:
        load(d, Resources())
    assert "FunctionName 'ghost'" in info.value.problems[0]


def test_a_state_name_is_unique_in_the_whole_machine() -> None:
    # Found by the differential fuzzer (both sides ran it); the ASL spec ("States"): "state
    # names MUST be unique within the scope of the whole state machine", and AWS's validator
    # refuses it (DUPLICATE_STATE_NAME: "The same state name appears more than once").
    branch = {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}}
    item_processor = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    definition = _one(
        {
            "A": {"Type": "Parallel", "Branches": [branch, branch], "Next": "M"},
            "M": {"Type": "Map", "ItemProcessor": item_processor, "End": True},
        }
    )
    assert _problems(definition) == [
        "/States/A/Branches/1/States/B: duplicate state name 'B' (also "
        "/States/A/Branches/0/States/B)",
        "/States/M/ItemProcessor/States/A: duplicate state name 'A' (also /States/A)",
    ]
