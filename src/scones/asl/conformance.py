"""Run recorded AWS Step Functions executions on scones.asl and compare the outcomes.

    python -m scones.asl.conformance CASES_DIR [--json]

Each case (format described in the cases' README) is executed with its Task results
replayed from the recording, then status, error, cause, output and the history's event
types are compared after the README's normalisations. Nothing here knows individual
cases: the same generic replay and comparison apply to every file.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as _dt
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import execute, load
from .clock import FakeClock
from .errors import DefinitionError, StatesError, TaskTimedOut
from .execution import ExecutionConfig
from .resources import Resources, TaskRequest

CASE_TIMEOUT_S = 10.0
_ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}(:?\d{2})?)")
_TOKEN_RE = re.compile(r"<[^<>\s\"]+>")
_PARALLEL_END = {"ParallelStateSucceeded", "ParallelStateFailed", "ParallelStateAborted"}
FIELDS = ("status", "error", "cause", "output", "event_types", "task_inputs")


# --- normalisation and placeholder-aware comparison ---


def _date_or_keep(m: re.Match[str]) -> str:
    """The recordings replaced only real date-times (an hour of 25 stayed), so do the same."""
    text = m.group(0)
    try:
        _dt.datetime.fromisoformat(text.replace("Z", "+00:00")[:19])
    except ValueError:
        return text
    return "date"


class Normaliser:
    def __init__(self, case: dict[str, Any]) -> None:
        norm = case.get("normalisation") or {}
        self.replacements = [(re.compile(p), r) for p, r in norm.get("replacements") or []]
        tokens = set(norm.get("placeholders") or [])
        tokens.update(r for _, r in norm.get("replacements") or [])
        for jr in norm.get("jsonpath_replacements") or []:
            if isinstance(jr, dict) and isinstance(jr.get("replacement"), str):
                tokens.add(jr["replacement"])
        tokens.update({"date", "timestamp"})
        self.tokens = {t for t in tokens if t}

    def value(self, v: Any) -> Any:
        text = json.dumps(v, ensure_ascii=False)
        for rx, rep in self.replacements:
            text = rx.sub(rep.replace("\\", "\\\\"), text)
        text = _ISO_RE.sub(_date_or_keep, text)
        return json.loads(text)

    def is_token(self, s: str) -> bool:
        return s in self.tokens or bool(_TOKEN_RE.fullmatch(s))

    def match(self, expected: Any, got: Any) -> bool:
        if isinstance(expected, str):
            if got == expected or self.is_token(expected):
                return True
            if not isinstance(got, str):
                return False
            return self._pattern(expected).fullmatch(got) is not None
        if isinstance(expected, bool) or expected is None:
            return type(got) is type(expected) and got == expected
        if isinstance(expected, (int, float)):
            return isinstance(got, (int, float)) and not isinstance(got, bool) and got == expected
        if isinstance(expected, list):
            return (
                isinstance(got, list)
                and len(got) == len(expected)
                and all(self.match(e, g) for e, g in zip(expected, got, strict=True))
            )
        if isinstance(expected, dict):
            return (
                isinstance(got, dict)
                and got.keys() == expected.keys()
                and all(self.match(expected[k], got[k]) for k in expected)
            )
        return bool(expected == got)

    def _pattern(self, expected: str) -> re.Pattern[str]:
        toks = sorted((t for t in self.tokens if t in expected), key=len, reverse=True)
        toks += [m.group(0) for m in _TOKEN_RE.finditer(expected) if m.group(0) not in toks]
        if not toks:
            return re.compile(re.escape(expected), re.S)
        alt = "|".join(re.escape(t) for t in toks)
        parts = re.split(f"({alt})", expected)
        rx = "".join(".+?" if i % 2 else re.escape(p) for i, p in enumerate(parts))
        return re.compile(rx, re.S)


# --- replaying recorded Task results ---


class ReplayResources(Resources):
    """Answers every Task from the case's recorded task_results."""

    def __init__(self, case: dict[str, Any], norm: Normaliser) -> None:
        super().__init__()
        self.entries = list(case.get("task_results") or [])
        self.used = [False] * len(self.entries)
        self.norm = norm
        self.lock = threading.Lock()
        # Every Task attempt's normalised parameters, and whether a recorded entry for the
        # same state had equal parameters (the "task inputs" dimension).
        self.requests: list[dict[str, Any]] = []

    def invoker(self, resource: str) -> Any:
        return self._replay

    def missing(self, resources: list[tuple[str, str, Any]]) -> list[str]:
        return []

    def _pick(self, req: TaskRequest) -> dict[str, Any] | None:
        params = self.norm.value(req.parameters)
        with self.lock:
            first = None
            for i, e in enumerate(self.entries):
                if self.used[i] or e.get("state") != req.state_name:
                    continue
                if first is None:
                    first = i
                if self.norm.match(e.get("parameters"), params):
                    self.used[i] = True
                    self._record(req.state_name, params, True)
                    return e
            self._record(req.state_name, params, False)
            if first is not None:
                self.used[first] = True
                return self.entries[first]
        return None

    def _record(self, state: str, parameters: Any, matched: bool) -> None:
        self.requests.append({"state": state, "parameters": parameters, "matched": matched})

    def task_inputs_match(self) -> bool | None:
        """Whether every recorded Task input was sent, and nothing else (None: no Tasks)."""
        if not self.entries and not self.requests:
            return None
        return len(self.requests) == len(self.entries) and all(r["matched"] for r in self.requests)

    def _replay(self, req: TaskRequest) -> Any:
        e = self._pick(req)
        if e is None:
            raise StatesError(
                "States.Runtime", f"no recorded task result left for state '{req.state_name}'"
            )
        if "submitted_output" in e and req.submitted is not None:
            req.submitted(e["submitted_output"])
        outcome = e.get("outcome")
        if outcome == "succeeded":
            return e.get("output")
        cause = e.get("cause_text", e.get("cause"))
        if cause is not None and not isinstance(cause, str):
            cause = json.dumps(cause)
        if outcome == "timed_out":
            err = TaskTimedOut(cause)
            err.error = e.get("error") or "States.Timeout"
            raise err
        raise StatesError(e.get("error"), cause)


# --- running and comparing one case ---


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    norm = Normaliser(case)
    ctx = case.get("context") or {}
    config = ExecutionConfig(
        account_id=ctx.get("account_id", "111111111111"),
        region=ctx.get("region", "us-east-1"),
        partition=ctx.get("partition", "aws"),
        state_machine_name=ctx.get("state_machine_name", "StateMachine"),
        role_arn=ctx.get("role_arn"),
        state_machine_arn=ctx.get("state_machine_arn"),
        execution_arn=ctx.get("execution_arn"),
    )
    inp = case["test_input"] if "test_input" in case else case.get("input")
    resources = ReplayResources(case, norm)
    try:
        machine = load(case["definition"])
    except DefinitionError as e:
        return {
            "status": "DEFINITION_ERROR",
            "error": None,
            "cause": str(e),
            "output": None,
            "event_types": [],
            "task_inputs": [],
            "task_inputs_match": False if case.get("task_results") else None,
        }
    ex = execute(
        machine,
        inp,
        resources,
        name=ctx.get("execution_name"),
        clock=FakeClock(_case_now(case)),
        config=config,
    )
    return {
        "status": ex.status,
        "error": ex.error,
        "cause": ex.cause,
        "output": ex.output,
        "event_types": ex.event_types,
        "task_inputs": [
            {"state": r["state"], "parameters": r["parameters"]} for r in resources.requests
        ],
        "task_inputs_match": resources.task_inputs_match(),
    }


def _case_now(case: dict[str, Any]) -> float:
    """The instant the execution is taken to start: when AWS recorded it.

    Using the recording date (not the wall clock) keeps each case reproducible: a Wait until
    a timestamp a fixed distance ahead must give the same answer on any day.
    """
    text = (case.get("source") or {}).get("recorded_date")
    if isinstance(text, str):
        try:
            d = _dt.datetime.strptime(text, "%d-%m-%Y, %H:%M:%S").replace(tzinfo=_dt.UTC)
            return d.timestamp()
        except ValueError:
            pass
    return time.time()


def _run_with_timeout(case: dict[str, Any], timeout: float) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["r"] = run_case(case)
        except BaseException as e:  # reported as a failed case, never crashes the run
            box["r"] = {
                "status": "HARNESS_ERROR",
                "error": type(e).__name__,
                "cause": str(e),
                "output": None,
                "event_types": [],
                "task_inputs": [],
                "task_inputs_match": False,
            }

    t = threading.Thread(target=target, daemon=True, name="asl-conformance-case")
    t.start()
    t.join(timeout)
    if "r" not in box:
        return {
            "status": "HARNESS_TIMEOUT",
            "error": None,
            "cause": f"case exceeded {timeout}s",
            "output": None,
            "event_types": [],
            "task_inputs": [],
            "task_inputs_match": False,
        }
    return box["r"]


def compare(case: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """Per-field verdicts: True/False, or None when the field is not comparable."""
    norm = Normaliser(case)
    exp = case["expected"]
    v: dict[str, Any] = {}
    v["status"] = got["status"] == exp["status"]
    v["error"] = got["error"] == exp.get("error") if exp["status"] != "SUCCEEDED" else True
    if exp["status"] != "SUCCEEDED":
        ec = exp.get("cause")
        gc = got["cause"]
        if gc is not None:
            gc = norm.value(gc)
            if isinstance(ec, (dict, list)) and isinstance(gc, str):
                with contextlib.suppress(ValueError):
                    gc = json.loads(gc)
        v["cause"] = norm.match(ec, gc) if ec is not None else gc is None
    else:
        v["cause"] = True
    v["output"] = (
        norm.match(exp.get("output"), norm.value(got["output"]))
        if exp["status"] == "SUCCEEDED"
        else True
    )
    mode = (case.get("normalisation") or {}).get("event_type_comparison", "none")
    hist = exp.get("history")
    if mode == "none" or not hist:
        v["event_types"] = None
    else:
        want = [e["type"] for e in hist]
        have = list(got["event_types"])
        if mode == "multiset":
            want = [t for t in want if t not in _PARALLEL_END]
            have = [t for t in have if t not in _PARALLEL_END]
            v["event_types"] = collections.Counter(want) == collections.Counter(have)
        else:
            v["event_types"] = want == have
    # Task inputs: the evaluated Parameters/Arguments of every attempt against the recorded ones.
    v["task_inputs"] = got.get("task_inputs_match")
    return v


def _expected_field(case: dict[str, Any], field: str) -> Any:
    exp = case["expected"]
    if field == "task_inputs":
        return [
            {"state": e.get("state"), "parameters": e.get("parameters")}
            for e in case.get("task_results") or []
        ]
    if field == "event_types":
        return [e["type"] for e in exp.get("history") or []]
    if field == "cause":
        return exp.get("cause")
    return exp.get(field)


def _new_group() -> dict[str, int]:
    return {
        "cases": 0,
        "status_error_cause_output": 0,
        "event_types_comparable": 0,
        "status_error_cause_output_event_types": 0,
        "task_inputs_comparable": 0,
        "task_inputs": 0,
    }


def run_all(cases_dir: Path, timeout: float = CASE_TIMEOUT_S) -> dict[str, Any]:
    files = sorted(cases_dir.glob("*.json"))
    overall = _new_group()
    by_area: dict[str, dict[str, int]] = {}
    by_ql: dict[str, dict[str, int]] = {"JSONPath": _new_group(), "JSONata": _new_group()}
    failed: list[dict[str, Any]] = []
    event_types_match = 0
    for f in files:
        case = json.loads(f.read_text(encoding="utf-8"))
        got = _run_with_timeout(case, timeout)
        v = compare(case, got)
        seco = all(v[k] for k in ("status", "error", "cause", "output"))
        comparable = v["event_types"] is not None
        full = seco and v["event_types"] is not False
        if comparable and v["event_types"]:
            event_types_match += 1
        groups = [
            overall,
            by_area.setdefault(case.get("area", "?"), _new_group()),
            by_ql.setdefault(case.get("query_language", "JSONPath"), _new_group()),
        ]
        for g in groups:
            g["cases"] += 1
            g["status_error_cause_output"] += seco
            g["event_types_comparable"] += comparable
            g["status_error_cause_output_event_types"] += full
            g["task_inputs_comparable"] += v["task_inputs"] is not None
            g["task_inputs"] += v["task_inputs"] is True
        for field in FIELDS:
            if v[field] is False:
                failed.append(
                    {
                        "file": f.name,
                        "field": field,
                        "expected": _expected_field(case, field),
                        "got": got.get(field)
                        if field != "cause" or got["cause"] is None
                        else got["cause"],
                    }
                )
    return {
        "overall": overall,
        "by_area": dict(sorted(by_area.items())),
        "by_query_language": by_ql,
        "failed": failed,
        "event_types_match": event_types_match,
    }


def _table(report: dict[str, Any]) -> str:
    rows = [("overall", report["overall"])]
    rows += [(f"  {k}", g) for k, g in report["by_query_language"].items()]
    rows += [(f"area {k}", g) for k, g in report["by_area"].items()]
    head = (
        f"{'group':<28}{'cases':>7}{'S/E/C/O':>10}{'hist.cmp':>10}{'S/E/C/O+types':>15}"
        f"{'tasks.cmp':>11}{'task inputs':>13}"
    )
    lines = [head, "-" * len(head)]
    for name, g in rows:
        lines.append(
            f"{name:<28}{g['cases']:>7}{g['status_error_cause_output']:>10}"
            f"{g['event_types_comparable']:>10}{g['status_error_cause_output_event_types']:>15}"
            f"{g['task_inputs_comparable']:>11}{g['task_inputs']:>13}"
        )
    lines.append("")
    lines.append(f"comparable histories whose event types match: {report['event_types_match']}")
    if report["failed"]:
        lines.append("")
        lines.append("failures:")
        for f in report["failed"]:
            exp = json.dumps(f["expected"], ensure_ascii=False)
            got = json.dumps(f["got"], ensure_ascii=False, default=str)
            lines.append(
                f"  {f['file']} [{f['field']}]\n    expected: {exp[:300]}\n    got:      "
                f"{got[:300]}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m scones.asl.conformance", description=__doc__.splitlines()[0]
    )
    ap.add_argument("cases_dir", type=Path)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--timeout", type=float, default=CASE_TIMEOUT_S, help="per-case timeout in seconds"
    )
    args = ap.parse_args(argv)
    if not args.cases_dir.is_dir():
        print(f"not a directory: {args.cases_dir}", file=sys.stderr)
        return 2
    report = run_all(args.cases_dir, args.timeout)
    if args.json:
        out = {k: report[k] for k in ("overall", "by_area", "by_query_language", "failed")}
        print(json.dumps(out, ensure_ascii=False, default=str))
    else:
        print(_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
