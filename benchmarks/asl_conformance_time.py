"""Time of the ASL conformance run: the 751 recorded AWS executions on scones.asl.

    .venv/bin/python benchmarks/asl_conformance_time.py [--cases DIR] [--json]

Goal: the whole run under 30 s (it runs in `make test`). In the same run, the baseline is
the time to read and parse the case files alone, so the interpreter's share shows apart
from disk and JSON. (This goal was a wall-clock assert in tests/asl until it moved here.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from scones.asl.conformance import run_all

REPO = Path(__file__).resolve().parents[1]
CASES = REPO.parent / "shared" / "asl-conformance" / "cases"
GOAL_S = 30.0
T = TypeVar("T")


def timed(work: Callable[[], T]) -> tuple[float, float, T]:
    """Wall and CPU seconds of ``work()``, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES, help="folder of case JSON files")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    files = sorted(args.cases.glob("*.json"))
    if not files:
        print(f"no conformance cases in {args.cases}", file=sys.stderr)
        return 2
    read_wall, read_cpu, _ = timed(lambda: [json.loads(f.read_text("utf-8")) for f in files])
    run_wall, run_cpu, report = timed(lambda: run_all(args.cases))
    overall = report["overall"]
    result = {
        "cases": overall["cases"],
        "passing": overall["status_error_cause_output"],
        "run_wall_s": round(run_wall, 2),
        "run_cpu_s": round(run_cpu, 2),
        "baseline_read_wall_s": round(read_wall, 3),
        "baseline_read_cpu_s": round(read_cpu, 3),
        "goal_wall_s": GOAL_S,
        "goal_met": run_wall < GOAL_S,
        "machine": f"{os.cpu_count()} CPUs {platform.machine()}, "
        f"Python {platform.python_version()}",
        "load_average": round(os.getloadavg()[0], 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['cases']} cases ({result['passing']} passing) in {run_wall:.1f} s wall, "
            f"{run_cpu:.1f} s CPU; reading them alone: {read_wall:.2f} s; goal < {GOAL_S:.0f} s: "
            f"{'met' if result['goal_met'] else 'NOT met'} ({result['machine']}, "
            f"load {result['load_average']})"
        )
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
