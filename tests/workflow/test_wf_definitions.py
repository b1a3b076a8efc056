"""The state machine definitions: placeholders, shape, and that our runtime accepts them."""

from __future__ import annotations

import json

import pytest

from scones.asl import load
from scones.workflow.definitions import (
    DefinitionNotFoundError,
    PlaceholderError,
    definition_text,
    fill_placeholders,
    load_definition,
    local_function_arns,
    placeholders_in,
)
from scones.workflow.local import local_resources

LAMBDA_TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def _tasks(states: dict) -> dict:
    return {name: state for name, state in states.items() if state["Type"] == "Task"}


def test_single_definition_has_the_seed_shape() -> None:
    definition = json.loads(definition_text("single"))
    tasks = _tasks(definition["States"])
    assert list(tasks) == ["SerializeImageData", "ClassifyImage", "FilterInferences"]
    for state in tasks.values():
        assert state["Resource"] == "arn:aws:states:::lambda:invoke"
        assert state["Parameters"]["Payload.$"] == "$"
        assert state["OutputPath"] == "$.Payload.body"
        retried = {name for retry in state["Retry"] for name in retry["ErrorEquals"]}
        assert retried >= LAMBDA_TRANSIENT
        assert all(retry["BackoffRate"] > 1 for retry in state["Retry"])
    assert "EndpointTransientError" in {
        name for retry in tasks["ClassifyImage"]["Retry"] for name in retry["ErrorEquals"]
    }
    catch = tasks["FilterInferences"]["Catch"]
    assert catch[0]["ErrorEquals"] == ["ThresholdConfidenceNotMet"]
    fail = definition["States"]["LowConfidence"]
    assert fail["Type"] == "Fail" and fail["ErrorPath"] and fail["CausePath"]


def test_placeholders_are_the_three_function_arns() -> None:
    for name in ("single", "map"):
        assert placeholders_in(definition_text(name)) == {
            "SerializeImageDataFunctionArn",
            "ClassifyImageFunctionArn",
            "FilterInferencesFunctionArn",
        }


def test_deployment_arns_fill_the_placeholders() -> None:
    arns = {
        "SerializeImageDataFunctionArn": "arn:aws:lambda:eu-west-1:111122223333:function:ser",
        "ClassifyImageFunctionArn": "arn:aws:lambda:eu-west-1:111122223333:function:cls",
        "FilterInferencesFunctionArn": "arn:aws:lambda:eu-west-1:111122223333:function:flt",
    }
    definition = load_definition("single", arns)
    names = [s["Parameters"]["FunctionName"] for s in _tasks(definition["States"]).values()]
    assert names == list(arns.values())
    assert "${" not in json.dumps(definition)


def test_a_missing_placeholder_value_is_an_error_naming_it() -> None:
    with pytest.raises(PlaceholderError, match="ClassifyImageFunctionArn"):
        fill_placeholders(
            definition_text("single"),
            {"SerializeImageDataFunctionArn": "a", "FilterInferencesFunctionArn": "b"},
        )
    with pytest.raises(PlaceholderError, match="plain ARN"):
        fill_placeholders("${A}", {"A": 'x", "Type": "Pass'})


def test_unknown_definition_name_is_an_error() -> None:
    with pytest.raises(DefinitionNotFoundError, match="'parallel'"):
        definition_text("parallel")


@pytest.mark.parametrize("name", ["single", "map"])
def test_definitions_validate_on_the_runtime_with_every_resource_served(name: str) -> None:
    machine = load(load_definition(name), local_resources())
    assert machine.definition["StartAt"]
    assert all(arn.startswith("arn:aws:lambda:") for arn in local_function_arns().values())


def test_map_definition_catches_inside_each_iteration() -> None:
    definition = json.loads(definition_text("map"))
    state = definition["States"]["ClassifyEachImage"]
    assert state["Type"] == "Map" and state["ItemsPath"] == "$.keys"
    assert state["MaxConcurrency"] >= 1
    tasks = _tasks(state["ItemProcessor"]["States"])
    assert tasks  # the loop below has something to check
    for task in tasks.values():
        assert any("States.ALL" in catch["ErrorEquals"] for catch in task["Catch"])
