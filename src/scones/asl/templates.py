"""Payload templates (Parameters, ResultSelector, ItemSelector, Assign) compiled to closures.

A key ending in ".$" takes its value from a path ($, $$ or $variable) or an intrinsic
function; every other value is copied as is. Static sub-trees are precomputed once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import intrinsics
from .causes import cause
from .paths import JsonPath, PathNotFound, PathSyntaxError

Evaluator = Callable[["Scope"], Any]


class EvaluationError(Exception):
    """A path or intrinsic failed while evaluating; the interpreter adds the state prefix."""

    def __init__(
        self, message: str, error: str = "States.Runtime", location: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error = error
        self.location = location


class Scope:
    """What a path can see: the state's input, the context object and the variables."""

    __slots__ = ("_context", "_context_builder", "input", "variables")

    def __init__(
        self, input: Any, context_builder: Callable[[], dict[str, Any]], variables: Variables
    ) -> None:
        self.input = input
        # The context object ($$) is built on first use: most states never read it.
        self._context: dict[str, Any] | None = None
        self._context_builder = context_builder
        self.variables = variables

    def with_input(self, input: Any) -> Scope:
        scope = Scope(input, self._context_builder, self.variables)
        scope._context = self._context
        return scope

    def with_context(self, extra: dict[str, Any]) -> Scope:
        """This scope with `extra` members in its context object (a Map item's $$.Map)."""
        build = self._context_builder
        return Scope(self.input, lambda: {**build(), **extra}, self.variables)

    def context(self) -> dict[str, Any]:
        if self._context is None:
            self._context = self._context_builder()
        return self._context

    def root(self, path: JsonPath) -> Any:
        root = path.root
        if root == "$":
            return self.input
        if root == "$$":
            return self.context()
        return self.variables.lookup(root)

    def resolve(self, path: JsonPath) -> Any:
        """Evaluate a path; raises PathNotFound (or UndefinedVariable for an unknown one)."""
        return path.get(self.root(path))


class UndefinedVariable(LookupError):
    pass


class Variables:
    """Assign'd variables; inner scopes (branches, iterations) read outer ones."""

    __slots__ = ("local", "parent")

    def __init__(self, parent: Variables | None = None) -> None:
        self.local: dict[str, Any] = {}
        self.parent = parent

    def lookup(self, name: str) -> Any:
        v: Variables | None = self
        while v is not None:
            if name in v.local:
                return v.local[name]
            v = v.parent
        raise UndefinedVariable(name)

    def all(self) -> dict[str, Any]:
        chain = []
        v: Variables | None = self
        while v is not None:
            chain.append(v.local)
            v = v.parent
        out: dict[str, Any] = {}
        for d in reversed(chain):
            out.update(d)
        return out


def compile_value_expr(text: Any, field: str, loc: str, problems: list[str]) -> Evaluator | None:
    """A ".$" value: a path or an intrinsic call."""
    if not isinstance(text, str):
        problems.append(
            f"{loc}: value of {field!r} must be a path or intrinsic function string, got "
            f"{json.dumps(text)}"
        )
        return None
    if intrinsics.is_intrinsic(text):
        try:
            call = intrinsics.parse(text)
        except intrinsics.IntrinsicSyntaxError as e:
            problems.append(f"{loc}: invalid intrinsic function {text!r}: {e}")
            return None
        return _intrinsic_evaluator(call, field)
    try:
        path = JsonPath(text)
    except PathSyntaxError as e:
        problems.append(f"{loc}: invalid path {text!r}: {e}")
        return None
    return path_evaluator(path, field)


def _resolve_for_field(scope: Scope, path: JsonPath, field: str) -> Any:
    """A path inside a payload template or intrinsic, with the causes AWS gives for those."""
    try:
        return scope.resolve(path)
    except PathNotFound:
        searched = (
            scope.input if path.root == "$" else scope.context() if path.root == "$$" else None
        )
        raise EvaluationError(
            cause("template_path_not_found", path=path.text, field=field, json=searched)
        ) from None
    except UndefinedVariable:
        raise EvaluationError(
            cause("template_path_undefined_variable", path=path.text, field=field)
        ) from None


def path_evaluator(path: JsonPath, field: str) -> Evaluator:
    def evaluate_path(scope: Scope) -> Any:
        return _resolve_for_field(scope, path, field)

    return evaluate_path


def _intrinsic_evaluator(call: intrinsics.Call, field: str) -> Evaluator:
    def evaluate_intrinsic(scope: Scope) -> Any:
        try:
            return intrinsics.evaluate(call, lambda path: _resolve_for_field(scope, path, field))
        except intrinsics.IntrinsicError as e:
            raise EvaluationError(
                cause("intrinsic_failed", function=call.text, field=field, reason=str(e))
            ) from None

    return evaluate_intrinsic


class Template:
    """A compiled payload template."""

    __slots__ = ("fn", "static", "value")

    def __init__(self, fn: Evaluator | None, value: Any = None) -> None:
        self.fn = fn
        self.static = fn is None
        self.value = value

    def evaluate(self, scope: Scope) -> Any:
        if self.fn is None:
            return self.value
        return self.fn(scope)


def compile_template(node: Any, loc: str, problems: list[str]) -> Template:
    static, fn = _compile(node, loc, problems)
    if static:
        return Template(None, node)
    return Template(fn)


def _compile(node: Any, loc: str, problems: list[str]) -> tuple[bool, Any]:
    """(static, evaluator): a static node is copied as is, others get an evaluator."""
    if isinstance(node, dict):
        members: list[tuple[str, bool, Any]] = []  # (key, static, value or evaluator)
        all_static = True
        for key, value in node.items():
            member_loc = f"{loc}/{key}"
            if isinstance(key, str) and key.endswith(".$") and len(key) > 2:
                evaluator = compile_value_expr(value, key, member_loc, problems)
                members.append((key[:-2], False, evaluator))
                all_static = False
            else:
                static, evaluator = _compile(value, member_loc, problems)
                members.append((key, static, value if static else evaluator))
                all_static = all_static and static
        if all_static:
            return True, None

        def evaluate_object(scope: Scope) -> Any:
            result = {}
            for key, static, value in members:
                result[key] = value if static else value(scope)
            return result

        return False, evaluate_object
    if isinstance(node, list):
        compiled = [_compile(v, f"{loc}/{i}", problems) for i, v in enumerate(node)]
        if all(static for static, _ in compiled):
            return True, None
        elements = [
            (static, node[i] if static else evaluator)
            for i, (static, evaluator) in enumerate(compiled)
        ]

        def evaluate_array(scope: Scope) -> Any:
            return [value if static else value(scope) for static, value in elements]

        return False, evaluate_array
    return True, None
