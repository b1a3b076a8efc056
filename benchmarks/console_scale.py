"""The workflow console over 100,000 executions: the executions page's server time.

Fills an executions database with 100,000 executions (90% succeeded, 10% failed under the
threshold, each with the full history of a real run of the single-image state machine on the
ASL runtime, stub handlers), then serves the dashboard on a real socket and times
``GET /executions`` (HTML: the query, each row's class and confidence, escaping) at the first,
middle and last page, a filtered page, a search, and ``/state-machines/<name>``.

The baseline, timed in the same run on the same database, is the usual way to page: the same
page's rows by ``LIMIT 50 OFFSET n`` (rows only, no HTML), which reads every row before the
page. The goal: every page under 100 ms server time whatever its depth (a live refresh every
5 s must stay cheap), and no query plan that scans the executions table.

    .venv/bin/python benchmarks/console_scale.py [--executions 100000] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scones.asl import FakeClock
from scones.dashboard.app import DashboardConfig, create_app
from scones.monitor.runner import MonitorOptions
from scones.workflow.definitions import STATE_MACHINE_NAMES
from scones.workflow.executions import ExecutionStore, compress_history, to_json
from scones.workflow.local import local_runner

PAGE = 50
START = datetime(2026, 11, 1, tzinfo=UTC)
REPEATS = 15


def template_histories(folder: Path) -> dict[str, Any]:
    """A real succeeded and a real failed execution, run with stub handlers (no endpoint)."""

    # As big and as incompressible as a CIFAR image's base64 (about 3 KB of PNG).
    image_data = base64.b64encode(random.Random(0).randbytes(3000)).decode()

    def serialize(event: dict, context: Any) -> dict:
        return {"statusCode": 200, "body": {**event, "image_data": image_data}}

    def classify(event: dict, context: Any) -> dict:
        confident = "red" in event["s3_key"]
        inferences = [0.98, 0.02] if confident else [0.61, 0.39]
        body = {**event, "inferences": inferences, "classes": ["bicycle", "motorcycle"]}
        return {"statusCode": 200, "body": body}

    def filter_(event: dict, context: Any) -> dict:
        if max(event["inferences"]) < 0.93:
            error = type("ThresholdConfidenceNotMet", (Exception,), {})
            raise error(f"image {event['s3_key']!r}: top class 'bicycle' has confidence 0.61")
        return {"statusCode": 200, "body": event}

    overrides = {
        "serialize_image_data": serialize,
        "classify_image": classify,
        "filter_inferences": filter_,
    }
    with (
        ExecutionStore(folder / "template.db") as db,
        local_runner(db, clock=FakeClock(), overrides=overrides) as runner,
    ):
        passed = runner.start({"s3_bucket": "scones", "s3_key": "red.png", "image_data": ""})
        failed = runner.start({"s3_bucket": "scones", "s3_key": "grey.png", "image_data": ""})
    assert passed.status == "SUCCEEDED" and failed.status == "FAILED", failed.cause
    return {"SUCCEEDED": passed, "FAILED": failed}


def fill(db_path: Path, count: int, templates: dict[str, Any]) -> float:
    """``count`` executions, one a second, in one transaction; returns seconds taken."""
    began = time.perf_counter()
    ExecutionStore(db_path).close()  # the schema and its indexes
    machine = STATE_MACHINE_NAMES["single"]
    blobs = {status: compress_history(r.history) for status, r in templates.items()}
    connection = sqlite3.connect(db_path)
    rows = []
    for index in range(count):
        status = "FAILED" if index % 10 == 3 else "SUCCEEDED"
        record = templates[status]
        name = f"exec-{index:06d}"
        key = f"test/img-{index:06d}.png"
        execution_id = f"arn:aws:states:us-east-1:000000000000:execution:{machine}:{name}"
        started = START + timedelta(seconds=index)
        stopped = started + timedelta(milliseconds=40)
        output = record.output if status == "SUCCEEDED" else None
        rows.append(
            (
                execution_id,
                name,
                machine,
                status,
                to_json({**record.input, "s3_key": key}),
                None if output is None else to_json(output),
                record.error,
                record.cause,
                started.isoformat(timespec="microseconds"),
                stopped.isoformat(timespec="microseconds"),
                blobs[status],
            )
        )
    with connection:
        connection.executemany(
            "INSERT INTO executions (execution_id, name, state_machine, status, input, output,"
            " error, cause, started_at, stopped_at, history_zlib)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        # execution_keys: the insert trigger adds each row's s3_key.
    connection.close()
    return time.perf_counter() - began


def cursor_at(db_path: Path, offset: int) -> str:
    with sqlite3.connect(db_path) as connection:
        started, rowid = connection.execute(
            "SELECT started_at, rowid FROM executions ORDER BY started_at DESC, rowid DESC "
            "LIMIT 1 OFFSET ?",
            (offset,),
        ).fetchone()
    return f"{started}~{rowid}"


def offset_seconds(db_path: Path, offset: int) -> float:
    """The baseline: the same page's rows by OFFSET (median of REPEATS)."""
    times = []
    with sqlite3.connect(db_path) as connection:
        for _ in range(REPEATS):
            began = time.perf_counter()
            connection.execute(
                "SELECT execution_id, name, status, input, output, error, started_at "
                "FROM executions ORDER BY started_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (PAGE, offset),
            ).fetchall()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def query_plans(db_path: Path, cursor: str) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of the page queries, to show each is an index range."""
    from scones.workflow.executions import PageQuery

    plans = {}
    with sqlite3.connect(db_path) as connection:
        for label, query in {
            "first": PageQuery(),
            "middle": PageQuery(before=cursor),
            "status": PageQuery(status="FAILED", state_machine=STATE_MACHINE_NAMES["single"]),
            "search": PageQuery(search="test/img-0500"),
        }.items():
            where, params = query.where()
            if query.before:
                where.append("(started_at, rowid) < (?, ?)")
                started, rowid = query.before.split("~")
                params.extend([started, int(rowid)])
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            sql = (
                f"EXPLAIN QUERY PLAN SELECT rowid FROM executions {clause} "
                "ORDER BY started_at DESC, rowid DESC LIMIT 50"
            )
            plans[label] = [row[3] for row in connection.execute(sql, params)]
    return plans


def serve(config: DashboardConfig) -> tuple[str, Any]:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}", server


def timed_get(url: str) -> dict[str, float]:
    """Wall time of the first GET (cold: nothing cached), then median and max of REPEATS."""
    times = []
    for _ in range(REPEATS + 1):
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
            assert response.status == 200, url
        times.append(time.perf_counter() - began)
    assert b"<table id='executions'" in body or b"<svg" in body
    return {
        "cold_ms": times[0] * 1000,
        "median_ms": statistics.median(times[1:]) * 1000,
        "max_ms": max(times[1:]) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="console-scale-") as tmp:
        folder = Path(tmp)
        os.environ.setdefault("SCONES_HOME", str(folder / "home"))
        templates = template_histories(folder)
        db_path = folder / "scones.db"
        fill_seconds = fill(db_path, args.executions, templates)
        middle = args.executions // 2
        cursor = cursor_at(db_path, middle - 1)
        config = DashboardConfig(
            monitor=MonitorOptions(capture_uri=str(folder / "capture"), endpoint_name="bench"),
            db_path=db_path,
            window=None,
        )
        base, server = serve(config)
        machine = STATE_MACHINE_NAMES["single"]
        pages = {
            "first page": "/executions",
            "middle page": f"/executions?before={urllib.request.quote(cursor)}",
            "last page": "/executions?oldest=1",
            "FAILED of one machine": f"/executions?status=FAILED&state_machine={machine}",
            "search by key prefix": "/executions?q=test/img-05000",
            "last 2 h": "/executions?since=2026-11-02T00:00:00Z&until=2026-11-02T02:00:00Z",
            "state machine page": f"/state-machines/{machine}",
        }
        try:
            results = {label: timed_get(base + path) for label, path in pages.items()}
        finally:
            server.should_exit = True
        baseline = {
            "first page": offset_seconds(db_path, 0) * 1000,
            "middle page": offset_seconds(db_path, middle) * 1000,
            "last page": offset_seconds(db_path, args.executions - PAGE) * 1000,
        }
        plans = query_plans(db_path, cursor)
    report = {
        "executions": args.executions,
        "fill_seconds": round(fill_seconds, 1),
        "pages": results,
        "offset_baseline_rows_ms": baseline,
        "plans": plans,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.executions} executions written in {fill_seconds:.1f} s")
    print(f"{'page':<24} {'cold ms':>8} {'median ms':>10} {'max ms':>8}   OFFSET rows (baseline)")
    for label, f in results.items():
        extra = f"{baseline[label]:.1f} ms" if label in baseline else ""
        times = f"{f['cold_ms']:>8.1f} {f['median_ms']:>10.1f} {f['max_ms']:>8.1f}"
        print(f"{label:<24} {times}   {extra}")
    for label, plan in plans.items():
        print(f"plan {label}: {' | '.join(plan)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
