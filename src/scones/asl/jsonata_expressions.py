"""JSONata expressions ("{% ... %}") compiled once and evaluated against bindings.

Expressions may appear anywhere in Arguments, Output, Assign, Items, ItemSelector,
Condition and the numeric/timestamp fields of a JSONata state. The `jsonata` package
(jsonata-python) is imported only when the first expression is compiled.
"""

from __future__ import annotations

import functools
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

from . import intrinsics
from .causes import cause
from .errors import QUERY_EVALUATION_ERROR
from .templates import EvaluationError

Bindings = dict[str, Any]


def _jsonata_module() -> Any:
    try:
        import jsonata
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "JSONata states need the jsonata-python package (pip install jsonata-python)"
        ) from e
    return jsonata


@functools.cache
def _jsonata_null() -> Any:
    """jsonata-python's marker for JSON null (its None means undefined)."""
    return _jsonata_module().utils.Utils.NULL_VALUE


def is_expression_text(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.startswith("{%")
        and value.endswith("%}")
        and len(value) >= 4
    )


class Expression:
    """One compiled "{% ... %}" expression."""

    __slots__ = ("compiled", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.compiled = _jsonata_module().Jsonata(text)
        # Keep JSON null distinct from undefined (both are None otherwise).
        self.compiled.set_output_convert_nulls(False)
        for name, function in _aws_functions().items():
            self.compiled.register_lambda(name, function)

    def evaluate(self, bindings: Bindings, field: str) -> Any:
        try:
            value = self.compiled.evaluate(None, bindings)
        except Exception as e:  # JSONata runtime errors become States.QueryEvaluationError
            raise self._failure("jsonata_threw", field, reason=str(e)) from None
        if value is None:
            raise self._failure("jsonata_undefined", field)
        if not _is_json(value):
            raise self._failure("jsonata_unsupported_type", field)
        return from_jsonata(value)

    def _failure(self, kind: str, field: str, **fields: Any) -> EvaluationError:
        text = cause(kind, expression=self.text, field=field, **fields)
        return EvaluationError(text, QUERY_EVALUATION_ERROR, field)


def _aws_functions() -> dict[str, Callable[..., Any]]:
    """The functions Step Functions adds to JSONata ($partition, $range, $hash, ...)."""
    null = _jsonata_null()

    def call(function: Callable[..., Any], *args: Any) -> Any:
        try:
            return to_jsonata(function(*(from_jsonata(a) for a in args)), null)
        except intrinsics.IntrinsicError as e:
            raise ValueError(str(e)) from None

    def random_number(*seed: Any) -> float:
        generator = random.Random(from_jsonata(seed[0])) if seed else random
        return generator.random()

    return {
        "partition": lambda array, size: call(
            intrinsics.FUNCTIONS["States.ArrayPartition"], array, size
        ),
        "range": lambda first, last, step: call(
            intrinsics.FUNCTIONS["States.ArrayRange"], first, last, step
        ),
        "hash": lambda data, algorithm: call(intrinsics.FUNCTIONS["States.Hash"], data, algorithm),
        "random": random_number,
        "uuid": lambda: str(uuid.uuid4()),
        "parse": lambda text: call(_parse_json, text),
    }


def _parse_json(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError(f"$parse expects a string, got {json.dumps(text)}")
    return json.loads(text)


def to_jsonata(value: Any, null: Any) -> Any:
    """Python JSON value -> the form jsonata-python expects (None becomes its null marker)."""
    if value is None:
        return null
    if isinstance(value, dict):
        return {k: to_jsonata(v, null) for k, v in value.items()}
    if isinstance(value, list):
        return [to_jsonata(v, null) for v in value]
    return value


def jsonata_bindings(values: dict[str, Any]) -> Bindings:
    """Bindings for an evaluation: every value converted to jsonata-python's form."""
    null = _jsonata_null()
    return {name: to_jsonata(value, null) for name, value in values.items()}


def _is_json(value: Any) -> bool:
    if value is None or value is _jsonata_null() or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(_is_json(v) for v in value.values())
    return False


def from_jsonata(value: Any) -> Any:
    """Back to plain JSON values; JSONata yields floats for integral numbers, keep ints."""
    if value is _jsonata_null():
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [from_jsonata(v) for v in value]
    if isinstance(value, dict):
        return {k: from_jsonata(v) for k, v in value.items()}
    return value


class ExpressionTree:
    """A JSON value whose strings may be expressions; evaluated recursively."""

    __slots__ = ("node", "static")

    def __init__(self, node: Any) -> None:
        self.node = node
        self.static = not _has_expression(node)

    def evaluate(self, bindings: Bindings, field: str) -> Any:
        if self.static:
            return self.node
        return _evaluate_node(self.node, bindings, field)

    def text(self) -> str:
        """The expression's text, or the JSON text of a value without expressions."""
        if isinstance(self.node, Expression):
            return self.node.text
        return json.dumps(self.node)


def _has_expression(node: Any) -> bool:
    if isinstance(node, Expression):
        return True
    if isinstance(node, dict):
        return any(_has_expression(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_expression(v) for v in node)
    return False


def _evaluate_node(node: Any, bindings: Bindings, field: str) -> Any:
    if isinstance(node, Expression):
        return node.evaluate(bindings, field)
    if isinstance(node, dict):
        return {k: _evaluate_node(v, bindings, f"{field}/{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_evaluate_node(v, bindings, f"{field}/{i}") for i, v in enumerate(node)]
    return node


def _compile_node(node: Any, loc: str, problems: list[str]) -> Any:
    if is_expression_text(node):
        text = node[2:-2].strip()
        try:
            return Expression(text)
        except ImportError as e:
            problems.append(f"{loc}: {e}")
        except Exception as e:  # a JSONata syntax error
            problems.append(f"{loc}: invalid JSONata expression {text!r}: {e}")
        return None
    if isinstance(node, dict):
        return {k: _compile_node(v, f"{loc}/{k}", problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_compile_node(v, f"{loc}/{i}", problems) for i, v in enumerate(node)]
    return node


def compile_expression_tree(node: Any, loc: str, problems: list[str]) -> ExpressionTree:
    return ExpressionTree(_compile_node(node, loc, problems))


def compile_assign(node: Any, loc: str, problems: list[str]) -> ExpressionTree | None:
    if not isinstance(node, dict):
        problems.append(f"{loc}: must be an object, got {json.dumps(node)}")
        return None
    return compile_expression_tree(node, loc, problems)


def compile_condition(rule: Any, loc: str, problems: list[str]) -> ExpressionTree | None:
    if not isinstance(rule, dict):
        problems.append(f"{loc}: a choice rule must be an object")
        return None
    for key in rule:
        if key not in ("Condition", "Next", "Assign", "Output", "Comment"):
            problems.append(f"{loc}/{key}: unknown field {key!r} in a JSONata choice rule")
    if "Condition" not in rule:
        problems.append(f"{loc}/Condition: missing required field Condition")
        return None
    return compile_expression_tree(rule["Condition"], f"{loc}/Condition", problems)
