"""Throughput of scones.asl on a three-Task Lambda machine, with the full history recorded.

    .venv/bin/python benchmarks/asl_throughput.py [--seconds S] [--json]

Measures executions per second on one core (one thread, in-process handlers). If moto is
importable, the same machine also runs on moto's Step Functions interpreter (LocalStack's,
embedded in moto) driven in process: its backend called directly, each execution run to its
end on the calling thread, the Lambda tasks answered by the same Python handlers. Both
sides therefore do the same work, and the ratio is printed (wall and per CPU-second).
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


HANDLERS = {
    "serializeImageData": _serialize,
    "classifyImage": _classify,
    "filterLowConfidence": _filter,
}


def bench_moto(seconds: float, max_executions: int = 100_000) -> dict[str, Any] | None:
    """moto's interpreter (LocalStack's, in moto.stepfunctions.parser) driven in process, as
    the conformance baseline was produced, by the differential fuzzer's driver: its backend
    called directly (no HTTP, no polling), each execution run to its end on this thread, the
    Lambda tasks answered by the same Python handlers our side calls."""
    from scones.asl.differential import MotoInterpreter, MotoMissingError

    try:
        moto = MotoInterpreter(HANDLERS)
    except MotoMissingError:
        return None
    with moto.patched():
        status, events = _moto_once(moto)
        n = 0
        cpu0 = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline and n < max_executions:
            _moto_once(moto)
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


def _moto_once(moto: Any) -> tuple[str, int]:
    outcome = moto.run(DEFINITION, INPUT)
    return outcome.status, len(outcome.event_types)


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
