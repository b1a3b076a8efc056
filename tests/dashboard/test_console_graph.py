"""The path an execution took (from its history) and the graph Graphviz draws of it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from scones.asl import FakeClock, Resources, execute
from scones.dashboard.graph import GraphvizError, definition_dot, render
from scones.dashboard.trace import trace_execution

SVG = "{http://www.w3.org/2000/svg}"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"


class Boom(Exception):
    pass


class Bad(Exception):
    pass


def resources() -> Resources:
    calls = {"flaky": 0}

    def flaky(event, context):
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise Boom("transient")
        return {"ok": True}

    def fail(event, context):
        raise Bad("nope")

    return Resources().register_lambda("flaky", flaky).register_lambda("fail", fail)


# Parallel (a retried Task; Wait then Pass), Map (a caught Task), Choice, Succeed and Fail.
DEFINITION = {
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Flaky",
                    "States": {
                        "Flaky": {
                            "Type": "Task",
                            "Resource": ARN + "flaky",
                            "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 1}],
                            "End": True,
                        }
                    },
                },
                {
                    "StartAt": "Pause",
                    "States": {
                        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Settle"},
                        "Settle": {"Type": "Pass", "End": True},
                    },
                },
            ],
            "ResultPath": "$.fan",
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "StartAt": "Same",  # names are unique in a whole machine (ASL spec)
                "States": {
                    "Same": {
                        "Type": "Task",
                        "Resource": ARN + "fail",
                        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}],
                        "End": True,
                    },
                    "Recover": {"Type": "Pass", "End": True},
                },
            },
            "ResultPath": "$.each",
            "Next": "Decide",
        },
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.stop", "BooleanEquals": True, "Next": "Stop"}],
            "Default": "Done",
        },
        "Done": {"Type": "Succeed"},
        "Stop": {"Type": "Fail", "Error": "Stopped", "Cause": "asked to stop"},
    },
}


def run(stop: bool):
    return execute(DEFINITION, {"items": [1, 2, 3], "stop": stop}, resources(), clock=FakeClock())


def test_each_state_gets_the_status_the_console_shows() -> None:
    execution = run(stop=True)
    assert execution.status == "FAILED"
    trace = trace_execution(execution.history, execution.status, DEFINITION)
    statuses = {path: state.status for path, state in trace.states.items()}
    assert statuses == {
        "Fan": "succeeded",
        "Fan/0/Flaky": "succeeded",
        "Fan/1/Pause": "succeeded",
        "Fan/1/Settle": "succeeded",
        "Each": "succeeded",
        "Each/0/Same": "caught",
        "Each/0/Recover": "succeeded",
        "Decide": "succeeded",
        "Stop": "failed",
    }
    assert trace.status_of("Done") == "not_reached"
    assert trace.states["Fan/0/Flaky"].retries == 2
    assert trace.states["Each/0/Same"].entered == 3
    assert trace.states["Each/0/Same"].runs[0].error == "Bad"
    assert ("Each/0/Same", "Each/0/Recover", "catch") in trace.transitions
    assert ("Decide", "Stop", "next") in trace.transitions
    assert ("Decide", "Done", "next") not in trace.transitions


def graph_nodes(svg: bytes) -> dict[str, tuple[str, str]]:
    """SVG node id -> (its text, its class) for the state nodes."""
    root = ET.fromstring(svg)
    nodes = {}
    for group in root.iter(SVG + "g"):
        classes = (group.get("class") or "").split()
        if "state" in classes:
            text = " ".join(t.text or "" for t in group.iter(SVG + "text"))
            nodes[group.get("id")] = (text, " ".join(classes))
    return nodes


def test_the_graph_draws_every_state_coloured_and_the_edges_by_kind() -> None:
    execution = run(stop=False)
    trace = trace_execution(execution.history, execution.status, DEFINITION)
    dot, ids = definition_dot(DEFINITION, trace)
    svg = render(dot, "svg")
    nodes = graph_nodes(svg)
    assert sorted(ids.values()) == sorted(
        [
            "Fan",
            "Fan/0/Flaky",
            "Fan/1/Pause",
            "Fan/1/Settle",
            "Each",
            "Each/0/Same",
            "Each/0/Recover",
            "Decide",
            "Done",
            "Stop",
        ]
    )
    by_path = {ids[node]: value for node, value in nodes.items()}
    assert "succeeded" in by_path["Done"][1] and "not-reached" in by_path["Stop"][1]
    assert "caught" in by_path["Each/0/Same"][1]
    assert "2 retries" in by_path["Fan/0/Flaky"][0]
    assert "3 runs" in by_path["Each/0/Same"][0]
    root = ET.fromstring(svg)
    edges = [
        (g.get("class") or "") for g in root.iter(SVG + "g") if "edge" in (g.get("class") or "")
    ]
    assert any("catch taken" in e for e in edges)
    assert any("retry taken" in e for e in edges)
    assert sum("cluster" in (g.get("class") or "") for g in root.iter(SVG + "g")) >= 3
    assert render(dot, "png")[:4] == b"\x89PNG"


def test_names_are_escaped_for_dot_and_for_svg() -> None:
    name = 'a "quoted" \\N <script>alert(1)</script> & more'
    definition = {"StartAt": name, "States": {name: {"Type": "Pass", "End": True}}}
    svg = render(definition_dot(definition)[0], "svg")
    [(text, _classes)] = graph_nodes(svg).values()
    assert text.startswith(name)
    assert b"<script>" not in svg


def test_a_missing_dot_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(GraphvizError, match="Graphviz `dot` is not installed"):
        render("digraph {}", "svg")


def test_an_unknown_format_is_refused_by_name() -> None:
    with pytest.raises(GraphvizError, match="'gif'"):
        render("digraph {}", "gif")
