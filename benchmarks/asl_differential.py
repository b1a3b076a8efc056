"""The differential fuzzer as a benchmark: a long seeded run of `scones.asl` against moto.

    .venv/bin/python benchmarks/asl_differential.py [--seed 1] [--count 10000] [--jobs N] [--json]

Prints the executions per second of the comparison, the disagreements by triaged cause
(scones.asl.differential.CAUSES) and by class, and exits 1 when any disagreement has no
triaged cause. `make test` runs a short seeded run of the same (tests/asl); the 100,000-case
run recorded in docs/asl-conformance.md is `--seed 2026 --count 100000 --jobs 2 --no-shrink`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from scones.asl.differential import run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="the generator's seed")
    parser.add_argument("--count", type=int, default=10_000, help="cases to run")
    parser.add_argument("--jobs", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--no-shrink", action="store_true", help="keep each class's first case")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    report = run(args.seed, args.count, shrink_cases=not args.no_shrink, jobs=args.jobs)
    summary = report.to_dict()
    summary.update(
        machine=f"{platform.machine()}, {os.cpu_count()} cores",
        date=time.strftime("%a %b %d %H:%M:%S %Z %Y"),
        executions_per_s=round(report.executions / max(report.seconds, 1e-9), 1),
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['executions']} cases (seed {args.seed}) in {summary['seconds']} s "
            f"({summary['executions_per_s']}/s on {summary['machine']}): "
            f"{summary['disagreements']} disagreements in {len(summary['classes'])} classes, "
            f"{summary['unexplained']} unexplained"
        )
        for entry in summary["causes"]:
            print(f"  {entry['count']:7d}  {entry['verdict']:12s} {entry['cause']}")
    return 1 if report.unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
