"""Payload templates (Parameters, ResultSelector, ItemSelector, Assign) compiled to closures.

A key ending in ".$" takes its value from a path ($, $$ or $variable) or an intrinsic
function; every other value is copied as is. Static sub-trees are precomputed once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import intrinsics
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

    __slots__ = ("_ctx", "_ctx_fn", "input", "vars")

    def __init__(self, input: Any, ctx_fn: Callable[[], dict[str, Any]], vars: Variables) -> None:
        self.input = input
        self._ctx: dict[str, Any] | None = None
        self._ctx_fn = ctx_fn
        self.vars = vars

    def with_input(self, input: Any) -> Scope:
        s = Scope(input, self._ctx_fn, self.vars)
        s._ctx = self._ctx
        return s

    def context(self) -> dict[str, Any]:
        if self._ctx is None:
            self._ctx = self._ctx_fn()
        return self._ctx

    def root(self, path: JsonPath) -> Any:
        r = path.root
        if r == "$":
            return self.input
        if r == "$$":
            return self.context()
        return self.vars.lookup(r)

    def resolve(self, path: JsonPath) -> Any:
        """Evaluate a path; raises PathNotFound (or KeyError for an unknown variable)."""
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


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


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


def path_evaluator(path: JsonPath, field: str) -> Evaluator:
    def ev(scope: Scope) -> Any:
        try:
            return path.get(scope.root(path))
        except PathNotFound:
            where = (
                scope.input if path.root == "$" else scope.context() if path.root == "$$" else None
            )
            raise EvaluationError(
                f"The JSONPath '{path.text}' specified for the field '{field}' could not be found "
                f"in the input '{dumps(where)}'"
            ) from None
        except UndefinedVariable:
            raise EvaluationError(
                f"The JSONPath '{path.text}' specified for the field '{field}' references an "
                f"undefined variable"
            ) from None

    return ev


def _intrinsic_evaluator(call: intrinsics.Call, field: str) -> Evaluator:
    def ev(scope: Scope) -> Any:
        def resolve(p: JsonPath) -> Any:
            try:
                return scope.resolve(p)
            except PathNotFound:
                where = (
                    scope.input if p.root == "$" else scope.context() if p.root == "$$" else None
                )
                raise EvaluationError(
                    f"The JSONPath '{p.text}' specified for the field '{field}' could not be found "
                    f"in the input '{dumps(where)}'"
                ) from None
            except UndefinedVariable:
                raise EvaluationError(
                    f"The JSONPath '{p.text}' specified for the field '{field}' references an "
                    f"undefined variable"
                ) from None

        try:
            return intrinsics.evaluate(call, resolve)
        except intrinsics.IntrinsicError as e:
            raise EvaluationError(
                f"The Intrinsic function '{call.text}' specified for the field '{field}' failed: "
                f"{e}"
            ) from None

    return ev


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
    if isinstance(node, dict):
        parts: list[tuple[str, bool, Any]] = []
        all_static = True
        for k, v in node.items():
            sub = f"{loc}/{k}"
            if isinstance(k, str) and k.endswith(".$") and len(k) > 2:
                ev = compile_value_expr(v, k, sub, problems)
                parts.append((k[:-2], False, ev))
                all_static = False
            else:
                st, f = _compile(v, sub, problems)
                parts.append((k, st, v if st else f))
                all_static = all_static and st
        if all_static:
            return True, None

        def ev_dict(scope: Scope) -> Any:
            out = {}
            for key, st, x in parts:
                out[key] = x if st else x(scope)
            return out

        return False, ev_dict
    if isinstance(node, list):
        items = [_compile(v, f"{loc}/{i}", problems) for i, v in enumerate(node)]
        if all(st for st, _ in items):
            return True, None
        vals = [(st, node[i] if st else f) for i, (st, f) in enumerate(items)]

        def ev_list(scope: Scope) -> Any:
            return [x if st else x(scope) for st, x in vals]

        return False, ev_list
    return True, None
