"""JSONata as the query language (QueryLanguage: "JSONata").

Expressions are strings of the form "{% ... %}" anywhere in Arguments, Output, Assign,
Items, ItemSelector, Condition and the numeric/timestamp fields. They see `$states`
(input, result, errorOutput, context) and the workflow variables. The `jsonata` package
(jsonata-python) is imported only when a JSONata state is compiled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import errors as E
from .choice import parse_timestamp
from .definition import MISSING
from .templates import EvaluationError

if TYPE_CHECKING:
    from .interpreter import _Run, _Track

QEE = E.QUERY_EVALUATION_ERROR
_UNDEFINED = object()


def _jsonata() -> Any:
    try:
        import jsonata
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "JSONata states need the jsonata-python package (pip install jsonata-python)"
        ) from e
    return jsonata


def _is_expr(v: Any) -> bool:
    return isinstance(v, str) and v.startswith("{%") and v.endswith("%}") and len(v) >= 4


class Expr:
    """One compiled "{% ... %}" expression."""

    __slots__ = ("compiled", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.compiled = _jsonata().Jsonata(text)
        # Keep JSON null distinct from undefined (both are None otherwise).
        self.compiled.set_output_convert_nulls(False)
        for name, fn in _aws_functions().items():
            self.compiled.register_lambda(name, fn)

    def evaluate(self, bindings: dict[str, Any], field: str) -> Any:
        try:
            v = self.compiled.evaluate(None, bindings)
        except Exception as e:  # JSONata runtime errors become States.QueryEvaluationError
            raise EvaluationError(
                f"The JSONata expression '{self.text}' specified for the field '{field}' threw "
                f"an error "
                f"during evaluation: {e}",
                QEE,
                field,
            ) from None
        if v is None:
            raise EvaluationError(
                f"The JSONata expression '{self.text}' specified for the field '{field}' "
                f"returned nothing "
                "(undefined).",
                QEE,
                field,
            )
        if not _is_json(v):
            raise EvaluationError(
                f"The JSONata expression '{self.text}' specified for the field '{field}' "
                f"returned an "
                "unsupported result type.",
                QEE,
                field,
            )
        return _normalise(v)


def _aws_functions() -> dict[str, Callable[..., Any]]:
    """The functions Step Functions adds to JSONata ($partition, $range, $hash, ...)."""
    import random
    import uuid

    from . import intrinsics

    null = _null()

    def plain(v: Any) -> Any:
        return _normalise(v)

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return to_jsonata(fn(*(plain(a) for a in args)), null)
        except intrinsics.IntrinsicError as e:
            raise ValueError(str(e)) from None

    return {
        "partition": lambda arr, size: call(
            intrinsics.FUNCTIONS["States.ArrayPartition"], arr, size
        ),
        "range": lambda a, b, c: call(intrinsics.FUNCTIONS["States.ArrayRange"], a, b, c),
        "hash": lambda data, alg: call(intrinsics.FUNCTIONS["States.Hash"], data, alg),
        "random": lambda *seed: (random.Random(plain(seed[0])) if seed else random).random(),
        "uuid": lambda: str(uuid.uuid4()),
        "parse": lambda text: call(_parse_json, text),
    }


def _parse_json(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError(f"$parse expects a string, got {json.dumps(text)}")
    return json.loads(text)


def _null() -> Any:
    from jsonata.utils import Utils

    return Utils.NULL_VALUE


def to_jsonata(v: Any, null: Any) -> Any:
    """Python JSON value -> the form jsonata-python expects (None becomes its null marker)."""
    if v is None:
        return null
    if isinstance(v, dict):
        return {k: to_jsonata(x, null) for k, x in v.items()}
    if isinstance(v, list):
        return [to_jsonata(x, null) for x in v]
    return v


def _is_json(v: Any) -> bool:
    if v is None or v is _null() or isinstance(v, (str, bool, int, float)):
        return True
    if isinstance(v, list):
        return all(_is_json(x) for x in v)
    if isinstance(v, dict):
        return all(_is_json(x) for x in v.values())
    return False


def _normalise(v: Any) -> Any:
    """Back to plain JSON values; JSONata yields floats for integral numbers, keep ints."""
    if v is _null():
        return None
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
        return int(v)
    if isinstance(v, list):
        return [_normalise(x) for x in v]
    if isinstance(v, dict):
        return {k: _normalise(x) for k, x in v.items()}
    return v


class Tree:
    """A JSON value whose strings may be expressions; evaluated recursively."""

    __slots__ = ("node", "static")

    def __init__(self, node: Any) -> None:
        self.node = node
        self.static = not _has_expr(node)

    def evaluate(self, bindings: dict[str, Any], field: str) -> Any:
        if self.static:
            return _strip(self.node)
        return _eval_node(self.node, bindings, field, top=True)


def _strip(node: Any) -> Any:
    if isinstance(node, Expr):
        raise AssertionError("unreachable")
    return node


def _has_expr(node: Any) -> bool:
    if isinstance(node, Expr):
        return True
    if isinstance(node, dict):
        return any(_has_expr(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_expr(v) for v in node)
    return False


def _eval_node(node: Any, b: dict[str, Any], field: str, top: bool = False) -> Any:
    if isinstance(node, Expr):
        return node.evaluate(b, field)
    if isinstance(node, dict):
        return {k: _eval_node(v, b, f"{field}/{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_eval_node(v, b, f"{field}/{i}") for i, v in enumerate(node)]
    return node


def _compile_node(node: Any, loc: str, problems: list[str]) -> Any:
    if _is_expr(node):
        text = node[2:-2].strip()
        try:
            return Expr(text)
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


def compile_expr_tree(node: Any, loc: str, problems: list[str]) -> Tree:
    return Tree(_compile_node(node, loc, problems))


def compile_assign(node: Any, loc: str, problems: list[str]) -> Tree | None:
    if not isinstance(node, dict):
        problems.append(f"{loc}: must be an object, got {json.dumps(node)}")
        return None
    return compile_expr_tree(node, loc, problems)


def compile_condition(rule: Any, loc: str, problems: list[str]) -> Any:
    if not isinstance(rule, dict):
        problems.append(f"{loc}: a choice rule must be an object")
        return None
    for k in rule:
        if k not in ("Condition", "Next", "Assign", "Output", "Comment"):
            problems.append(f"{loc}/{k}: unknown field {k!r} in a JSONata choice rule")
    if "Condition" not in rule:
        problems.append(f"{loc}/Condition: missing required field Condition")
        return None
    return compile_expr_tree(rule["Condition"], f"{loc}/Condition", problems)


_FIELDS = (
    "Arguments",
    "Output",
    "Items",
    "ItemSelector",
    "Seconds",
    "Timestamp",
    "TimeoutSeconds",
    "HeartbeatSeconds",
    "MaxConcurrency",
    "ToleratedFailureCount",
    "ToleratedFailurePercentage",
    "Error",
    "Cause",
    "Credentials",
)


def compile_state(s: Any, spec: dict[str, Any], loc: str, problems: list[str]) -> None:
    """Attach compiled JSONata fields as s.j (dict field -> Tree)."""
    j: dict[str, Tree] = {}
    for f in _FIELDS:
        if f in spec:
            j[f] = compile_expr_tree(spec[f], f"{loc}/{f}", problems)
    s.j = j
    if "Assign" in spec:
        s.assign = compile_assign(spec["Assign"], f"{loc}/Assign", problems)


# --- runtime ---


def _bindings(
    run: _Run,
    s: Any,
    raw: Any,
    track: _Track,
    now: float,
    retry: int = 0,
    extra_ctx: dict[str, Any] | None = None,
    **states: Any,
) -> dict[str, Any]:
    null = _null()
    b = {k: to_jsonata(v, null) for k, v in track.vars.all().items()}
    st = {
        "input": to_jsonata(raw, null),
        "context": to_jsonata(run.ctx_fn(s, now, retry, extra_ctx)(), null),
    }
    st.update({k: to_jsonata(v, null) for k, v in states.items()})
    b["states"] = st
    return b


def _field(s: Any, name: str, b: dict[str, Any], default: Any = _UNDEFINED) -> Any:
    t = s.j.get(name)
    if t is None:
        return default
    return t.evaluate(b, name)


def _assign(s: Any, b: dict[str, Any]) -> dict[str, Any] | None:
    if s.assign is None:
        return None
    return s.assign.evaluate(b, "Assign")


def run_simple(
    run: _Run, s: Any, raw: Any, track: _Track, now: float, result: Any
) -> tuple[Any, Any]:
    b = _bindings(run, s, raw, track, now)
    out = _field(s, "Output", b, raw)
    assigned = _assign(s, b) if s.type != "Succeed" else None
    return out, assigned


def fail_fields(run: _Run, s: Any, raw: Any, track: _Track, now: float) -> tuple[Any, Any]:
    b = _bindings(run, s, raw, track, now)
    return _field(s, "Error", b, None), _field(s, "Cause", b, None)


def run_choice(
    run: _Run, s: Any, raw: Any, track: _Track, now: float, entered: int
) -> tuple[Any, str, Any]:
    b = _bindings(run, s, raw, track, now)
    for i, (cond, target, assign, output) in enumerate(s.choices):
        v = cond.evaluate(b, f"Choices/{i}/Condition") if cond is not None else False
        if v is True:
            out = (
                output.evaluate(b, "Output")
                if output is not MISSING
                else _field(s, "Output", b, raw)
            )
            assigned = assign.evaluate(b, "Assign") if assign is not None else _assign(s, b)
            return out, target, assigned
        if v is not False:
            raise EvaluationError(
                f"The JSONata expression specified for the field 'Condition' returned a "
                f"non-boolean value: "
                f"{json.dumps(v)}",
                QEE,
            )
    if s.default is None:
        track.in_state = None
        raise E.StatesError(E.NO_CHOICE_MATCHED, "No Matches!")
    return _field(s, "Output", b, raw), s.default, _assign(s, b)


def run_wait(
    run: _Run, s: Any, raw: Any, track: _Track, now: float, entered: int
) -> tuple[float, Any, Any]:
    b = _bindings(run, s, raw, track, now)
    if "Seconds" in s.j:
        v = s.j["Seconds"].evaluate(b, "Seconds")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 0:
            raise EvaluationError(
                f"The Seconds field must be a non-negative integer, got {json.dumps(v)}", QEE
            )
        seconds = float(v)
    else:
        v = s.j["Timestamp"].evaluate(b, "Timestamp")
        ts = parse_timestamp(v)
        if ts is None:
            raise EvaluationError(
                "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time "
                "format "
                f"string: {v if isinstance(v, str) else json.dumps(v)}",
                QEE,
                "Timestamp",
            )
        seconds = ts.timestamp() - run.clock.now()
    if seconds > 2**31 - 1:
        raise EvaluationError("Wait state delay is too long.", QEE)
    out = _field(s, "Output", b, raw)
    return seconds, out, _assign(s, b)


def _positive(s: Any, name: str, b: dict[str, Any]) -> int | None:
    if name not in s.j:
        return None
    v = s.j[name].evaluate(b, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v <= 0:
        raise EvaluationError(
            f"The {name} field must be a positive integer, got {json.dumps(v)}", QEE
        )
    return int(v)


def run_task_attempt(
    run: _Run, s: Any, raw: Any, track: _Track, now: float, retry: int, entered: int
) -> tuple[Any, Any]:
    from .interpreter import invoke_task

    b = _bindings(run, s, raw, track, now, retry)
    args = _field(s, "Arguments", b, raw)
    timeout = _positive(s, "TimeoutSeconds", b)
    heartbeat = _positive(s, "HeartbeatSeconds", b)
    creds = _field(s, "Credentials", b, None)
    result = invoke_task(run, s, args, track, retry, timeout, heartbeat, creds)
    b["states"]["result"] = to_jsonata(result, _null())
    out = _field(s, "Output", b, result)
    return out, _assign(s, b)


def arguments_input(
    run: _Run, s: Any, raw: Any, track: _Track, now: float, retry: int
) -> tuple[Any, Any]:
    b = _bindings(run, s, raw, track, now, retry)
    return None, _field(s, "Arguments", b, raw)


def finish(run: _Run, s: Any, raw: Any, result: Any, track: _Track, now: float) -> tuple[Any, Any]:
    b = _bindings(run, s, raw, track, now, result=result)
    return _field(s, "Output", b, result), _assign(s, b)


def map_setup(
    run: _Run, s: Any, raw: Any, track: _Track, now: float, retry: int, entered: int
) -> tuple[Any, list[Any], list[Any], int, int, float | None]:
    b = _bindings(run, s, raw, track, now, retry)
    if "Items" in s.j:
        items = s.j["Items"].evaluate(b, "Items")
        if not isinstance(items, list):
            t = s.j["Items"].node
            text = t.text if isinstance(t, Expr) else json.dumps(t)
            raise EvaluationError(
                f"The JSONata expression '{text}' specified for the field 'Items' returned an "
                f"unexpected "
                f"result type. Expected 'array', but was '{_type_name(items)}' for value: "
                f"{json.dumps(items, separators=(',', ':'))}",
                QEE,
                "Items",
            )
    else:
        items = raw
        if not isinstance(items, list):
            raise EvaluationError(
                f"Map state input must be an array but was: "
                f"{json.dumps(items, separators=(',', ':'))}",
                QEE,
            )
    conc = _non_negative(s, "MaxConcurrency", b, 0)
    tol = _non_negative(s, "ToleratedFailureCount", b, None)
    pct: float | None = None
    if "ToleratedFailurePercentage" in s.j:
        v = s.j["ToleratedFailurePercentage"].evaluate(b, "ToleratedFailurePercentage")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
            raise EvaluationError(
                f"The ToleratedFailurePercentage field must be a number between 0 and 100, got "
                f"{json.dumps(v)}",
                QEE,
            )
        pct = float(v)
    inputs = []
    sel = s.j.get("ItemSelector")
    for i, item in enumerate(items):
        if sel is None:
            inputs.append(item)
        else:
            ib = _bindings(
                run, s, raw, track, now, retry, {"Map": {"Item": {"Index": i, "Value": item}}}
            )
            inputs.append(sel.evaluate(ib, "ItemSelector"))
    return None, items, inputs, conc, tol, pct


def _non_negative(s: Any, name: str, b: dict[str, Any], default: Any) -> Any:
    if name not in s.j:
        return default
    v = s.j[name].evaluate(b, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 0:
        raise EvaluationError(
            f"The {name} field must be a non-negative integer, got {json.dumps(v)}", QEE
        )
    return int(v)


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    return "array"


def catch_output(
    run: _Run, s: Any, c: Any, err: Any, raw: Any, track: _Track, now: float
) -> tuple[Any, Any]:
    cause = err.cause
    if cause is None and err.error == E.TIMEOUT:
        cause = ""
    error_output = E.error_output(err.error, cause)
    b = _bindings(run, s, raw, track, now, errorOutput=error_output)
    out = c.output.evaluate(b, "Output") if c.output is not MISSING else error_output
    assigned = c.assign.evaluate(b, "Assign") if c.assign is not None else None
    return out, assigned


__all__ = [
    "Callable",
    "Expr",
    "Tree",
    "compile_assign",
    "compile_condition",
    "compile_expr_tree",
    "compile_state",
]
