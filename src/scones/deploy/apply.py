"""Make a plan's calls in order, recording each created resource in the manifest at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from scones.deploy.aws import Aws, aws_errors, error_code, safe_message
from scones.deploy.errors import DeployError
from scones.deploy.plan import ApiCall, Change, Plan

# IAM is eventually consistent: a role created a moment ago may not be assumable yet, and a
# Lambda function is briefly busy after an update. Both pass with a little patience.
_RETRY_MESSAGES = ("cannot be assumed", "could not assume", "sts:assumerole")
_RETRY_CODES = frozenset({"ResourceConflictException", "TooManyRequestsException"})
MAX_ATTEMPTS = 8
WAIT_FUNCTION_S = 300.0


def _retryable(exc: Exception) -> bool:
    text = str(exc).lower()
    return error_code(exc) in _RETRY_CODES or any(m in text for m in _RETRY_MESSAGES)


def invoke(aws: Aws, call: ApiCall, sleep: Callable[[float], None] = time.sleep) -> Any:
    """One API call, retried while IAM propagates or a function is busy."""
    from botocore.exceptions import BotoCoreError, ClientError

    method = getattr(aws.client(call.service), call.operation)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return method(**call.params)
        except ClientError as exc:
            if attempt < MAX_ATTEMPTS and _retryable(exc):
                sleep(min(2.0**attempt, 20.0))
                continue
            raise DeployError(f"{call.describe()} failed: {safe_message(exc)}") from None
        except BotoCoreError as exc:
            raise DeployError(f"{call.describe()} failed: {safe_message(exc)}") from None
        except Exception as exc:  # S3 transfers raise their own types
            raise DeployError(f"{call.describe()} failed: {safe_message(exc)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def wait_for_function(
    aws: Aws,
    name: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Until the function is Active with no update in progress (AWS refuses calls before)."""
    deadline = clock() + WAIT_FUNCTION_S
    client = aws.client("lambda")
    while True:
        with aws_errors(f"waiting for Lambda function {name}"):
            config = client.get_function_configuration(FunctionName=name)
        state, update = config.get("State", "Active"), config.get("LastUpdateStatus", "Successful")
        if state == "Failed" or update == "Failed":
            reason = config.get("StateReason") or config.get("LastUpdateStatusReason") or ""
            raise DeployError(f"Lambda function {name} failed to settle: {reason}")
        if state == "Active" and update != "InProgress":
            return
        if clock() > deadline:
            raise DeployError(f"Lambda function {name} is still {state}/{update} after waiting")
        sleep(1.0)


def apply_plan(aws: Aws, plan: Plan, on_done: Callable[[Change], None]) -> None:
    """Each change's calls, then ``on_done(change)`` (which records it) before the next."""
    for change in plan.changes:
        for call in change.calls:
            invoke(aws, call)
        if change.wait_for_function:
            wait_for_function(aws, change.wait_for_function)
        on_done(change)
