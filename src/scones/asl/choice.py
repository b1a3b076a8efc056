"""Choice rules compiled to predicates over a Scope."""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable
from typing import Any

from .causes import CAUSES, cause
from .paths import JsonPath, PathNotFound, PathSyntaxError
from .templates import EvaluationError, Scope, UndefinedVariable

Predicate = Callable[[Scope], bool]

_TS_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_timestamp(value: Any) -> _dt.datetime | None:
    """RFC 3339 date-time with a zone, as Step Functions requires; None when invalid."""
    if not isinstance(value, str):
        return None
    m = _TS_RE.match(value)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        tz = _dt.UTC
        if zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            hh, mm = int(zone[1:3]), int(zone[4:6])
            if hh > 23 or mm > 59:
                return None
            tz = _dt.timezone(sign * _dt.timedelta(hours=hh, minutes=mm))
        micro = int((frac[1:] + "000000")[:6]) if frac else 0
        # Digits past the microsecond are dropped, as Python's datetime holds no finer time.
        return _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)
    except ValueError:
        return None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.S)


def _cmp(op: str, a: Any, b: Any) -> bool:
    if op == "Equals":
        return bool(a == b)
    if op == "LessThan":
        return bool(a < b)
    if op == "GreaterThan":
        return bool(a > b)
    if op == "LessThanEquals":
        return bool(a <= b)
    return bool(a >= b)


_KINDS = ("String", "Numeric", "Boolean", "Timestamp")
_OPS = ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
COMPARISONS: set[str] = set()
for _k in _KINDS:
    for _o in _OPS:
        if _k == "Boolean" and _o != "Equals":
            continue
        COMPARISONS.add(_k + _o)
        COMPARISONS.add(_k + _o + "Path")
COMPARISONS |= {"StringMatches"}
TYPE_TESTS = {"IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"}
RULE_FIELDS = (
    COMPARISONS
    | TYPE_TESTS
    | {"And", "Or", "Not", "Variable", "Next", "Comment", "Assign", "Condition", "Output"}
)


def _check_operand(kind: str, v: Any) -> bool:
    if kind == "String":
        return isinstance(v, str)
    if kind == "Numeric":
        return _is_num(v)
    if kind == "Boolean":
        return isinstance(v, bool)
    return parse_timestamp(v) is not None


def _coerce(kind: str, v: Any) -> Any:
    return parse_timestamp(v) if kind == "Timestamp" else v


def _read(scope: Scope, path: JsonPath) -> Any:
    try:
        return scope.resolve(path)
    except PathNotFound as e:
        raise EvaluationError(cause("invalid_path", path=path.text, reason=e.message)) from None
    except UndefinedVariable:
        reason = CAUSES["undefined_variable"]
        raise EvaluationError(cause("invalid_path", path=path.text, reason=reason)) from None


def compile_rule(rule: Any, loc: str, problems: list[str], top: bool) -> Predicate | None:
    if not isinstance(rule, dict):
        problems.append(f"{loc}: a choice rule must be an object, got {json.dumps(rule)}")
        return None
    for k in rule:
        if k not in RULE_FIELDS:
            problems.append(f"{loc}/{k}: unknown field {k!r} in a choice rule")
    if not top and "Next" in rule:
        problems.append(f"{loc}/Next: a nested choice rule cannot have Next")
    ops = [k for k in rule if k in COMPARISONS or k in TYPE_TESTS or k in ("And", "Or", "Not")]
    if len(ops) != 1:
        problems.append(
            f"{loc}: a choice rule needs exactly one comparison or And/Or/Not, got {ops or 'none'}"
        )
        return None
    op = ops[0]
    val = rule[op]
    if op in ("And", "Or"):
        if "Variable" in rule:
            problems.append(f"{loc}/Variable: {op} rules cannot have a Variable")
        if not isinstance(val, list) or not val:
            problems.append(f"{loc}/{op}: must be a non-empty array of choice rules")
            return None
        subs = [compile_rule(r, f"{loc}/{op}/{i}", problems, False) for i, r in enumerate(val)]
        if any(s is None for s in subs):
            return None
        preds = tuple(subs)
        if op == "And":
            return lambda scope: all(p(scope) for p in preds)  # type: ignore[misc]
        return lambda scope: any(p(scope) for p in preds)  # type: ignore[misc]
    if op == "Not":
        sub = compile_rule(val, f"{loc}/Not", problems, False)
        if sub is None:
            return None
        return lambda scope: not sub(scope)
    if "Variable" not in rule:
        problems.append(f"{loc}: a {op} rule needs a Variable")
        return None
    try:
        var = JsonPath(rule["Variable"])
    except PathSyntaxError as e:
        problems.append(f"{loc}/Variable: invalid path {rule['Variable']!r}: {e}")
        return None
    if op in TYPE_TESTS:
        if not isinstance(val, bool):
            problems.append(f"{loc}/{op}: must be true or false, got {json.dumps(val)}")
            return None
        return _type_test(op, var, val)
    if op == "StringMatches":
        if not isinstance(val, str):
            problems.append(f"{loc}/{op}: must be a string, got {json.dumps(val)}")
            return None
        rx = _glob_to_regex(val)

        def matches(scope: Scope) -> bool:
            v = _read(scope, var)
            return isinstance(v, str) and rx.fullmatch(v) is not None

        return matches
    is_path = op.endswith("Path")
    base = op[:-4] if is_path else op
    kind = next(k for k in _KINDS if base.startswith(k))
    cmp = base[len(kind) :]
    if is_path:
        try:
            other = JsonPath(val)
        except (PathSyntaxError, TypeError) as e:
            problems.append(f"{loc}/{op}: invalid path {val!r}: {e}")
            return None

        def compare_path(scope: Scope) -> bool:
            a = _read(scope, var)
            b = _read(scope, other)
            if not (_check_operand(kind, a) and _check_operand(kind, b)):
                return False
            return _cmp(cmp, _coerce(kind, a), _coerce(kind, b))

        return compare_path
    if not _check_operand(kind, val):
        problems.append(f"{loc}/{op}: {json.dumps(val)} is not a valid {kind.lower()} value")
        return None
    const = _coerce(kind, val)

    def compare(scope: Scope) -> bool:
        a = _read(scope, var)
        if not _check_operand(kind, a):
            return False
        return _cmp(cmp, _coerce(kind, a), const)

    return compare


def _type_test(op: str, var: JsonPath, expected: bool) -> Predicate:
    def test(scope: Scope) -> bool:
        try:
            v = scope.resolve(var)
            present = True
        except (PathNotFound, UndefinedVariable):
            v, present = None, False
        if op == "IsPresent":
            return present == expected
        if not present:
            # Type tests on an absent value are false, whatever the expected flag.
            return False
        if op == "IsNull":
            r = v is None
        elif op == "IsNumeric":
            r = _is_num(v)
        elif op == "IsString":
            r = isinstance(v, str)
        elif op == "IsBoolean":
            r = isinstance(v, bool)
        else:
            r = parse_timestamp(v) is not None
        return r == expected

    return test
