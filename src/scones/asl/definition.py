"""Load-time validation (statelint-like) and compilation of a definition into State objects.

Every problem is collected with its JSON-pointer location, then raised together in one
DefinitionError, so a user fixes a definition in one pass.
"""

from __future__ import annotations

import json
from typing import Any

from . import choice as _choice
from .errors import DefinitionError
from .paths import JsonPath, PathSyntaxError
from .resources import classify
from .templates import Template, compile_template, compile_value_expr

JSONPATH = "JSONPath"
JSONATA = "JSONata"

TOP_FIELDS = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
SUB_FIELDS = {"StartAt", "States", "Comment", "ProcessorConfig", "QueryLanguage"}

_COMMON = {"Type", "Comment", "QueryLanguage"}
_IO = {"InputPath", "OutputPath"}
_FLOW = {"Next", "End"}
_JSONATA_IO = {"Output", "Assign"}
FIELDS: dict[str, set[str]] = {
    "Pass": _COMMON | _IO | _FLOW | _JSONATA_IO | {"ResultPath", "Parameters", "Result"},
    "Task": _COMMON
    | _IO
    | _FLOW
    | _JSONATA_IO
    | {
        "ResultPath",
        "Parameters",
        "ResultSelector",
        "Retry",
        "Catch",
        "Resource",
        "TimeoutSeconds",
        "TimeoutSecondsPath",
        "HeartbeatSeconds",
        "HeartbeatSecondsPath",
        "Credentials",
        "Arguments",
    },
    "Choice": _COMMON | _IO | _JSONATA_IO | {"Choices", "Default"},
    "Wait": _COMMON
    | _IO
    | _FLOW
    | _JSONATA_IO
    | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Succeed": _COMMON | _IO | {"Output"},
    "Fail": _COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": _COMMON
    | _IO
    | _FLOW
    | _JSONATA_IO
    | {"ResultPath", "Parameters", "ResultSelector", "Retry", "Catch", "Branches", "Arguments"},
    "Map": _COMMON
    | _IO
    | _FLOW
    | _JSONATA_IO
    | {
        "ResultPath",
        "Parameters",
        "ItemSelector",
        "ResultSelector",
        "Retry",
        "Catch",
        "Iterator",
        "ItemProcessor",
        "ItemsPath",
        "Items",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailureCount",
        "ToleratedFailureCountPath",
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
        "ItemReader",
        "ResultWriter",
        "ItemBatcher",
        "Label",
        "Arguments",
    },
}
# Fields only JSONPath states may use, and fields only JSONata states may use.
JSONPATH_ONLY = {
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "ItemsPath",
    "SecondsPath",
    "TimestampPath",
    "ErrorPath",
    "CausePath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
}
JSONATA_ONLY = {"Arguments", "Output", "Items"}
RETRY_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
CATCH_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Comment", "Assign", "Output"}
_NO_TRANSITION = {"Choice", "Succeed", "Fail"}
_MISSING = object()


class Retrier:
    __slots__ = ("backoff", "errors", "interval", "jitter", "max_attempts", "max_delay")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.errors = tuple(spec["ErrorEquals"])
        self.interval = spec.get("IntervalSeconds", 1)
        self.max_attempts = spec.get("MaxAttempts", 3)
        self.backoff = spec.get("BackoffRate", 2.0)
        self.max_delay = spec.get("MaxDelaySeconds")
        self.jitter = spec.get("JitterStrategy", "NONE")


class Catcher:
    __slots__ = ("assign", "errors", "next", "output", "result_path")

    def __init__(
        self, spec: dict[str, Any], result_path: JsonPath | None, assign: Any, output: Any
    ) -> None:
        self.errors = tuple(spec["ErrorEquals"])
        self.next = spec["Next"]
        self.result_path = result_path  # None means ResultPath: null (discard the error)
        self.assign = assign
        self.output = output


class Machine:
    """A compiled (sub-)machine: the top level, a Parallel branch or a Map processor."""

    __slots__ = ("definition", "query_language", "start_at", "states", "timeout_seconds")

    def __init__(self) -> None:
        self.start_at = ""
        self.states: dict[str, State] = {}
        self.query_language = JSONPATH
        self.timeout_seconds: int | None = None
        self.definition: dict[str, Any] = {}


class State:
    """Compiled state. Attributes not relevant to a type stay at their defaults."""

    def __init__(self, name: str, spec: dict[str, Any], ql: str) -> None:
        self.name = name
        self.type: str = spec.get("Type", "")
        self.spec = spec
        self.ql = ql
        self.next: str | None = spec.get("Next")
        self.end: bool = bool(spec.get("End", False))
        # JSONPath I/O. _MISSING = field absent (default "$"); None = field null.
        self.input_path: Any = _MISSING
        self.output_path: Any = _MISSING
        self.result_path: Any = _MISSING
        self.parameters: Template | None = None
        self.result_selector: Template | None = None
        self.item_selector: Template | None = None
        self.assign: Any = None
        self.result: Any = _MISSING
        self.retriers: list[Retrier] = []
        self.catchers: list[Catcher] = []
        # JSONata
        self.arguments: Any = None
        self.output: Any = _MISSING
        # Type specific
        self.resource: str = spec.get("Resource", "")
        self.timeout: Any = spec.get("TimeoutSeconds")
        self.timeout_path: JsonPath | None = None
        self.heartbeat: Any = spec.get("HeartbeatSeconds")
        self.heartbeat_path: JsonPath | None = None
        self.choices: list[tuple[Any, str, Any, Any]] = []  # (predicate, next, assign, output)
        self.default: str | None = spec.get("Default")
        self.branches: list[Machine] = []
        self.processor: Machine | None = None
        self.items_path: Any = _MISSING
        self.max_concurrency: Any = spec.get("MaxConcurrency", 0)
        self.max_concurrency_path: JsonPath | None = None
        self.tolerated_count: Any = spec.get("ToleratedFailureCount")
        self.tolerated_count_path: JsonPath | None = None
        self.tolerated_pct: Any = spec.get("ToleratedFailurePercentage")
        self.tolerated_pct_path: JsonPath | None = None
        self.legacy_map = "Iterator" in spec
        self.seconds_path: JsonPath | None = None
        self.timestamp_path: JsonPath | None = None
        self.error_path: Any = None
        self.cause_path: Any = None

    def __repr__(self) -> str:
        return f"<{self.type} state {self.name!r}>"


MISSING = _MISSING


def parse_definition(definition: Any) -> dict[str, Any]:
    if isinstance(definition, (str, bytes, bytearray)):
        try:
            definition = json.loads(definition)
        except ValueError as e:
            raise DefinitionError([f": definition is not valid JSON: {e}"]) from None
    if not isinstance(definition, dict):
        raise DefinitionError(
            [f": definition must be a JSON object, got {type(definition).__name__}"]
        )
    return definition


def compile_machine(definition: Any) -> Machine:
    definition = parse_definition(definition)
    problems: list[str] = []
    m = _compile_machine(definition, "", problems, JSONPATH, top=True)
    if problems:
        raise DefinitionError(problems)
    m.definition = definition
    return m


def _ql_of(spec: dict[str, Any], default: str, loc: str, problems: list[str]) -> str:
    ql = spec.get("QueryLanguage", default)
    if ql not in (JSONPATH, JSONATA):
        problems.append(
            f'{loc}/QueryLanguage: must be "JSONPath" or "JSONata", got {json.dumps(ql)}'
        )
        return default
    return str(ql)


def _compile_machine(d: Any, loc: str, problems: list[str], ql: str, top: bool) -> Machine:
    m = Machine()
    if not isinstance(d, dict):
        problems.append(f"{loc or '/'}: must be an object with StartAt and States")
        return m
    allowed = TOP_FIELDS if top else SUB_FIELDS
    for k in d:
        if k not in allowed:
            problems.append(f"{loc}/{k}: unknown field {k!r}")
    m.query_language = _ql_of(d, ql, loc, problems)
    if top and "QueryLanguage" in d and d["QueryLanguage"] == JSONPATH:
        m.query_language = JSONPATH
    if top and "TimeoutSeconds" in d:
        t = d["TimeoutSeconds"]
        if not _is_int(t) or t <= 0:
            problems.append(
                f"{loc}/TimeoutSeconds: must be a positive integer, got {json.dumps(t)}"
            )
        else:
            m.timeout_seconds = t
    states = d.get("States")
    if "StartAt" not in d:
        problems.append(f"{loc}/StartAt: missing required field StartAt")
    elif not isinstance(d["StartAt"], str):
        problems.append(f"{loc}/StartAt: must be a string, got {json.dumps(d['StartAt'])}")
    if not isinstance(states, dict) or not states:
        problems.append(f"{loc}/States: must be a non-empty object of states")
        return m
    start = d.get("StartAt")
    if isinstance(start, str):
        m.start_at = start
        if start not in states:
            problems.append(f"{loc}/StartAt: state {start!r} does not exist")
    for name, spec in states.items():
        sloc = f"{loc}/States/{name}"
        if len(name) > 80:
            problems.append(f"{sloc}: state name is longer than 80 characters")
        m.states[name] = _compile_state(name, spec, sloc, problems, m.query_language, states)
    # Reachability from StartAt.
    if isinstance(start, str) and start in states:
        seen = {start}
        todo = [start]
        while todo:
            cur = states.get(todo.pop())
            if not isinstance(cur, dict):
                continue
            for nxt in _transitions(cur):
                if isinstance(nxt, str) and nxt in states and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        for name in states:
            if name not in seen:
                problems.append(
                    f"{loc}/States/{name}: state {name!r} is not reachable from StartAt"
                )
    return m


def _transitions(spec: dict[str, Any]) -> list[Any]:
    out = [spec.get("Next"), spec.get("Default")]
    for c in spec.get("Choices") or []:
        if isinstance(c, dict):
            out.append(c.get("Next"))
    for c in spec.get("Catch") or []:
        if isinstance(c, dict):
            out.append(c.get("Next"))
    return [x for x in out if x is not None]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _path(
    spec: dict[str, Any],
    key: str,
    loc: str,
    problems: list[str],
    nullable: bool = True,
    reference: bool = False,
) -> Any:
    if key not in spec:
        return _MISSING
    v = spec[key]
    if v is None:
        if not nullable:
            problems.append(f"{loc}/{key}: cannot be null")
        return None
    if not isinstance(v, str):
        problems.append(f"{loc}/{key}: must be a path string, got {json.dumps(v)}")
        return _MISSING
    try:
        p = JsonPath(v)
    except PathSyntaxError as e:
        problems.append(f"{loc}/{key}: invalid path {v!r}: {e}")
        return _MISSING
    if reference and (not p.is_reference or p.root != "$"):
        problems.append(f"{loc}/{key}: {v!r} is not a valid reference path")
        return _MISSING
    return p


def _compile_state(
    name: str, spec: Any, loc: str, problems: list[str], ql: str, siblings: dict[str, Any]
) -> State:
    if not isinstance(spec, dict):
        problems.append(f"{loc}: a state must be an object, got {json.dumps(spec)}")
        return State(name, {}, ql)
    st_type = spec.get("Type")
    if st_type not in FIELDS:
        problems.append(f"{loc}/Type: unknown state type {json.dumps(st_type)}")
        return State(name, spec, ql)
    sql = _ql_of(spec, ql, loc, problems)
    s = State(name, spec, sql)
    for k in spec:
        if k not in FIELDS[st_type]:
            problems.append(f"{loc}/{k}: unknown field {k!r} for a {st_type} state")
        elif sql == JSONATA and k in JSONPATH_ONLY:
            problems.append(f"{loc}/{k}: field {k!r} is not allowed in a JSONata state")
        elif sql == JSONPATH and k in JSONATA_ONLY:
            problems.append(
                f"{loc}/{k}: field {k!r} is not allowed in a JSONPath state (use QueryLanguage "
                f"JSONata)"
            )
    # Transitions.
    if st_type in _NO_TRANSITION:
        for k in ("Next", "End"):
            if k in spec:
                problems.append(f"{loc}/{k}: a {st_type} state cannot have {k}")
    else:
        has_next, has_end = "Next" in spec, spec.get("End") is True
        if "End" in spec and spec["End"] is not True:
            problems.append(f"{loc}/End: must be true, got {json.dumps(spec['End'])}")
        if has_next and has_end:
            problems.append(f"{loc}: a state cannot have both Next and End")
        elif not has_next and not has_end:
            problems.append(f"{loc}: state has neither Next nor End")
        if has_next:
            _check_next(spec["Next"], f"{loc}/Next", problems, siblings)
    # Common JSONPath I/O.
    if sql == JSONPATH:
        s.input_path = _path(spec, "InputPath", loc, problems)
        s.output_path = _path(spec, "OutputPath", loc, problems)
        s.result_path = _path(spec, "ResultPath", loc, problems, reference=True)
        if "Parameters" in spec:
            s.parameters = compile_template(spec["Parameters"], f"{loc}/Parameters", problems)
        if "ResultSelector" in spec:
            s.result_selector = compile_template(
                spec["ResultSelector"], f"{loc}/ResultSelector", problems
            )
        if "ItemSelector" in spec:
            s.item_selector = compile_template(
                spec["ItemSelector"], f"{loc}/ItemSelector", problems
            )
        if "Assign" in spec:
            s.assign = _compile_assign(spec["Assign"], f"{loc}/Assign", problems)
    else:
        from . import jsonata_support

        jsonata_support.compile_state(s, spec, loc, problems)
    if "Result" in spec:
        s.result = spec["Result"]
    if "Retry" in spec:
        s.retriers = _compile_retry(spec["Retry"], f"{loc}/Retry", problems)
    if "Catch" in spec:
        s.catchers = _compile_catch(spec["Catch"], f"{loc}/Catch", problems, siblings, sql)
    _TYPE_COMPILERS[st_type](s, spec, loc, problems, siblings)
    return s


def _check_next(target: Any, loc: str, problems: list[str], siblings: dict[str, Any]) -> None:
    if not isinstance(target, str):
        problems.append(f"{loc}: must be a state name, got {json.dumps(target)}")
    elif target not in siblings:
        problems.append(f"{loc}: state {target!r} does not exist")


def _compile_assign(node: Any, loc: str, problems: list[str]) -> Template | None:
    if not isinstance(node, dict):
        problems.append(f"{loc}: must be an object, got {json.dumps(node)}")
        return None
    for k in node:
        name = k[:-2] if k.endswith(".$") else k
        if not name or name.startswith("$") or not (name[0].isalpha() or name[0] == "_"):
            problems.append(f"{loc}/{k}: invalid variable name {name!r}")
    return compile_template(node, loc, problems)


def _error_equals(spec: dict[str, Any], loc: str, problems: list[str]) -> bool:
    ee = spec.get("ErrorEquals")
    if not isinstance(ee, list) or not ee or not all(isinstance(e, str) for e in ee):
        problems.append(
            f"{loc}/ErrorEquals: must be a non-empty array of error names, got {json.dumps(ee)}"
        )
        return False
    if "States.ALL" in ee and len(ee) != 1:
        problems.append(f"{loc}/ErrorEquals: States.ALL must appear alone")
    return True


# Retrier fields that take a number: (check, what the error says it must be).
_RETRIER_NUMBERS: dict[str, tuple[Any, str]] = {
    "IntervalSeconds": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "MaxAttempts": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "BackoffRate": (lambda v: _is_num(v) and v >= 1, "a number >= 1.0"),
    "MaxDelaySeconds": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
}


def _compile_retry(node: Any, loc: str, problems: list[str]) -> list[Retrier]:
    if not isinstance(node, list):
        problems.append(f"{loc}: must be an array of retriers, got {json.dumps(node)}")
        return []
    out = []
    for i, r in enumerate(node):
        rloc = f"{loc}/{i}"
        if not isinstance(r, dict):
            problems.append(f"{rloc}: a retrier must be an object, got {json.dumps(r)}")
            continue
        ok = _error_equals(r, rloc, problems)
        for k in r:
            if k not in RETRY_FIELDS:
                problems.append(f"{rloc}/{k}: unknown field {k!r} in a retrier")
        for field, (valid, meaning) in _RETRIER_NUMBERS.items():
            if field in r and not valid(r[field]):
                problems.append(f"{rloc}/{field}: must be {meaning}, got {json.dumps(r[field])}")
                ok = False
        if "JitterStrategy" in r and r["JitterStrategy"] not in ("FULL", "NONE"):
            problems.append(
                f'{rloc}/JitterStrategy: must be "FULL" or "NONE", got '
                f"{json.dumps(r['JitterStrategy'])}"
            )
            ok = False
        if ok and "States.ALL" in r.get("ErrorEquals", []) and i != len(node) - 1:
            problems.append(f"{rloc}/ErrorEquals: a States.ALL retrier must be the last one")
        if ok:
            out.append(Retrier(r))
    return out


def _compile_catch(
    node: Any, loc: str, problems: list[str], siblings: dict[str, Any], ql: str
) -> list[Catcher]:
    if not isinstance(node, list):
        problems.append(f"{loc}: must be an array of catchers, got {json.dumps(node)}")
        return []
    out = []
    for i, c in enumerate(node):
        cloc = f"{loc}/{i}"
        if not isinstance(c, dict):
            problems.append(f"{cloc}: a catcher must be an object, got {json.dumps(c)}")
            continue
        ok = _error_equals(c, cloc, problems)
        for k in c:
            if k not in CATCH_FIELDS:
                problems.append(f"{cloc}/{k}: unknown field {k!r} in a catcher")
        if "Next" not in c:
            problems.append(f"{cloc}/Next: missing required field Next")
            ok = False
        else:
            _check_next(c["Next"], f"{cloc}/Next", problems, siblings)
        if ok and "States.ALL" in c["ErrorEquals"] and i != len(node) - 1:
            problems.append(f"{cloc}/ErrorEquals: a States.ALL catcher must be the last one")
        rp = _path(c, "ResultPath", cloc, problems, reference=True)
        if rp is _MISSING:
            rp = JsonPath("$")
        assign: Any = None
        output: Any = _MISSING
        if ql == JSONPATH and "Assign" in c:
            assign = _compile_assign(c["Assign"], f"{cloc}/Assign", problems)
        elif ql == JSONATA:
            from . import jsonata_support

            if "Assign" in c:
                assign = jsonata_support.compile_assign(c["Assign"], f"{cloc}/Assign", problems)
            if "Output" in c:
                output = jsonata_support.compile_expr_tree(c["Output"], f"{cloc}/Output", problems)
        if ok:
            out.append(Catcher(c, rp, assign, output))
    return out


def _no_extra(
    s: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    return None


def _compile_task(
    s: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    res = spec.get("Resource")
    if isinstance(res, str):
        s.kind = classify(res)  # type: ignore[attr-defined]
    if not isinstance(res, str) or not res:
        problems.append(f"{loc}/Resource: missing or not a string: {json.dumps(res)}")
    elif s.ql == JSONPATH and not res.startswith("arn:"):
        problems.append(f"{loc}/Resource: {res!r} is not an ARN")
    for field, pfield in (
        ("TimeoutSeconds", "TimeoutSecondsPath"),
        ("HeartbeatSeconds", "HeartbeatSecondsPath"),
    ):
        if field in spec and pfield in spec:
            problems.append(f"{loc}: {field} and {pfield} cannot both be set")
        v = spec.get(field)
        if v is not None and s.ql == JSONPATH and (not _is_int(v) or v <= 0):
            problems.append(f"{loc}/{field}: must be a positive integer, got {json.dumps(v)}")
    tp = _path(spec, "TimeoutSecondsPath", loc, problems, nullable=False)
    s.timeout_path = tp if isinstance(tp, JsonPath) else None
    hp = _path(spec, "HeartbeatSecondsPath", loc, problems, nullable=False)
    s.heartbeat_path = hp if isinstance(hp, JsonPath) else None
    if s.ql == JSONPATH and "Credentials" in spec:
        cred = spec["Credentials"]
        if not isinstance(cred, dict):
            problems.append(f"{loc}/Credentials: must be an object")
        else:
            s.spec = dict(spec)
            s.credentials = compile_template(cred, f"{loc}/Credentials", problems)  # type: ignore[attr-defined]


def _compile_choice(
    s: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    choices = spec.get("Choices")
    if not isinstance(choices, list) or not choices:
        problems.append(f"{loc}/Choices: must be a non-empty array of choice rules")
        choices = []
    for i, rule in enumerate(choices):
        rloc = f"{loc}/Choices/{i}"
        if not isinstance(rule, dict):
            problems.append(f"{rloc}: a choice rule must be an object")
            continue
        if "Next" not in rule:
            problems.append(f"{rloc}/Next: missing required field Next")
        else:
            _check_next(rule["Next"], f"{rloc}/Next", problems, siblings)
        assign: Any = None
        output: Any = _MISSING
        if s.ql == JSONPATH:
            pred = _choice.compile_rule(rule, rloc, problems, True)
            if "Assign" in rule:
                assign = _compile_assign(rule["Assign"], f"{rloc}/Assign", problems)
        else:
            from . import jsonata_support

            pred = jsonata_support.compile_condition(rule, rloc, problems)
            if "Assign" in rule:
                assign = jsonata_support.compile_assign(rule["Assign"], f"{rloc}/Assign", problems)
            if "Output" in rule:
                output = jsonata_support.compile_expr_tree(
                    rule["Output"], f"{rloc}/Output", problems
                )
        s.choices.append((pred, rule.get("Next"), assign, output))
    if "Default" in spec:
        _check_next(spec["Default"], f"{loc}/Default", problems, siblings)


def _compile_wait(
    s: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    kinds = [k for k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if k in spec]
    if len(kinds) != 1:
        problems.append(
            f"{loc}: a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, "
            f"TimestampPath; got {kinds or 'none'}"
        )
    if s.ql == JSONPATH:
        if "Seconds" in spec and (not _is_int(spec["Seconds"]) or spec["Seconds"] < 0):
            problems.append(
                f"{loc}/Seconds: must be a non-negative integer, got {json.dumps(spec['Seconds'])}"
            )
        if "Timestamp" in spec and _choice.parse_timestamp(spec["Timestamp"]) is None:
            problems.append(
                f"{loc}/Timestamp: {json.dumps(spec['Timestamp'])} is not an ISO-8601 timestamp"
            )
    p = _path(spec, "SecondsPath", loc, problems, nullable=False)
    s.seconds_path = p if isinstance(p, JsonPath) else None
    p = _path(spec, "TimestampPath", loc, problems, nullable=False)
    s.timestamp_path = p if isinstance(p, JsonPath) else None


def _compile_fail(
    s: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    for f, pf in (("Error", "ErrorPath"), ("Cause", "CausePath")):
        if f in spec and pf in spec:
            problems.append(f"{loc}: {f} and {pf} cannot both be set")
        if s.ql == JSONPATH and f in spec and not isinstance(spec[f], str):
            problems.append(f"{loc}/{f}: must be a string, got {json.dumps(spec[f])}")
        if pf in spec:
            ev = compile_value_expr(spec[pf], pf, f"{loc}/{pf}", problems)
            if pf == "ErrorPath":
                s.error_path = ev
            else:
                s.cause_path = ev


def _compile_parallel(
    s: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    branches = spec.get("Branches")
    if not isinstance(branches, list) or not branches:
        problems.append(f"{loc}/Branches: must be a non-empty array of branches")
        return
    for i, b in enumerate(branches):
        s.branches.append(_compile_machine(b, f"{loc}/Branches/{i}", problems, s.ql, top=False))


def _compile_map(
    s: State, spec: dict[str, Any], loc: str, problems: list[str], siblings: dict[str, Any]
) -> None:
    proc_key = (
        "ItemProcessor" if "ItemProcessor" in spec else "Iterator" if "Iterator" in spec else None
    )
    if proc_key is None:
        problems.append(f"{loc}: a Map state needs an ItemProcessor (or Iterator)")
    elif "ItemProcessor" in spec and "Iterator" in spec:
        problems.append(f"{loc}: ItemProcessor and Iterator cannot both be set")
    else:
        proc = spec[proc_key]
        s.processor = _compile_machine(proc, f"{loc}/{proc_key}", problems, s.ql, top=False)
        cfg = proc.get("ProcessorConfig") if isinstance(proc, dict) else None
        if isinstance(cfg, dict):
            mode = cfg.get("Mode", "INLINE")
            s.distributed = mode == "DISTRIBUTED"  # type: ignore[attr-defined]
            if mode not in ("INLINE", "DISTRIBUTED"):
                problems.append(
                    f"{loc}/{proc_key}/ProcessorConfig/Mode: must be INLINE or DISTRIBUTED, got "
                    f"{json.dumps(mode)}"
                )
    if "Parameters" in spec and "ItemSelector" in spec:
        problems.append(f"{loc}: Parameters and ItemSelector cannot both be set")
    if s.parameters is not None and s.item_selector is None:
        # In a Map state, Parameters is the legacy name of ItemSelector.
        s.item_selector, s.parameters = s.parameters, None
    if s.ql == JSONPATH:
        s.items_path = _path(spec, "ItemsPath", loc, problems, nullable=False)
        mc = spec.get("MaxConcurrency")
        if mc is not None and (not _is_int(mc) or mc < 0):
            problems.append(
                f"{loc}/MaxConcurrency: must be a non-negative integer, got {json.dumps(mc)}"
            )
        tc = spec.get("ToleratedFailureCount")
        if tc is not None and (not _is_int(tc) or tc < 0):
            problems.append(
                f"{loc}/ToleratedFailureCount: must be a non-negative integer, got {json.dumps(tc)}"
            )
        tp = spec.get("ToleratedFailurePercentage")
        if tp is not None and (not _is_num(tp) or not 0 <= tp <= 100):
            problems.append(
                f"{loc}/ToleratedFailurePercentage: must be a number between 0 and 100, got "
                f"{json.dumps(tp)}"
            )
    for key, attr in (
        ("MaxConcurrencyPath", "max_concurrency_path"),
        ("ToleratedFailureCountPath", "tolerated_count_path"),
        ("ToleratedFailurePercentagePath", "tolerated_pct_path"),
    ):
        p = _path(spec, key, loc, problems, nullable=False)
        if isinstance(p, JsonPath):
            setattr(s, attr, p)
    if "MaxConcurrency" in spec and "MaxConcurrencyPath" in spec:
        problems.append(f"{loc}: MaxConcurrency and MaxConcurrencyPath cannot both be set")


_TYPE_COMPILERS = {
    "Pass": _no_extra,
    "Succeed": _no_extra,
    "Task": _compile_task,
    "Choice": _compile_choice,
    "Wait": _compile_wait,
    "Fail": _compile_fail,
    "Parallel": _compile_parallel,
    "Map": _compile_map,
}


def iter_states(m: Machine) -> Any:
    """Every state, nested ones included."""
    for s in m.states.values():
        yield s
        for b in s.branches:
            yield from iter_states(b)
        if s.processor is not None:
            yield from iter_states(s.processor)
