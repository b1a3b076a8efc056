"""Runs a compiled machine and records the history the way Step Functions does."""

from __future__ import annotations

import datetime as _dt
import json
import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import errors as E
from .choice import parse_timestamp
from .clock import Clock, SystemClock, is_real
from .definition import MISSING, Catcher, Machine, State
from .errors import ExecutionAborted, ExecutionTimedOut, StatesError, TaskTimedOut
from .paths import JsonPath, PathNotFound, PathWriteError, set_path
from .resources import LAMBDA_INVOKE, ResourceKind, Resources, TaskRequest
from .templates import EvaluationError, Scope, UndefinedVariable, Variables

PAYLOAD_LIMIT = 256 * 1024
HISTORY_LIMIT = 25_000
_MAX_WAIT = 2**31 - 1
_MAP_THREAD_CAP = 40
_RETRIABLE = frozenset(
    {"Task", "Parallel", "Map"}
)  # inline Map runs at most 40 iterations at once on AWS

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
ABORTED = "ABORTED"

_ROOT = JsonPath("$")
_NOTHING = object()  # no payload encoded yet on a track
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str:
    return _dumps(value)


def _compose(value: Any, known: Any, known_text: str) -> str:
    """JSON text of `value`, reusing `known_text` for a top-level member that is `known`.

    Byte for byte what _dumps(value) gives: a Task's Parameters usually embed the state's
    input ("Payload.$": "$"), already encoded for the StateEntered event.
    """
    if type(value) is not dict or not any(v is known for v in value.values()):
        return _dumps(value)
    if not all(type(k) is str for k in value):
        return _dumps(value)  # the encoder converts other keys; leave that to it
    return (
        "{"
        + ",".join(
            _dumps(k) + ":" + (known_text if v is known else _dumps(v)) for k, v in value.items()
        )
        + "}"
    )


def _too_big(text: str) -> bool:
    n = len(text)
    if n > PAYLOAD_LIMIT:
        return True
    if n * 4 <= PAYLOAD_LIMIT:  # a character is at most 4 UTF-8 bytes
        return False
    return len(text.encode("utf-8")) > PAYLOAD_LIMIT


def _iso(t: float) -> str:
    d = _dt.datetime.fromtimestamp(t, _dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class ExecutionConfig:
    """Identity of the execution: account, region and names that show up in ARNs and $$."""

    account_id: str = "123456789012"
    region: str = "us-east-1"
    partition: str = "aws"
    state_machine_name: str = "StateMachine"
    role_arn: str | None = None
    state_machine_arn: str | None = None
    execution_arn: str | None = None


class Execution:
    """The outcome of one execution: status, output, error, cause and the history."""

    def __init__(self, name: str, arn: str, input: Any) -> None:
        self.name = name
        self.arn = arn
        self.input = input
        self.status = "RUNNING"
        self.output: Any = None
        self.output_json: str | None = None
        self.error: str | None = None
        self.cause: str | None = None
        self.history: list[dict[str, Any]] = []
        self.start_date: float = 0.0
        self.stop_date: float | None = None

    @property
    def event_types(self) -> list[str]:
        return [e["type"] for e in self.history]

    def __repr__(self) -> str:
        return f"<Execution {self.name} {self.status}>"


class _Track:
    """One thread of execution (top level, a branch or an iteration)."""

    __slots__ = (
        "abort",
        "entered_prev",
        "in_state",
        "last_payload",
        "last_text",
        "prev",
        "silent",
        "vars",
    )

    def __init__(self, prev: int, abort: threading.Event | None, vars: Variables) -> None:
        # The payload last written to this track's history and its JSON text: a state's
        # output is the next state's input, encoded once for both events. Payloads are never
        # mutated (paths copy, handlers get copies), so identity means the same text.
        self.last_payload: Any = _NOTHING
        self.last_text = ""
        self.silent = False
        self.entered_prev = prev
        self.prev = prev
        self.abort = abort
        self.vars = vars
        self.in_state: str | None = None


class _Run:
    """Per-execution mutable state shared by all tracks."""

    def __init__(
        self,
        machine: Machine,
        resources: Resources,
        clock: Clock,
        execution: Execution,
        config: ExecutionConfig,
        sm_arn: str,
        role_arn: str,
    ) -> None:
        self.machine = machine
        self.resources = resources
        self.clock = clock
        self.real = is_real(clock)
        self.ex = execution
        self.config = config
        self.sm_arn = sm_arn
        self.role_arn = role_arn
        self.events = execution.history
        self.lock = threading.Lock()
        self.deadline: float | None = None
        self.start_iso = ""
        self.input = execution.input
        self.timed_out = threading.Event()

    # --- history ---

    def emit(
        self,
        track: _Track,
        etype: str,
        key: str | None = None,
        details: Any = None,
        prev: int | None = None,
    ) -> int:
        if track.silent:
            return track.prev
        ts = _dt.datetime.fromtimestamp(self.clock.now(), _dt.UTC)
        with self.lock:
            eid = len(self.events) + 1
            if eid > HISTORY_LIMIT and not etype.startswith("Execution"):
                # AWS caps a history at 25,000 events; this also stops runaway loops.
                raise _Terminal(
                    E.RUNTIME,
                    "The execution reached the maximum number of history events "
                    f"({HISTORY_LIMIT}).",
                )
            ev = {
                "timestamp": ts,
                "type": etype,
                "id": eid,
                "previousEventId": track.prev if prev is None else prev,
            }
            if key is not None:
                ev[key] = details
            self.events.append(ev)
        track.prev = eid
        return eid

    # --- context object ---

    def ctx_fn(
        self, state: State, entered: float, retry: int, extra: dict[str, Any] | None = None
    ) -> Callable[[], dict[str, Any]]:
        def build() -> dict[str, Any]:
            st: dict[str, Any] = {"Name": state.name, "EnteredTime": _iso(entered)}
            if state.type in _RETRIABLE:
                st["RetryCount"] = retry
            c = {
                "Execution": {
                    "Id": self.ex.arn,
                    "Input": self.input,
                    "StartTime": self.start_iso,
                    "Name": self.ex.name,
                    "RoleArn": self.role_arn,
                    "RedriveCount": 0,
                },
                "StateMachine": {"Id": self.sm_arn, "Name": self.config.state_machine_name},
                "State": st,
            }
            if state.type == "Task":
                c["Task"] = {"Token": self.task_token(state.name, retry)}
            if extra:
                c.update(extra)
            return c

        return build

    def task_token(self, state: str, retry: int) -> str:
        # Opaque and unique per execution, state and attempt, like AWS's tokens.
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{self.ex.arn}/{state}/{retry}").hex

    # --- liveness ---

    def check(self, track: _Track) -> None:
        if self.deadline is not None and self.clock.now() >= self.deadline:
            self.timed_out.set()
            raise ExecutionTimedOut()
        if self.timed_out.is_set():
            raise ExecutionTimedOut()
        if track.abort is not None and track.abort.is_set():
            raise ExecutionAborted()

    def sleep(self, seconds: float, track: _Track) -> None:
        """Sleep, but wake for the machine deadline or an abort."""
        if seconds <= 0:
            self.check(track)
            return
        limit = seconds
        if self.deadline is not None:
            limit = min(limit, max(0.0, self.deadline - self.clock.now()))
        if self.real and track.abort is not None:
            track.abort.wait(limit)
        else:
            self.clock.sleep(limit)
        self.check(track)

    # --- running machines ---

    def run_machine(self, m: Machine, input: Any, track: _Track) -> Any:
        name = m.start_at
        states = m.states
        while True:
            self.check(track)
            state = states[name]
            out, nxt = self.run_state(state, input, track)
            if nxt is None:
                return out
            name, input = nxt, out

    def run_state(self, state: State, raw: Any, track: _Track) -> tuple[Any, str | None]:
        t = state.type
        now = self.clock.now()
        track.entered_prev = track.prev
        if raw is track.last_payload:
            text = track.last_text
        else:
            text = _dumps(raw)
            track.last_payload, track.last_text = raw, text
        entered = self.emit(
            track,
            t + "StateEntered",
            "stateEnteredEventDetails",
            {"name": state.name, "input": text, "inputDetails": {"truncated": False}},
        )
        track.in_state = state.name
        try:
            return _DISPATCH[t](self, state, raw, track, entered, now)
        except EvaluationError as e:
            raise eval_failure(self, state, track, entered, e) from None
        except ExecutionAborted:
            if track.in_state == state.name:
                self.emit(track, t + "StateAborted")
                track.in_state = None
            raise

    # --- shared data flow ---

    def scope(
        self,
        state: State,
        input: Any,
        track: _Track,
        entered_time: float,
        retry: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> Scope:
        return Scope(input, self.ctx_fn(state, entered_time, retry, extra), track.vars)

    def input_path(self, state: State, raw: Any, scope: Scope) -> Any:
        p = state.input_path
        if p is MISSING:
            return raw
        if p is None:
            return {}
        return _apply_path(p, scope, raw)

    def output(self, state: State, raw: Any, result: Any, scope: Scope) -> Any:
        rp = state.result_path
        if rp is MISSING:
            out = result
        elif rp is None:
            out = raw
        else:
            try:
                out = set_path(raw, rp, result)
            except PathWriteError as e:
                raise EvaluationError(f"Invalid path '{rp.text}' : {e}") from None
        op = state.output_path
        if op is MISSING:
            return out
        if op is None:
            return {}
        return _apply_path(op, scope.with_input(out), out)

    def assign(self, template: Any, scope: Scope, track: _Track) -> dict[str, Any] | None:
        if template is None:
            return None
        return template.evaluate(scope)

    def exit(
        self,
        state: State,
        output: Any,
        track: _Track,
        assigned: dict[str, Any] | None,
        entered: int,
    ) -> None:
        text = _dumps(output)
        if _too_big(text):
            raise _data_limit(state.name)
        track.last_payload, track.last_text = output, text
        details: dict[str, Any] = {
            "name": state.name,
            "output": text,
            "outputDetails": {"truncated": False},
        }
        if assigned:
            track.vars.local.update(assigned)
            details["assignedVariables"] = {k: _dumps(v) for k, v in assigned.items()}
            details["assignedVariablesDetails"] = {"truncated": False}
        track.in_state = None
        self.emit(track, state.type + "StateExited", "stateExitedEventDetails", details)

    # --- retry / catch ---

    def with_retry(
        self,
        state: State,
        track: _Track,
        attempt: Callable[[int], Any],
        on_final_failure: Callable[[], None] | None = None,
    ) -> Any:
        counts = [0] * len(state.retriers)
        retry_count = 0
        while True:
            try:
                return attempt(retry_count)
            except StatesError as e:
                if e.terminal:
                    raise
                idx = _match_retrier(state, e.error)
                if idx is None or counts[idx] >= state.retriers[idx].max_attempts:
                    if on_final_failure is not None:
                        on_final_failure()
                    raise
                r = state.retriers[idx]
                delay = r.interval * (r.backoff ** counts[idx])
                if r.max_delay is not None:
                    delay = min(delay, r.max_delay)
                if r.jitter == "FULL":
                    delay = random.uniform(0, delay)
                counts[idx] += 1
                retry_count += 1
                self.sleep(delay, track)

    def catch(
        self,
        state: State,
        err: StatesError,
        raw: Any,
        track: _Track,
        entered: int,
        entered_time: float,
    ) -> tuple[Any, str] | None:
        if err.terminal or not state.catchers:
            return None
        for c in state.catchers:
            if _matches(c.errors, err.error):
                return self._apply_catcher(state, c, err, raw, track, entered, entered_time)
        return None

    def _apply_catcher(
        self,
        state: State,
        c: Catcher,
        err: StatesError,
        raw: Any,
        track: _Track,
        entered: int,
        entered_time: float,
    ) -> tuple[Any, str]:
        cause = err.cause
        if cause is None and err.error == E.TIMEOUT:
            cause = ""  # AWS hands Catch an empty Cause for timeouts
        error_output = E.error_output(err.error, cause)
        if state.ql == "JSONata":
            from . import jsonata_support

            out, assigned = jsonata_support.catch_output(
                self, state, c, err, raw, track, entered_time
            )
        else:
            out = raw if c.result_path is None else set_path(raw, c.result_path, error_output)
            assigned = None
            if c.assign is not None:
                scope = self.scope(state, error_output, track, entered_time)
                try:
                    assigned = c.assign.evaluate(scope)
                except EvaluationError as e:
                    raise eval_failure(self, state, track, entered, e) from None
        self.exit(state, out, track, assigned, entered)
        return out, c.next


def _match_retrier(state: State, error: str | None) -> int | None:
    for i, r in enumerate(state.retriers):
        if _matches(r.errors, error):
            return i
    return None


def _matches(names: tuple[str, ...], error: str | None) -> bool:
    for n in names:
        if n == error or n == "States.ALL":
            return True
        if n == "States.TaskFailed" and error != E.TIMEOUT:
            return True
    return False


def _data_limit(name: str) -> StatesError:
    return _Terminal(
        E.DATA_LIMIT_EXCEEDED,
        f"The state/task '{name}' returned a result with a size exceeding the maximum number of "
        f"bytes service limit.",
    )


class _Terminal(StatesError):
    """A failure no Retry or Catch may handle (state output too large)."""

    @property
    def terminal(self) -> bool:
        return True


def _apply_path(p: JsonPath, scope: Scope, data: Any) -> Any:
    try:
        return p.get(data if p.root == "$" else scope.root(p))
    except PathNotFound as e:
        raise EvaluationError(f"Invalid path '{p.text}' : {e.message}") from None
    except UndefinedVariable:
        raise EvaluationError(f"Invalid path '{p.text}' : The variable is not defined") from None


def _eval(template: Any, scope: Scope) -> Any:
    return template.evaluate(scope)


# --- state types ---


def _run_pass(
    run: _Run, s: State, raw: Any, track: _Track, entered: int, now: float
) -> tuple[Any, str | None]:
    if s.ql == "JSONata":
        from . import jsonata_support

        out, assigned = jsonata_support.run_simple(run, s, raw, track, now, None)
        run.exit(s, out, track, assigned, entered)
        return out, s.next
    scope = run.scope(s, raw, track, now)
    eff = run.input_path(s, raw, scope)
    if s.parameters is not None:
        eff = s.parameters.evaluate(scope.with_input(eff))
    result = eff if s.result is MISSING else s.result
    rscope = scope.with_input(result)
    assigned = s.assign.evaluate(rscope) if s.assign is not None else None
    out = run.output(s, raw, result, scope)
    run.exit(s, out, track, assigned, entered)
    return out, s.next


def _run_succeed(
    run: _Run, s: State, raw: Any, track: _Track, entered: int, now: float
) -> tuple[Any, str | None]:
    if s.ql == "JSONata":
        from . import jsonata_support

        out, _ = jsonata_support.run_simple(run, s, raw, track, now, None)
    else:
        scope = run.scope(s, raw, track, now)
        eff = run.input_path(s, raw, scope)
        out = run.output(s, eff, eff, scope)
    run.exit(s, out, track, None, entered)
    return out, None


def _run_fail(
    run: _Run, s: State, raw: Any, track: _Track, entered: int, now: float
) -> tuple[Any, str | None]:
    if s.ql == "JSONata":
        from . import jsonata_support

        error, cause = jsonata_support.fail_fields(run, s, raw, track, now)
    else:
        scope = run.scope(s, raw, track, now)
        error = s.spec.get("Error")
        cause = s.spec.get("Cause")
        if s.error_path is not None:
            error = s.error_path(scope)
        if s.cause_path is not None:
            cause = s.cause_path(scope)
    track.in_state = None
    raise StatesError(error, cause)


def _run_choice(
    run: _Run, s: State, raw: Any, track: _Track, entered: int, now: float
) -> tuple[Any, str | None]:
    if s.ql == "JSONata":
        from . import jsonata_support

        out, nxt, assigned = jsonata_support.run_choice(run, s, raw, track, now, entered)
        run.exit(s, out, track, assigned, entered)
        return out, nxt
    scope = run.scope(s, raw, track, now)
    eff = run.input_path(s, raw, scope)
    escope = scope.with_input(eff)
    nxt = None
    rule_assign = None
    for pred, target, assign, _ in s.choices:
        if pred(escope):
            nxt, rule_assign = target, assign
            break
    if nxt is None:
        nxt = s.default
        if nxt is None:
            track.in_state = None
            raise StatesError(E.NO_CHOICE_MATCHED, "No Matches!")
    assigned = None
    if s.assign is not None or rule_assign is not None:
        assigned = {}
        if s.assign is not None:
            assigned.update(s.assign.evaluate(escope))
        if rule_assign is not None:
            assigned.update(rule_assign.evaluate(escope))
    out = run.output(s, eff, eff, scope)
    run.exit(s, out, track, assigned, entered)
    return out, nxt


def _run_wait(
    run: _Run, s: State, raw: Any, track: _Track, entered: int, now: float
) -> tuple[Any, str | None]:
    if s.ql == "JSONata":
        from . import jsonata_support

        seconds, out, assigned = jsonata_support.run_wait(run, s, raw, track, now, entered)
    else:
        scope = run.scope(s, raw, track, now)
        eff = run.input_path(s, raw, scope)
        escope = scope.with_input(eff)
        spec = s.spec
        if "Seconds" in spec:
            seconds = float(spec["Seconds"])
        elif s.seconds_path is not None:
            p = s.seconds_path
            try:
                v = escope.resolve(p)
            except (PathNotFound, UndefinedVariable):
                raise EvaluationError(
                    f"The SecondsPath parameter does not reference an input value: {p.text}"
                ) from None
            if not (isinstance(v, int) and not isinstance(v, bool)) or v < 0:
                raise EvaluationError(
                    f"The SecondsPath parameter cannot be parsed as a long value: {p.text} == "
                    f"{_plain(v)}"
                )
            seconds = float(v)
        else:
            if "Timestamp" in spec:
                ts = parse_timestamp(spec["Timestamp"])
            else:
                p = s.timestamp_path  # type: ignore[assignment]
                try:
                    v = escope.resolve(p)
                except (PathNotFound, UndefinedVariable):
                    raise EvaluationError(
                        f"The TimestampPath parameter does not reference an input value: {p.text}"
                    ) from None
                ts = parse_timestamp(v)
                if ts is None:
                    raise EvaluationError(
                        "The TimestampPath parameter does not reference a valid ISO-8601 "
                        "extended offset "
                        f"date-time format string: {p.text} == {_plain(v)}"
                    )
            assert ts is not None
            seconds = ts.timestamp() - run.clock.now()
        if seconds > _MAX_WAIT:
            raise EvaluationError("Wait state delay is too long.")
        assigned = s.assign.evaluate(escope) if s.assign is not None else None
        out = run.output(s, eff, eff, scope)
    run.sleep(seconds, track)
    run.exit(s, out, track, assigned, entered)
    return out, s.next


def _plain(v: Any) -> str:
    return v if isinstance(v, str) else _dumps(v)


def _run_task(
    run: _Run, s: State, raw: Any, track: _Track, entered: int, now: float
) -> tuple[Any, str | None]:
    jsonata = s.ql == "JSONata"

    def attempt(retry: int) -> tuple[Any, dict[str, Any] | None]:
        if jsonata:
            from . import jsonata_support

            return jsonata_support.run_task_attempt(run, s, raw, track, now, retry, entered)
        scope = run.scope(s, raw, track, now, retry)
        eff = run.input_path(s, raw, scope)
        params = s.parameters.evaluate(scope.with_input(eff)) if s.parameters is not None else eff
        timeout = _task_timeout(s, scope.with_input(eff))
        heartbeat = _task_heartbeat(s, scope.with_input(eff))
        creds = (
            s.credentials.evaluate(scope.with_input(eff))
            if getattr(s, "credentials", None)
            else None
        )  # type: ignore[attr-defined]
        result = invoke_task(run, s, params, track, retry, timeout, heartbeat, creds)
        if s.result_selector is not None:
            result = s.result_selector.evaluate(scope.with_input(result))
        assigned = s.assign.evaluate(scope.with_input(result)) if s.assign is not None else None
        return run.output(s, raw, result, scope), assigned

    try:
        out, assigned = _guard(
            run,
            s,
            entered,
            lambda: run.with_retry(s, track, _guarded(run, s, track, entered, attempt)),
            track,
        )
    except StatesError as err:
        caught = run.catch(s, err, raw, track, entered, now)
        if caught is None:
            track.in_state = None
            err.failed_state = s.type  # type: ignore[attr-defined]
            raise
        return caught
    if track.abort is not None and track.abort.is_set():
        raise ExecutionAborted()
    run.exit(s, out, track, assigned, entered)
    return out, s.next


def _guard(run: _Run, s: State, entered: int, fn: Callable[[], Any], track: _Track) -> Any:
    """Turn evaluation errors raised by `fn` into StatesError with the state prefix."""
    try:
        return fn()
    except EvaluationError as e:
        raise eval_failure(run, s, track, entered, e) from None


def eval_failure(
    run: _Run, s: State, track: _Track, entered: int, e: EvaluationError
) -> StatesError:
    """The StatesError for a failed evaluation (JSONata ones also get an EvaluationFailed event)."""
    cause = E.state_error_text(s.name, entered, e.message)
    if e.error == E.QUERY_EVALUATION_ERROR:
        d = {"error": e.error, "cause": cause, "state": s.name}
        if e.location:
            d["location"] = e.location
        # AWS links this event to the state's predecessor (to the state itself for Wait).
        prev = entered if s.type == "Wait" else track.entered_prev
        run.emit(track, "EvaluationFailed", "evaluationFailedEventDetails", d, prev=prev)
    return StatesError(e.error, cause)


def _guarded(
    run: _Run, s: State, track: _Track, entered: int, attempt: Callable[[int], Any]
) -> Callable[[int], Any]:
    def wrapped(retry: int) -> Any:
        try:
            return attempt(retry)
        except EvaluationError as e:
            raise eval_failure(run, s, track, entered, e) from None

    return wrapped


def _positive_int_from_path(p: JsonPath, scope: Scope, field: str) -> int:
    try:
        v = scope.resolve(p)
    except PathNotFound as e:
        raise EvaluationError(f"Invalid path '{p.text}' : {e.message}") from None
    except UndefinedVariable:
        raise EvaluationError(f"Invalid path '{p.text}' : The variable is not defined") from None
    if not (isinstance(v, int) and not isinstance(v, bool)) or v <= 0:
        raise EvaluationError(
            f'The {field} field refers to value "{_plain(v)}" which is not a valid positive '
            f"integer: {p.text}"
        )
    return v


def _task_timeout(s: State, scope: Scope) -> int | None:
    if s.timeout_path is not None:
        return _positive_int_from_path(s.timeout_path, scope, "TimeoutSecondsPath")
    return s.timeout if isinstance(s.timeout, int) else None


def _task_heartbeat(s: State, scope: Scope) -> int | None:
    if s.heartbeat_path is not None:
        return _positive_int_from_path(s.heartbeat_path, scope, "HeartbeatSecondsPath")
    return s.heartbeat if isinstance(s.heartbeat, int) else None


def invoke_task(
    run: _Run,
    s: State,
    params: Any,
    track: _Track,
    retry: int,
    timeout: int | None,
    heartbeat: int | None,
    creds: Any,
) -> Any:
    """Schedule, start and complete one task attempt, emitting its events."""
    kind: ResourceKind = s.kind  # type: ignore[attr-defined]
    cfg = run.config
    region = kind.region or cfg.region
    if s.ql == "JSONata":
        ptext = _dumps(params)
    else:
        ptext = _compose(params, track.last_payload, track.last_text)
    if kind.legacy_lambda:
        d: dict[str, Any] = {
            "resource": s.resource,
            "input": ptext,
            "inputDetails": {"truncated": False},
        }
        if timeout is not None:
            d["timeoutInSeconds"] = timeout
        if heartbeat is not None:
            d["heartbeatInSeconds"] = heartbeat
        if creds is not None:
            d["taskCredentials"] = _task_credentials(creds)
        run.emit(track, "LambdaFunctionScheduled", "lambdaFunctionScheduledEventDetails", d)
        run.emit(track, "LambdaFunctionStarted")
    else:
        d = {
            "resourceType": kind.resource_type,
            "resource": kind.resource,
            "region": region,
            "parameters": ptext,
        }
        if timeout is not None:
            d["timeoutInSeconds"] = timeout
        if heartbeat is not None:
            d["heartbeatInSeconds"] = heartbeat
        if creds is not None:
            d["taskCredentials"] = _task_credentials(creds)
        run.emit(track, "TaskScheduled", "taskScheduledEventDetails", d)
        run.emit(
            track,
            "TaskStarted",
            "taskStartedEventDetails",
            {"resourceType": kind.resource_type, "resource": kind.resource},
        )
    invoker = run.resources.invoker(s.resource)
    submitted = None
    if not kind.legacy_lambda:

        def submitted(output: Any) -> None:
            run.emit(
                track,
                "TaskSubmitted",
                "taskSubmittedEventDetails",
                {
                    "resourceType": kind.resource_type,
                    "resource": kind.resource,
                    "output": _dumps(output),
                    "outputDetails": {"truncated": False},
                },
            )

    req = TaskRequest(
        resource=s.resource,
        parameters=json.loads(ptext) if type(params) in (dict, list) else params,
        state_name=s.name,
        execution_name=run.ex.name,
        execution_arn=run.ex.arn,
        region=region,
        account_id=cfg.account_id,
        partition=cfg.partition,
        timeout_seconds=timeout,
        heartbeat_seconds=heartbeat,
        credentials=creds,
        attempt=retry,
        clock=run.clock,
        deadline=run.deadline,
        submitted=submitted,
    )
    try:
        if invoker is None:
            raise StatesError(E.RUNTIME, f"No handler is registered for resource '{s.resource}'")
        result = _call(run, invoker, req, timeout, track)
        text = _dumps(result)
        if _too_big(text):
            name = kind.resource if kind.legacy_lambda else kind.resource_type
            raise StatesError(
                E.DATA_LIMIT_EXCEEDED,
                f"The state/task '{name}' returned a result with a size exceeding the maximum "
                f"number of bytes service limit.",
            )
    except TaskTimedOut as e:
        d = {"error": e.error}
        if e.cause is not None:
            d["cause"] = e.cause
        if kind.legacy_lambda:
            run.emit(track, "LambdaFunctionTimedOut", "lambdaFunctionTimedOutEventDetails", d)
        else:
            d.update(resourceType=kind.resource_type, resource=kind.resource)
            run.emit(track, "TaskTimedOut", "taskTimedOutEventDetails", d)
        raise
    except StatesError as e:
        if e.terminal:
            raise
        d = {"error": e.error}
        if e.cause is not None:
            d["cause"] = e.cause
        if kind.legacy_lambda:
            run.emit(track, "LambdaFunctionFailed", "lambdaFunctionFailedEventDetails", d)
        else:
            d.update(resourceType=kind.resource_type, resource=kind.resource)
            run.emit(track, "TaskFailed", "taskFailedEventDetails", d)
        raise
    except (ExecutionTimedOut, ExecutionAborted):
        raise
    except Exception as exc:  # a generic handler raised: AWS reports the exception's class name
        err = StatesError(type(exc).__name__, str(exc))
        d = {"error": err.error, "cause": err.cause}
        if kind.legacy_lambda:
            run.emit(track, "LambdaFunctionFailed", "lambdaFunctionFailedEventDetails", d)
        else:
            d.update(resourceType=kind.resource_type, resource=kind.resource)
            run.emit(track, "TaskFailed", "taskFailedEventDetails", d)
        raise err from exc
    if kind.legacy_lambda:
        run.emit(
            track,
            "LambdaFunctionSucceeded",
            "lambdaFunctionSucceededEventDetails",
            {"output": text, "outputDetails": {"truncated": False}},
        )
    else:
        run.emit(
            track,
            "TaskSucceeded",
            "taskSucceededEventDetails",
            {
                "resourceType": kind.resource_type,
                "resource": kind.resource,
                "output": text,
                "outputDetails": {"truncated": False},
            },
        )
    # Hand later states a fresh copy, as AWS does by passing JSON text around.
    return json.loads(text) if type(result) in (dict, list) else result


def _task_credentials(creds: Any) -> Any:
    """History spells the Credentials block {"roleArn": ...}."""
    if isinstance(creds, dict) and "RoleArn" in creds:
        return {"roleArn": creds["RoleArn"]}
    return creds


def _call(
    run: _Run,
    invoker: Callable[[TaskRequest], Any],
    req: TaskRequest,
    timeout: int | None,
    track: _Track,
) -> Any:
    limit: float | None = float(timeout) if timeout is not None else None
    machine_left = None if run.deadline is None else run.deadline - run.clock.now()
    if machine_left is not None and (limit is None or machine_left < limit):
        limit = max(0.0, machine_left)
    if limit is None:
        return invoker(req)
    if not run.real:
        # Fake time: run inline and judge the elapsed (fake) time afterwards.
        start = run.clock.now()
        result = invoker(req)
        elapsed = run.clock.now() - start
        if timeout is not None and elapsed > timeout:
            raise TaskTimedOut()
        if run.deadline is not None and run.clock.now() >= run.deadline:
            run.timed_out.set()
            raise ExecutionTimedOut()
        return result
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["result"] = invoker(req)
        except BaseException as e:  # handed back to the waiting thread
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=target, daemon=True, name=f"asl-task-{req.state_name}").start()
    if not done.wait(limit):
        if timeout is not None and (machine_left is None or timeout <= machine_left):
            raise TaskTimedOut()
        run.timed_out.set()
        raise ExecutionTimedOut()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _run_parallel(
    run: _Run, s: State, raw: Any, track: _Track, entered: int, now: float
) -> tuple[Any, str | None]:
    jsonata = s.ql == "JSONata"

    def attempt(retry: int) -> tuple[Any, dict[str, Any] | None]:
        if jsonata:
            from . import jsonata_support

            scope, eff = jsonata_support.arguments_input(run, s, raw, track, now, retry)
        else:
            scope = run.scope(s, raw, track, now, retry)
            eff = run.input_path(s, raw, scope)
            if s.parameters is not None:
                eff = s.parameters.evaluate(scope.with_input(eff))
        run.emit(track, "ParallelStateStarted")
        result = _run_concurrently(
            run, track, [(b, eff, None) for b in s.branches], len(s.branches), None, s, 0, None
        )
        run.emit(track, "ParallelStateSucceeded")
        return _finish_result(run, s, raw, result, scope, track, now)

    return _run_branching_state(run, s, track, entered, raw, now, attempt, "ParallelStateFailed")


def _finish_result(
    run: _Run, s: State, raw: Any, result: Any, scope: Scope, track: _Track, now: float
) -> tuple[Any, dict[str, Any] | None]:
    if s.ql == "JSONata":
        from . import jsonata_support

        return jsonata_support.finish(run, s, raw, result, track, now)
    if s.result_selector is not None:
        result = s.result_selector.evaluate(scope.with_input(result))
    assigned = s.assign.evaluate(scope.with_input(result)) if s.assign is not None else None
    return run.output(s, raw, result, scope), assigned


class _Failure(Exception):
    def __init__(self, err: StatesError) -> None:
        super().__init__(str(err))
        self.err = err


def _run_concurrently(
    run: _Run,
    track: _Track,
    jobs: list[tuple[Machine, Any, int | None]],
    concurrency: int,
    map_state: State | None,
    s: State,
    tolerated: int | None,
    tolerated_pct: float | None,
) -> list[Any]:
    """Run branches (Parallel) or iterations (Map) on threads, at most `concurrency` at once.

    The first failure (beyond the tolerated ones for Map) aborts the others; results keep
    the input order.
    """
    n = len(jobs)
    results: list[Any] = [None] * n
    if n == 0:
        return results
    abort = threading.Event()
    if track.abort is not None and track.abort.is_set():
        abort.set()
    parent_abort = track.abort
    is_map = map_state is not None
    failures: list[tuple[int, StatesError]] = []
    fail_lock = threading.Lock()
    first_error: list[BaseException] = []
    started_prev = track.prev
    # Each job's last state event, before its *Iteration* event: AWS links later events there.
    last_prev: list[int] = [track.prev] * n
    failed_job: list[int] = []
    # Distributed Map iterations are child executions: their events are not in this history.
    silent = track.silent or bool(
        map_state is not None and getattr(map_state, "distributed", False)
    )

    def threshold_exceeded() -> bool:
        nf = len(failures)
        if not is_map or (tolerated is None and tolerated_pct is None):
            return nf > 0
        # With both thresholds set, exceeding either one fails the Map.
        over_count = tolerated is not None and nf > tolerated
        over_pct = tolerated_pct is not None and nf * 100.0 / n > tolerated_pct
        return over_count or over_pct

    def run_job(i: int, prev: int) -> None:
        m, inp, _ = jobs[i]
        sub = _Track(prev, abort, Variables(track.vars))
        sub.silent = silent
        try:
            if parent_abort is not None and parent_abort.is_set():
                abort.set()
            out = run.run_machine(m, inp, sub)
            results[i] = out
            last_prev[i] = sub.prev
            if is_map:
                run.emit(
                    sub,
                    "MapIterationSucceeded",
                    "mapIterationSucceededEventDetails",
                    {"index": i, "name": s.name},
                )
        except StatesError as e:
            last_prev[i] = sub.prev
            with fail_lock:
                failures.append((i, e))
                if is_map:
                    results[i] = E.error_output(e.error, e.cause)
                    run.emit(
                        sub,
                        "MapIterationFailed",
                        "mapIterationFailedEventDetails",
                        {"index": i, "name": s.name},
                    )
                if threshold_exceeded() or e.terminal:
                    if not first_error:
                        first_error.append(e)
                        failed_job.append(i)
                    abort.set()
        except ExecutionAborted:
            if is_map:
                run.emit(
                    sub,
                    "MapIterationAborted",
                    "mapIterationAbortedEventDetails",
                    {"index": i, "name": s.name},
                )
        except BaseException as e:  # timeouts and bugs end the whole execution
            with fail_lock:
                if not first_error:
                    first_error.append(e)
            abort.set()

    def start_job(i: int) -> int:
        if is_map and not silent:
            return run.emit(
                track,
                "MapIterationStarted",
                "mapIterationStartedEventDetails",
                {"index": i, "name": s.name},
                prev=started_prev,
            )
        return started_prev

    workers = min(concurrency if concurrency > 0 else n, n, _MAP_THREAD_CAP if is_map else n)
    if workers <= 1:
        for i in range(n):
            if abort.is_set() or (parent_abort is not None and parent_abort.is_set()):
                break
            prev = start_job(i)
            run_job(i, prev)
            # The next iteration follows the last state event of this one.
            started_prev = last_prev[i]
    else:
        done = threading.Semaphore(0)

        def job(i: int, prev: int) -> None:
            try:
                run_job(i, prev)
            finally:
                done.release()

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"asl-{s.name}") as pool:
            # The first batch starts together (all *IterationStarted events first, as on AWS);
            # later items start as slots free up.
            prevs = [start_job(i) for i in range(workers)]
            futures = [pool.submit(job, i, prevs[i]) for i in range(workers)]
            for i in range(workers, n):
                done.acquire()
                if abort.is_set() or (parent_abort is not None and parent_abort.is_set()):
                    break
                futures.append(pool.submit(job, i, start_job(i)))
            for f in futures:
                f.result()
    if failed_job:
        track.prev = last_prev[failed_job[0]]
    elif not silent:
        with run.lock:
            track.prev = len(run.events)
    if first_error:
        # AWS marks the Task state that failed inside a branch/iteration as aborted.
        for _, err in failures:
            if getattr(err, "failed_state", None) == "Task":
                run.emit(track, "TaskStateAborted")
        e0 = first_error[0]
        if isinstance(e0, StatesError):
            if is_map and not e0.terminal and (tolerated is not None or tolerated_pct is not None):
                raise StatesError(
                    E.EXCEED_TOLERATED_FAILURE_THRESHOLD,
                    "The specified tolerated failure threshold was exceeded",
                )
            raise e0
        raise e0
    if parent_abort is not None and parent_abort.is_set():
        raise ExecutionAborted()
    if run.timed_out.is_set():
        raise ExecutionTimedOut()
    return results


def _run_map(
    run: _Run, s: State, raw: Any, track: _Track, entered: int, now: float
) -> tuple[Any, str | None]:
    jsonata = s.ql == "JSONata"

    def attempt(retry: int) -> tuple[Any, dict[str, Any] | None]:
        if jsonata:
            from . import jsonata_support

            scope, items, item_inputs, conc, tol, pct = jsonata_support.map_setup(
                run, s, raw, track, now, retry, entered
            )
        else:
            scope = run.scope(s, raw, track, now, retry)
            eff = run.input_path(s, raw, scope)
            escope = scope.with_input(eff)
            items = eff if s.items_path is MISSING else _apply_path(s.items_path, escope, eff)
            if not isinstance(items, list):
                raise EvaluationError(
                    f"Invalid path "
                    f"'{s.items_path.text if isinstance(s.items_path, JsonPath) else '$'}' : "
                    f"Map state input must be an array but was: {_dumps(items)}"
                )
            conc = (
                _map_int(s.max_concurrency_path, escope, "MaxConcurrencyPath")
                if s.max_concurrency_path is not None
                else (s.max_concurrency or 0)
            )
            tol = (
                _map_int(s.tolerated_count_path, escope, "ToleratedFailureCountPath")
                if s.tolerated_count_path is not None
                else s.tolerated_count
            )
            pct = (
                float(_map_num(s.tolerated_pct_path, escope))
                if s.tolerated_pct_path is not None
                else (float(s.tolerated_pct) if s.tolerated_pct is not None else None)
            )
            item_inputs = []
            sel = s.item_selector
            for i, item in enumerate(items):
                if sel is None:
                    item_inputs.append(item)
                else:
                    extra = {"Map": {"Item": {"Index": i, "Value": item}}}
                    item_inputs.append(sel.evaluate(run.scope(s, eff, track, now, retry, extra)))
        run.emit(track, "MapStateStarted", "mapStateStartedEventDetails", {"length": len(items)})
        assert s.processor is not None
        jobs = [(s.processor, x, i) for i, x in enumerate(item_inputs)]
        distributed = getattr(s, "distributed", False)
        if distributed:
            map_run_arn = (
                f"arn:{run.config.partition}:states:{run.config.region}:{run.config.account_id}:"
                f"mapRun:{run.config.state_machine_name}/{s.name}:{uuid.uuid4()}"
            )
            run.emit(
                track, "MapRunStarted", "mapRunStartedEventDetails", {"mapRunArn": map_run_arn}
            )
            try:
                result = _run_concurrently(run, track, jobs, conc, s, s, tol, pct)
            except StatesError as e:
                run.emit(
                    track,
                    "MapRunFailed",
                    "mapRunFailedEventDetails",
                    {k: v for k, v in (("error", e.error), ("cause", e.cause)) if v is not None},
                )
                raise
            run.emit(track, "MapRunSucceeded")
        else:
            result = _run_concurrently(run, track, jobs, conc, s, s, tol, pct)
        prev = track.prev
        run.emit(track, "MapStateSucceeded")
        track.prev = prev
        return _finish_result(run, s, raw, result, scope, track, now)

    return _run_branching_state(run, s, track, entered, raw, now, attempt, "MapStateFailed")


def _run_branching_state(
    run: Any, s: Any, track: Any, entered: Any, raw: Any, now: Any, attempt: Any, failed_event: str
) -> Any:
    """Retry, Catch and exit of a Parallel or Map state around one ``attempt``."""

    def failed() -> None:
        run.emit(track, failed_event)

    try:
        out, assigned = _guard(
            run,
            s,
            entered,
            lambda: run.with_retry(s, track, _guarded(run, s, track, entered, attempt), failed),
            track,
        )
    except StatesError as err:
        caught = run.catch(s, err, raw, track, entered, now)
        if caught is None:
            track.in_state = None
            err.failed_state = s.type  # type: ignore[attr-defined]
            raise
        return caught
    run.exit(s, out, track, assigned, entered)
    return out, s.next


def _map_int(p: JsonPath, scope: Scope, field: str) -> int:
    try:
        v = scope.resolve(p)
    except PathNotFound as e:
        raise EvaluationError(f"Invalid path '{p.text}' : {e.message}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 0:
        raise EvaluationError(
            f'The {field} field refers to value "{_plain(v)}" which is not a valid integer: '
            f"{p.text}"
        )
    return int(v)


def _map_num(p: JsonPath, scope: Scope) -> float:
    try:
        v = scope.resolve(p)
    except PathNotFound as e:
        raise EvaluationError(f"Invalid path '{p.text}' : {e.message}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
        raise EvaluationError(
            f'The ToleratedFailurePercentagePath field refers to value "{_plain(v)}" which is '
            f"not a valid percentage: {p.text}"
        )
    return float(v)


_DISPATCH: dict[str, Callable[..., tuple[Any, str | None]]] = {
    "Pass": _run_pass,
    "Task": _run_task,
    "Choice": _run_choice,
    "Wait": _run_wait,
    "Succeed": _run_succeed,
    "Fail": _run_fail,
    "Parallel": _run_parallel,
    "Map": _run_map,
}


# --- entry point ---


def run_execution(
    machine: Machine,
    input: Any,
    resources: Resources,
    *,
    name: str | None = None,
    clock: Clock | None = None,
    config: ExecutionConfig | None = None,
) -> Execution:
    clock = clock or SystemClock()
    cfg = config or ExecutionConfig()
    name = name or str(uuid.uuid4())
    sm_arn = cfg.state_machine_arn or (
        f"arn:{cfg.partition}:states:{cfg.region}:{cfg.account_id}:stateMachine:{cfg.state_machine_name}"
    )
    ex_arn = cfg.execution_arn or (
        f"arn:{cfg.partition}:states:{cfg.region}:{cfg.account_id}:execution:{cfg.state_machine_name}:{name}"
    )
    role = cfg.role_arn or f"arn:{cfg.partition}:iam::{cfg.account_id}:role/StepFunctionsRole"
    ex = Execution(name, ex_arn, input)
    run = _Run(machine, resources, clock, ex, cfg, sm_arn, role)
    start = clock.now()
    ex.start_date = start
    run.start_iso = _iso(start)
    if machine.timeout_seconds is not None:
        run.deadline = start + machine.timeout_seconds
    top = _Track(0, None, Variables())
    text = _dumps(input)
    run.emit(
        top,
        "ExecutionStarted",
        "executionStartedEventDetails",
        {
            "input": text,
            "inputDetails": {"truncated": False},
            "roleArn": role,
        },
    )
    top.prev = 0  # AWS links the first state's event to 0, not to ExecutionStarted
    try:
        if _too_big(text):
            raise _Terminal(
                E.DATA_LIMIT_EXCEEDED,
                "The execution input exceeds the maximum number of bytes service limit.",
            )
        out = run.run_machine(machine, input, top)
        ex.output = out
        ex.output_json = top.last_text if out is top.last_payload else _dumps(out)
        ex.status = SUCCEEDED
        if top.prev == 0:
            top.prev = len(run.events)
        run.emit(
            top,
            "ExecutionSucceeded",
            "executionSucceededEventDetails",
            {"output": ex.output_json, "outputDetails": {"truncated": False}},
        )
    except StatesError as e:
        ex.status = FAILED
        ex.error, ex.cause = e.error, e.cause
        d: dict[str, Any] = {}
        if e.error is not None:
            d["error"] = e.error
        if e.cause is not None:
            d["cause"] = e.cause
        if top.prev == 0:
            top.prev = len(run.events)
        run.emit(top, "ExecutionFailed", "executionFailedEventDetails", d)
    except ExecutionTimedOut:
        ex.status = TIMED_OUT
        ex.error = E.TIMEOUT
        ex.cause = "The execution timed out."
        run.emit(
            top,
            "ExecutionTimedOut",
            "executionTimedOutEventDetails",
            {"error": ex.error, "cause": ex.cause},
            prev=len(run.events),
        )
    except ExecutionAborted:
        ex.status = ABORTED
        run.emit(top, "ExecutionAborted", "executionAbortedEventDetails", {}, prev=len(run.events))
    ex.stop_date = clock.now()
    return ex


__all__ = [
    "ABORTED",
    "FAILED",
    "LAMBDA_INVOKE",
    "PAYLOAD_LIMIT",
    "SUCCEEDED",
    "TIMED_OUT",
    "Execution",
    "ExecutionConfig",
    "run_execution",
]
