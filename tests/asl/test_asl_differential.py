"""The differential fuzzer's own parts: its generator, its comparison and both sides."""

from __future__ import annotations

import random

import pytest

from scones.asl import load
from scones.asl.differential import (
    MotoInterpreter,
    Outcome,
    difference,
    nested_machines,
    random_case,
    run,
    run_ours,
    shrink,
    without_lambda_metadata,
    without_unreachable,
)


def test_every_generated_definition_is_valid_and_runs_on_scones_asl() -> None:
    rng = random.Random(0)
    for _ in range(200):
        definition, input = random_case(rng)
        load(definition)  # raises on an invalid definition
        assert run_ours(definition, input).status in ("SUCCEEDED", "FAILED")


def test_unreachable_states_are_dropped() -> None:
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Pass", "End": True}},
    }
    assert list(without_unreachable(definition)["States"]) == ["A"]


def test_difference_names_the_dimension_and_where_the_runs_part() -> None:
    machine = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    events = ("ExecutionStarted", "PassStateEntered", "PassStateExited", "ExecutionSucceeded")
    ok = Outcome("SUCCEEDED", None, {"a": 1}, events, (None, None, {"a": 1}, None))
    assert difference(ok, ok, machine) is None
    other_output = Outcome("SUCCEEDED", None, {"a": 2}, events, (None, None, {"a": 2}, None))
    assert difference(ok, other_output, machine) == "output at Pass"
    failed = Outcome(
        "FAILED", "X", None, ("ExecutionStarted", "PassStateEntered", "ExecutionFailed")
    )
    assert difference(ok, failed, machine) == "PassStateExited/ExecutionFailed(X) at Pass"
    # no values, no other state types: the same cause in a bigger machine is the same class
    assert difference(failed, ok, {}) == "ExecutionFailed(X)/PassStateExited at Pass"
    # the same histories, another output: only then the dimension
    same_events = Outcome("SUCCEEDED", None, {"a": 3}, events, ok.exit_outputs)
    assert difference(ok, same_events, machine) == "output only"


def test_both_sides_agree_on_a_pass_chain_and_shrinking_keeps_the_signature() -> None:
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Result": {"r": 1}, "ResultPath": "$.r", "Next": "B"},
            "B": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "End": True},
        },
    }
    with MotoInterpreter().patched() as moto:
        ours, theirs = run_ours(definition, {"n": 3}), moto.run(definition, {"n": 3})
        assert (
            (ours.status, ours.output)
            == (theirs.status, theirs.output)
            == (
                "SUCCEEDED",
                {"n": 3},
            )
        )
        assert ours.event_types == theirs.event_types
        # The shrinker only accepts smaller cases that show the same signature: one that
        # never shows leaves the case as it was.
        planted = {
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.one", "Next": "F"},
                "F": {"Type": "Fail", "Error": "E"},
            },
        }
        signature = "status FAILED/FAILED"  # never matched: nothing to shrink towards
        smaller, _ = shrink(moto, planted, {"n": 1}, signature)
        assert smaller == planted


def test_a_seed_gives_the_same_report_every_time() -> None:
    # Map iterations and Parallel branches run one at a time on both sides: no thread timing.
    first, second = run(0, 60, shrink_cases=False), run(0, 60, shrink_cases=False)
    assert first.classes == second.classes
    assert first.executions == 60


def test_moto_waits_are_skipped_not_failed() -> None:
    # moto calls its wait with keywords; a patch with other parameter names failed every Wait
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3, "End": True}}}
    with MotoInterpreter().patched() as moto:
        outcome = moto.run(definition, {"a": 1})
    assert (outcome.status, outcome.output) == ("SUCCEEDED", {"a": 1})


def test_moto_gets_the_definition_with_its_keys_in_order() -> None:
    definition = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Pass",
                "Parameters": {"b": 1, "a": 2},
                "ResultPath": "$.o",
                "Next": "J",
            },
            "J": {"Type": "Pass", "Parameters": {"s.$": "States.JsonToString($.o)"}, "End": True},
        },
    }
    with MotoInterpreter().patched() as moto:
        theirs = moto.run(definition, {})
    assert theirs.output == run_ours(definition, {}).output == {"s": '{"b":1,"a":2}'}


def test_generated_state_names_are_unique_in_the_whole_machine() -> None:
    rng = random.Random(0)
    for _ in range(200):
        definition, _ = random_case(rng)
        names = [name for machine in nested_machines(definition) for name in machine["States"]]
        assert len(names) == len(set(names)), definition


def test_a_short_run_has_no_unexplained_class() -> None:
    # Every class the generator shows is fixed or triaged (TRIAGE, docs/asl-conformance.md).
    report = run(0, 100, shrink_cases=False)
    assert report.unexplained == {}, report.unexplained


def test_lambda_metadata_is_left_out_of_json_strings_too() -> None:
    ours = (
        '{"out":{"ExecutedVersion":"$LATEST","Payload":{},'
        '"SdkResponseMetadata":{},"StatusCode":200}}'
    )
    assert without_lambda_metadata(ours) == '{"out":{"Payload":{},"StatusCode":200}}'
    assert without_lambda_metadata('{"a": 1}') == '{"a": 1}'  # no metadata: as it was


def _map(items_path: str, inner: dict, **fields: object) -> dict:
    processor = {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "I", "States": {"I": inner}}
    return {"Type": "Map", "ItemsPath": items_path, "ItemProcessor": processor, **fields}


CATCH_ALL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Done"}]
DONE = {"Type": "Succeed"}


@pytest.mark.parametrize(
    ("states", "input", "events"),
    [
        pytest.param(  # ExecutionFailed(States.Runtime)/MapStateFailed at Map
            {"M": _map("$.items", {"Type": "Pass", "End": True}, Catch=CATCH_ALL, End=True)},
            {},
            ["ExecutionStarted", "MapStateEntered", "ExecutionFailed"],
            id="items-path-not-found",
        ),
        pytest.param(  # ExecutionFailed(States.Runtime)/MapStateFailed at Pass
            {
                "M": _map(
                    "$.items",
                    {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "End": True},
                    Catch=CATCH_ALL,
                    End=True,
                )
            },
            {"items": [7]},
            [
                "ExecutionStarted",
                "MapStateEntered",
                "MapStateStarted",
                "MapIterationStarted",
                "PassStateEntered",
                "MapIterationFailed",
                "ExecutionFailed",
            ],
            id="path-not-found-in-an-item",
        ),
        pytest.param(  # ExecutionFailed(States.Runtime)/ChoiceStateExited at Choice
            {
                "M": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.x", "NumericEquals": 7, "Next": "Done"}],
                    "Default": "Done",
                }
            },
            {},
            ["ExecutionStarted", "ChoiceStateEntered", "ExecutionFailed"],
            id="choice-variable-not-found",
        ),
        pytest.param(  # MapIterationFailed/PassStateExited at Pass
            {
                "M": _map(
                    "$.items",
                    {"Type": "Pass", "ResultPath": "$.nested.out", "End": True},
                    End=True,
                )
            },
            {"items": [9]},
            [
                "ExecutionStarted",
                "MapStateEntered",
                "MapStateStarted",
                "MapIterationStarted",
                "PassStateEntered",
                "MapIterationFailed",
                "ExecutionFailed",
            ],
            id="result-path-on-a-number",
        ),
    ],
)
def test_our_side_of_each_triaged_class(states: dict, input: dict, events: list) -> None:
    # The minimal cases of the triaged classes (moto wrong or unspecified): a States.Runtime
    # fails the execution at once, no Catch (docs/asl-conformance.md, "Triage").
    definition = {"StartAt": "M", "States": {**states, "Done": DONE}}
    ours = run_ours(without_unreachable(definition), input)
    assert (ours.status, ours.error, list(ours.event_types)) == (
        "FAILED",
        "States.Runtime",
        events,
    )
