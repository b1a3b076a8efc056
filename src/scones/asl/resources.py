"""The registry from Task Resource values to Python callables, and Lambda emulation."""

from __future__ import annotations

import inspect
import json
import random
import sys
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import StatesError

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


@dataclass
class TaskRequest:
    """Everything a task invoker may need about one invocation attempt."""

    resource: str
    parameters: Any
    state_name: str
    execution_name: str
    execution_arn: str
    region: str
    account_id: str
    partition: str
    timeout_seconds: float | None = None
    heartbeat_seconds: float | None = None
    credentials: Any = None
    attempt: int = 0
    clock: Any = None
    deadline: float | None = None
    # For .sync integrations: call with the TaskSubmitted output before returning the final one.
    submitted: Callable[[Any], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Invoker = Callable[[TaskRequest], Any]


@dataclass(frozen=True)
class ResourceKind:
    """How a Resource shows up in the history."""

    legacy_lambda: bool
    resource_type: str  # TaskScheduled.resourceType, e.g. "lambda", "aws-sdk:s3"
    resource: str  # TaskScheduled.resource, e.g. "invoke", "getObject"
    region: str | None


def classify(resource: str) -> ResourceKind:
    parts = resource.split(":")
    if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
        return ResourceKind(True, "lambda", resource, parts[3] or None)
    if len(parts) >= 7 and parts[2] == "states" and parts[5] not in ("activity", "stateMachine"):
        if parts[5] == "aws-sdk" and len(parts) >= 8:
            return ResourceKind(False, f"aws-sdk:{parts[6]}", ":".join(parts[7:]), parts[3] or None)
        return ResourceKind(False, parts[5], ":".join(parts[6:]), parts[3] or None)
    return ResourceKind(False, parts[2] if len(parts) > 2 else "unknown", resource, None)


def lambda_name(ref: str) -> tuple[str, str | None]:
    """Function name and qualifier from a name, a partial ARN or a full ARN."""
    parts = ref.split(":")
    if ref.startswith("arn:") and len(parts) >= 7:
        return parts[6], (parts[7] if len(parts) > 7 else None)
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2], (parts[3] if len(parts) > 3 else None)
    return parts[0], (parts[1] if len(parts) > 1 else None)


class LambdaContext:
    """A small stand-in for the context object the Lambda runtime passes to handlers."""

    def __init__(
        self,
        function_name: str,
        function_arn: str,
        version: str,
        timeout_s: float,
        clock: Any = None,
        memory_limit_in_mb: int = 128,
    ) -> None:
        self.function_name = function_name
        self.function_version = version
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = new_request_id()
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._clock = clock
        self._deadline = (clock.now() if clock else time.time()) + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        now = self._clock.now() if self._clock else time.time()
        return max(0, int((self._deadline - now) * 1000))


def new_request_id() -> str:
    """A random version 4 UUID, as Lambda's request ids are.

    From ``random``, not ``uuid.uuid4``: an id, not a secret, and os.urandom's system call
    lets go of the GIL, which with many executions at once costs a thread switch each time.
    """
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def lambda_error(exc: BaseException, request_id: str) -> StatesError:
    """The error AWS reports when a handler raises: its class name, and Lambda's error JSON."""
    name = type(exc).__name__
    frames = format_traceback(exc.__traceback__)[1:]  # drop the runtime's own frame
    cause = json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": name,
            "requestId": request_id,
            "stackTrace": frames,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return StatesError(name, cause)


# Formatted traceback entries by code location. traceback.format_tb reads and parses the
# source for every frame (on 3.11 it compiles the line to place the carets): ~0.2 ms per
# failed Lambda, the bulk of a failing execution's runtime cost. A location always formats
# to the same text, so each is formatted once.
_FRAME_TEXT: dict[tuple[types.CodeType, int, int | None], str] = {}
_FRAME_TEXT_LOCK = threading.Lock()
_FRAME_TEXT_MAX = 4096


def format_traceback(tb: types.TracebackType | None) -> list[str]:
    """Exactly ``traceback.format_tb(tb)``, with each frame's text cached by its location."""
    if hasattr(sys, "tracebacklimit"):
        return traceback.format_tb(tb)  # a global limit: leave the cutting to traceback
    first = tb
    out: list[str] = []
    last: tuple[str, int | None, str] | None = None
    while tb is not None:
        code = tb.tb_frame.f_code
        here = (code.co_filename, tb.tb_lineno, code.co_name)
        if here == last:
            # Recursion: format_tb collapses repeated lines; let it do so.
            return traceback.format_tb(first)
        last = here
        key = (code, tb.tb_lasti, tb.tb_lineno)
        text = _FRAME_TEXT.get(key)
        if text is None:
            one = types.TracebackType(None, tb.tb_frame, tb.tb_lasti, tb.tb_lineno)
            text = traceback.format_tb(one)[0]
            with _FRAME_TEXT_LOCK:
                if len(_FRAME_TEXT) >= _FRAME_TEXT_MAX:
                    _FRAME_TEXT.clear()
                _FRAME_TEXT[key] = text
        out.append(text)
        tb = tb.tb_next
    return out


_DEFAULT_LAMBDA_TIMEOUT = 3.0


class Resources:
    """Maps Task Resource values to callables.

    - register_lambda(name, handler): handler(event, context) serves both
      `arn:aws:states:::lambda:invoke` (FunctionName as a name, partial or full ARN, with
      or without qualifier) and plain Lambda function ARNs naming that function.
    - register(resource_arn, fn): any other integration; fn(parameters) or
      fn(parameters, request) returns the task result or raises (TaskError to choose the
      error name).
    """

    def __init__(self, account_id: str = "123456789012", region: str = "us-east-1") -> None:
        self._lambdas: dict[str, Callable[[Any, Any], Any]] = {}
        self._generic: dict[str, Invoker] = {}
        self.account_id = account_id
        self.region = region

    # --- registration ---

    def register_lambda(self, name: str, handler: Callable[[Any, Any], Any]) -> Resources:
        fname, _ = lambda_name(name)
        self._lambdas[fname] = handler
        return self

    def register(self, resource: str, fn: Callable[..., Any]) -> Resources:
        self._generic[resource] = _adapt(fn)
        return self

    # --- lookup ---

    def lambda_handler(self, ref: str) -> Callable[[Any, Any], Any] | None:
        return self._lambdas.get(lambda_name(ref)[0])

    def invoker(self, resource: str) -> Invoker | None:
        """The callable for a Resource, or None when nothing can serve it."""
        inv = self._generic.get(resource)
        if inv is not None:
            return inv
        if resource == LAMBDA_INVOKE or resource.startswith(LAMBDA_INVOKE + "."):
            return self._invoke_lambda_service
        kind = classify(resource)
        if kind.legacy_lambda:
            handler = self.lambda_handler(resource)
            if handler is None:
                return None
            return lambda req: self._run_lambda(handler, req, resource, raw=True)
        return None

    def missing(self, resources: list[tuple[str, str, Any]]) -> list[str]:
        """Problems for (location, resource, static FunctionName) triples with no handler."""
        out = []
        for loc, res, fn in resources:
            if res in self._generic:
                continue
            if res == LAMBDA_INVOKE or res.startswith(LAMBDA_INVOKE + "."):
                if isinstance(fn, str) and self.lambda_handler(fn) is None:
                    out.append(
                        f"{loc}: no Lambda handler registered for FunctionName {fn!r} (resource "
                        f"{res!r})"
                    )
                continue
            if self.invoker(res) is None:
                out.append(f"{loc}/Resource: no handler registered for resource {res!r}")
        return out

    # --- Lambda emulation ---

    def _invoke_lambda_service(self, req: TaskRequest) -> Any:
        params = req.parameters if isinstance(req.parameters, dict) else {}
        fn = params.get("FunctionName")
        if not isinstance(fn, str):
            raise StatesError(
                "States.Runtime", "lambda:invoke requires a FunctionName string parameter"
            )
        handler = self.lambda_handler(fn)
        if handler is None:
            name, qual = lambda_name(fn)
            arn = (
                f"arn:{req.partition}:lambda:{req.region}:{req.account_id}:function:"
                f"{name}:{qual or '$LATEST'}"
            )
            raise StatesError(
                "Lambda.ResourceNotFoundException",
                f"Function not found: {arn} (Service: AWSLambda; Status Code: 404; Error Code: "
                f"ResourceNotFoundException; Request ID: {uuid.uuid4()}; Proxy: null)",
            )
        return self._run_lambda(handler, req, fn, raw=False)

    def _run_lambda(
        self, handler: Callable[[Any, Any], Any], req: TaskRequest, ref: str, raw: bool
    ) -> Any:
        name, qual = lambda_name(ref)
        version = qual or "$LATEST"
        arn = f"arn:{req.partition}:lambda:{req.region}:{req.account_id}:function:{name}"
        if qual:
            arn += f":{qual}"
        event = req.parameters if raw else (req.parameters or {}).get("Payload", {})
        timeout = req.timeout_seconds or _DEFAULT_LAMBDA_TIMEOUT
        ctx = LambdaContext(name, arn, version, timeout, req.clock)
        try:
            result = handler(event, ctx)
        except StatesError:
            raise
        except Exception as exc:  # a handler's exception is the task's failure
            raise lambda_error(exc, ctx.aws_request_id) from exc
        if raw:
            return result
        return {
            "ExecutedVersion": version,
            "Payload": result,
            "SdkHttpMetadata": {
                "AllHttpHeaders": {
                    "X-Amz-Executed-Version": [version],
                    "x-amzn-Remapped-Content-Length": ["0"],
                    "Connection": ["keep-alive"],
                    "x-amzn-RequestId": [ctx.aws_request_id],
                    "Content-Type": ["application/json"],
                },
                "HttpHeaders": {
                    "Connection": "keep-alive",
                    "Content-Type": "application/json",
                    "X-Amz-Executed-Version": version,
                    "x-amzn-Remapped-Content-Length": "0",
                    "x-amzn-RequestId": ctx.aws_request_id,
                },
                "HttpStatusCode": 200,
            },
            "SdkResponseMetadata": {"RequestId": ctx.aws_request_id},
            "StatusCode": 200,
        }


def _adapt(fn: Callable[..., Any]) -> Invoker:
    """Accept fn(parameters) or fn(parameters, request)."""
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        two = len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):
        two = False
    if two:
        return lambda req: fn(req.parameters, req)
    return lambda req: fn(req.parameters)
