"""``scones run --on aws``: start executions of the deployed state machine and report each
image's outcome exactly as a local run does (same ImageOutcome, same lines)."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scones.deploy.aws import Aws, aws_errors
from scones.deploy.desired import manifest_key
from scones.deploy.errors import DeployError
from scones.deploy.manifest import read_manifest
from scones.deploy.options import DEFAULT_NAME, DEFAULT_PREFIX
from scones.store import join_key, validate_key
from scones.workflow.executions import ExecutionRecord
from scones.workflow.runs import RunResult, outcome_of

DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class AwsRunOptions:
    bucket: str
    region: str
    keys: tuple[str, ...]
    name: str = DEFAULT_NAME  # the deployment
    prefix: str = DEFAULT_PREFIX
    execution_name: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    endpoint_url: str | None = None
    s3_endpoint_url: str | None = None


def deployed_state_machine(aws: Aws, bucket: str, prefix: str, name: str) -> tuple[str, float]:
    """The deployed state machine's ARN and the filter's threshold, from the manifest."""
    key = manifest_key(prefix.strip("/"), name)
    manifest = read_manifest(aws, bucket, key)
    arn = manifest.data.get("state_machine_arn") if manifest else None
    if manifest is None or not isinstance(arn, str) or not arn:
        raise DeployError(
            f"no deployment {name!r} in s3://{bucket}/{key}: run `scones deploy aws` first"
        )
    threshold = manifest.data.get("threshold")
    return arn, float(threshold) if isinstance(threshold, int | float) else math.nan


def _history(aws: Aws, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    paginator = aws.client("stepfunctions").get_paginator("get_execution_history")
    for page in paginator.paginate(executionArn=execution_arn):
        events.extend(page.get("events", []))
    return events


def _record(aws: Aws, description: dict[str, Any]) -> ExecutionRecord:
    arn = description["executionArn"]
    output = description.get("output")
    return ExecutionRecord(
        execution_id=arn,
        name=description.get("name", arn.rsplit(":", 1)[-1]),
        state_machine=description.get("stateMachineArn", ""),
        status=description["status"],
        input=json.loads(description.get("input") or "{}"),
        output=json.loads(output) if output else None,
        error=description.get("error"),
        cause=description.get("cause"),
        started_at=description.get("startDate") or datetime.now(UTC),
        stopped_at=description.get("stopDate"),
        history=_history(aws, arn),
    )


def run_on_aws(
    options: AwsRunOptions,
    *,
    aws: Aws | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """One execution per key (keys relative to the deployment's prefix, as in the local
    store), waited for; a key is checked before anything starts."""
    if not options.keys:
        raise DeployError("give --key (one or more)")
    if options.execution_name and len(options.keys) > 1:
        raise DeployError("--name names one execution: give one --key with it")
    s3_keys = [validate_key(join_key(options.prefix, key)) for key in options.keys]
    aws = aws or Aws(options.region, options.endpoint_url, options.s3_endpoint_url)
    arn, threshold = deployed_state_machine(aws, options.bucket, options.prefix, options.name)
    sfn = aws.client("stepfunctions")
    started = []
    for key in s3_keys:
        request: dict[str, Any] = {
            "stateMachineArn": arn,
            "input": json.dumps({"s3_bucket": options.bucket, "s3_key": key, "image_data": ""}),
        }
        # Named here rather than by AWS: moto's interpreter would name every one "None".
        request["name"] = options.execution_name or uuid.uuid4().hex
        with aws_errors(f"starting an execution of {arn} for {key}"):
            started.append(sfn.start_execution(**request)["executionArn"])
    deadline = time.monotonic() + options.timeout_s
    outcomes = []
    for execution_arn in started:
        while True:
            with aws_errors(f"describing execution {execution_arn}"):
                description = sfn.describe_execution(executionArn=execution_arn)
            if description["status"] != "RUNNING" or time.monotonic() > deadline:
                break
            sleep(0.5)
        outcomes.append(outcome_of(_record(aws, description)))
    return RunResult(outcomes, {}, threshold)
