"""Unit tests for the JSONPath, intrinsic-function and Choice-rule engines."""

from __future__ import annotations

from typing import Any

import pytest

from scones.asl import FakeClock, Resources, execute, load
from scones.asl.intrinsics import IntrinsicError, IntrinsicSyntaxError, evaluate, parse
from scones.asl.paths import JsonPath, PathNotFound, PathSyntaxError, set_path

DOC = {
    "store": {
        "book": [
            {"title": "A", "price": 8, "tags": ["x"]},
            {"title": "B", "price": 12},
            {"title": "C", "price": 5, "isbn": "1"},
        ],
        "name": "shop",
    },
    "a.b": 1,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DOC),
        ("$.store.name", "shop"),
        ("$['store']['name']", "shop"),
        ("$.store.book[1].title", "B"),
        ("$.store.book[-1].title", "C"),
        ("$['a.b']", 1),
        ("$.store.book[*].title", ["A", "B", "C"]),
        ("$.store.book[0:2].price", [8, 12]),
        ("$.store.book[::2].title", ["A", "C"]),
        ("$.store.book[0,2].title", ["A", "C"]),
        ("$.store.book[?(@.price < 10)].title", ["A", "C"]),
        ("$.store.book[?(@.isbn)].title", ["C"]),
        ("$.store.book[?(@.price > 6 && @.title != 'B')].title", ["A"]),
        ("$..price", [8, 12, 5]),
        ("$.store.book.length()", 3),
        ("$.missing[*]", []),
    ],
)
def test_jsonpath_get(path: str, expected: Any) -> None:
    assert JsonPath(path).get(DOC) == expected


def test_jsonpath_missing_messages() -> None:
    with pytest.raises(PathNotFound) as info:
        JsonPath("$.store.nope").get(DOC)
    assert info.value.message == "No results for path: $['store']['nope']"
    with pytest.raises(PathNotFound) as info:
        JsonPath("$.nope.deeper").get(DOC)
    assert info.value.message == "Missing property in path $['nope']"


@pytest.mark.parametrize("bad", ["store", "$.", "$[", "$.a[?(@.x ==)]", "$.a[1:2:0]"])
def test_jsonpath_syntax_errors(bad: str) -> None:
    with pytest.raises(PathSyntaxError):
        JsonPath(bad)


def test_roots() -> None:
    assert JsonPath("$$.Execution.Id").root == "$$"
    assert JsonPath("$myVar.field").root == "myVar"
    assert JsonPath("$.x").root == "$"


def test_set_path_copies_and_creates() -> None:
    data = {"a": {"b": 1}, "keep": [1]}
    out = set_path(data, JsonPath("$.a.c.d"), 5)
    assert out == {"a": {"b": 1, "c": {"d": 5}}, "keep": [1]}
    assert data == {"a": {"b": 1}, "keep": [1]}
    assert out["keep"] is data["keep"]
    assert set_path(data, JsonPath("$"), 7) == 7


def _call(text: str, data: Any = None) -> Any:
    return evaluate(parse(text), lambda p: p.get(data))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("States.Format('Hello, {}! {} {}', $.name, $.n, $.o)", "Hello, W! 1.5 {a=1}"),
        ("States.Format('esc \\{\\} \\' {}', 'x')", "esc {} ' x"),
        ("States.StringToJson('{\"a\": [1]}')", {"a": [1]}),
        ("States.JsonToString($.o)", '{"a":1}'),
        ("States.Array(1, 'two', $.n, null, true)", [1, "two", 1.5, None, True]),
        ("States.ArrayPartition(States.ArrayRange(1, 5, 1), 2)", [[1, 2], [3, 4], [5]]),
        ("States.ArrayContains(States.Array(1, 2), 2)", True),
        ("States.ArrayRange(10, 0, -5)", [10, 5, 0]),
        ("States.ArrayGetItem(States.Array('a', 'b'), 1)", "b"),
        ("States.ArrayLength(States.Array(1, 2, 3))", 3),
        ("States.ArrayUnique(States.Array(1, 2, 1, 1.0))", [1, 2]),
        ("States.Base64Encode('Data to encode')", "RGF0YSB0byBlbmNvZGU="),
        ("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", "Data to encode"),
        ("States.Hash('input data', 'MD5')", "812f45842bc6d66ee14572ce20db8e86"),
        ("States.JsonMerge($.o, States.StringToJson('{\"b\": 2}'), false)", {"a": 1, "b": 2}),
        ("States.MathAdd(1.5, -1)", 1),
        ("States.StringSplit('a,b;;c', ',;')", ["a", "b", "c"]),
    ],
)
def test_intrinsics(expr: str, expected: Any) -> None:
    assert _call(expr, {"name": "W", "n": 1.5, "o": {"a": 1}}) == expected


def test_random_and_uuid() -> None:
    assert 1 <= _call("States.MathRandom(1, 10)") < 10
    assert _call("States.MathRandom(1, 1000, 7)") == _call("States.MathRandom(1, 1000, 7)")
    assert len(_call("States.UUID()")) == 36


@pytest.mark.parametrize(
    "bad", ["States.Nope(1)", "States.ArrayLength()", "States.Format('x'", "States.UUID(1)", "x()"]
)
def test_intrinsic_syntax_errors(bad: str) -> None:
    with pytest.raises(IntrinsicSyntaxError):
        parse(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "States.ArrayGetItem(States.Array(1), 3)",
        "States.Hash('x', 'CRC32')",
        "States.MathAdd('a', 1)",
        "States.Format('{} {}', 1)",
        "States.StringToJson('{bad')",
    ],
)
def test_intrinsic_runtime_errors(bad: str) -> None:
    with pytest.raises(IntrinsicError):
        _call(bad)


def _choice(rule: dict[str, Any], value: Any) -> str:
    machine = load(
        {
            "StartAt": "C",
            "States": {
                "C": {"Type": "Choice", "Choices": [{**rule, "Next": "T"}], "Default": "F"},
                "T": {"Type": "Pass", "Result": "T", "End": True},
                "F": {"Type": "Pass", "Result": "F", "End": True},
            },
        }
    )
    ex = execute(
        machine, {"v": value, "o": 5, "ts": "2020-01-01T00:00:00Z"}, Resources(), clock=FakeClock()
    )
    assert ex.status == "SUCCEEDED", ex.cause
    return ex.output


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ({"Variable": "$.v", "StringEquals": "a"}, "a", "T"),
        ({"Variable": "$.v", "StringEquals": "a"}, 1, "F"),
        ({"Variable": "$.v", "StringLessThan": "b"}, "a", "T"),
        ({"Variable": "$.v", "StringMatches": "log-*.txt"}, "log-1.txt", "T"),
        ({"Variable": "$.v", "StringMatches": "a\\*"}, "a*", "T"),
        ({"Variable": "$.v", "StringMatches": "a\\*"}, "ab", "F"),
        ({"Variable": "$.v", "NumericEquals": 1}, 1.0, "T"),
        ({"Variable": "$.v", "NumericEquals": 1}, True, "F"),
        ({"Variable": "$.v", "NumericGreaterThanPath": "$.o"}, 6, "T"),
        ({"Variable": "$.v", "NumericLessThanEqualsPath": "$.o"}, 6, "F"),
        ({"Variable": "$.v", "BooleanEquals": False}, False, "T"),
        (
            {"Variable": "$.v", "TimestampGreaterThan": "2019-12-31T23:00:00-02:00"},
            "2020-01-01T02:00:00Z",
            "T",
        ),
        ({"Variable": "$.v", "TimestampEqualsPath": "$.ts"}, "2020-01-01T01:00:00+01:00", "T"),
        ({"Variable": "$.v", "IsNull": True}, None, "T"),
        ({"Variable": "$.v", "IsTimestamp": True}, "2020-01-01", "F"),
        ({"Variable": "$.nope", "IsPresent": False}, 1, "T"),
        ({"Variable": "$.nope", "IsNull": False}, 1, "F"),
        (
            {
                "Or": [
                    {"Variable": "$.v", "IsString": True},
                    {"Variable": "$.v", "NumericEquals": 3},
                ]
            },
            3,
            "T",
        ),
    ],
)
def test_choice_operators(rule: dict[str, Any], value: Any, expected: str) -> None:
    assert _choice(rule, value) == expected


def test_choice_on_missing_variable_is_runtime_error() -> None:
    machine = load(
        {
            "StartAt": "C",
            "States": {
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "T"}],
                },
                "T": {"Type": "Succeed"},
            },
        }
    )
    ex = execute(machine, {}, Resources(), clock=FakeClock())
    assert ex.error == "States.Runtime"
    assert "Invalid path '$.x'" in ex.cause


def test_jsonata_state() -> None:
    pytest.importorskip("jsonata")
    machine = load(
        {
            "QueryLanguage": "JSONata",
            "StartAt": "A",
            "States": {
                "A": {
                    "Type": "Pass",
                    "Assign": {"total": "{% $sum($states.input.xs) %}"},
                    "Output": {
                        "n": "{% $count($states.input.xs) %}",
                        "p": "{% $partition([1,2,3], 2) %}",
                    },
                    "Next": "B",
                },
                "B": {
                    "Type": "Choice",
                    "Choices": [{"Condition": "{% $total > 5 %}", "Next": "Big"}],
                    "Default": "Small",
                },
                "Big": {
                    "Type": "Pass",
                    "Output": "{% $merge([$states.input, {'total': $total}]) %}",
                    "End": True,
                },
                "Small": {"Type": "Fail", "Error": "Small"},
            },
        }
    )
    ex = execute(machine, {"xs": [1, 2, 3]}, Resources(), clock=FakeClock())
    assert ex.status == "SUCCEEDED", ex.cause
    assert ex.output == {"n": 3, "p": [[1, 2], [3]], "total": 6}


def test_jsonata_undefined_is_query_evaluation_error() -> None:
    pytest.importorskip("jsonata")
    machine = load(
        {
            "QueryLanguage": "JSONata",
            "StartAt": "A",
            "States": {"A": {"Type": "Pass", "Output": "{% $nope %}", "End": True}},
        }
    )
    ex = execute(machine, {}, Resources(), clock=FakeClock())
    assert ex.error == "States.QueryEvaluationError"
    assert "returned nothing (undefined)" in ex.cause
    assert ex.event_types == [
        "ExecutionStarted",
        "PassStateEntered",
        "EvaluationFailed",
        "ExecutionFailed",
    ]
