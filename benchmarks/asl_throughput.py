"""Throughput of scones.asl on a three-Task Lambda machine, with the full history recorded.

    .venv/bin/python benchmarks/asl_throughput.py [--seconds S] [--json]

Measures executions per second on one core (one thread, in-process handlers). If moto is
importable, the same machine also runs on moto's Step Functions with
`execute_state_machine` enabled (moto embeds LocalStack's ASL interpreter), and the ratio
is printed. moto's Lambda runs without Docker there, so its handler is moto's built-in
stub: that side measures interpreter and API overhead only, which favours moto.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from scones.asl import Resources, execute, load

_RETRY = [
    {
        "ErrorEquals": [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        ],
        "IntervalSeconds": 2,
        "MaxAttempts": 6,
        "BackoffRate": 2,
    }
]


def _task(fn: str, nxt: str | None) -> dict[str, Any]:
    st: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "OutputPath": "$.Payload",
        "Parameters": {
            "FunctionName": f"arn:aws:lambda:us-east-1:123456789012:function:{fn}:$LATEST",
            "Payload.$": "$",
        },
        "Retry": _RETRY,
    }
    if nxt:
        st["Next"] = nxt
    else:
        st["End"] = True
    return st


DEFINITION = {
    "Comment": "Three Lambda tasks shaped like the seed pipeline",
    "StartAt": "Serialize",
    "States": {
        "Serialize": _task("serializeImageData", "Classify"),
        "Classify": _task("classifyImage", "Filter"),
        "Filter": _task("filterLowConfidence", None),
    },
}

INPUT = {
    "image_data": "aGVsbG8=",
    "s3_bucket": "bucket",
    "s3_key": "test/cat.png",
    "inferences": [],
}


def _serialize(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {**event, "serialized": True}


def _classify(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {**event, "inferences": [0.93, 0.07]}


def _filter(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if max(event["inferences"]) < 0.9:
        raise ValueError("THRESHOLD_CONFIDENCE_NOT_MET")
    return event


def bench_scones(seconds: float) -> dict[str, Any]:
    machine = load(DEFINITION)
    resources = (
        Resources()
        .register_lambda("serializeImageData", _serialize)
        .register_lambda("classifyImage", _classify)
        .register_lambda("filterLowConfidence", _filter)
    )
    # Warm up, and check the result and the recorded history once.
    ex = execute(machine, INPUT, resources)
    assert ex.status == "SUCCEEDED", (ex.status, ex.error, ex.cause)
    events = len(ex.history)
    n = 0
    start = time.perf_counter()
    cpu0 = time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(100):
            execute(machine, INPUT, resources, check_resources=False)
        n += 100
        if time.perf_counter() >= deadline:
            break
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    return {
        "executions": n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "executions_per_s": round(n / wall, 1),
        # CPU-time rate: what one core sustains even when the machine is shared.
        "executions_per_cpu_s": round(n / cpu, 1) if cpu > 0 else None,
        "events_per_execution": events,
    }


def bench_moto(seconds: float, max_executions: int = 200) -> dict[str, Any] | None:
    try:
        import boto3
        from moto import mock_aws
    except ImportError:
        return None
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with mock_aws(config=config):  # type: ignore[arg-type]
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="sfn-bench", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda", region_name="us-east-1")
        for fn in ("serializeImageData", "classifyImage", "filterLowConfidence"):
            lam.create_function(
                FunctionName=fn,
                Runtime="python3.11",
                Role=role,
                Handler="h.handler",
                Code={"ZipFile": b"def handler(e, c):\n    return e\n"},
            )
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="bench", definition=json.dumps(DEFINITION), roleArn=role
        )["stateMachineArn"]

        counter = iter(range(10**9))

        def one() -> tuple[str, int]:
            ex_arn = sfn.start_execution(
                stateMachineArn=arn, name=f"e{next(counter)}", input=json.dumps(INPUT)
            )["executionArn"]
            while True:
                status = sfn.describe_execution(executionArn=ex_arn)["status"]
                if status != "RUNNING":
                    break
                time.sleep(0.0005)
            hist = sfn.get_execution_history(executionArn=ex_arn, maxResults=1000)["events"]
            return status, len(hist)

        status, events = one()
        n = 0
        cpu0 = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline and n < max_executions:
            one()
            n += 1
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    return {
        "executions": n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "executions_per_s": round(n / wall, 1),
        "executions_per_cpu_s": round(n / cpu, 1) if cpu > 0 else None,
        "status": status,
        "events_per_execution": events,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time per side")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-moto", action="store_true")
    args = ap.parse_args(argv)
    ours = bench_scones(args.seconds)
    moto = None if args.no_moto else bench_moto(args.seconds)
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "scones_asl": ours,
        "moto": moto,
        "ratio": round(ours["executions_per_s"] / moto["executions_per_s"], 1) if moto else None,
        "ratio_cpu": (
            round(ours["executions_per_cpu_s"] / moto["executions_per_cpu_s"], 1)
            if moto and moto.get("executions_per_cpu_s") and ours.get("executions_per_cpu_s")
            else None
        ),
        "goal_executions_per_s": 1000,
        "goal_met": ours["executions_per_s"] >= 1000,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"scones.asl: {ours['executions_per_s']:.0f} executions/s on one thread "
            f"({ours['executions_per_cpu_s']:.0f} per CPU-second) "
            f"({ours['executions']} executions, {ours['events_per_execution']} history events each)"
        )
        if moto:
            print(
                f"moto (LocalStack interpreter): {moto['executions_per_s']:.1f} executions/s "
                f"({moto['executions']} executions, status {moto['status']}, "
                f"{moto['events_per_execution']} events)"
            )
            print(
                f"ratio scones.asl / moto: {result['ratio']}x wall-clock, "
                f"{result['ratio_cpu']}x per CPU-second"
            )
        else:
            print("moto: not importable, skipped")
        print(f"goal 1000 executions/s: {'met' if result['goal_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
