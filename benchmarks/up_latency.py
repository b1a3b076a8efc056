"""Seconds from an image dropped into incoming/ to its finished execution, under `scones up`.

Starts the real service (`scones up`: endpoint + watcher + dashboard, a subprocess) on a
temporary SCONES_HOME, copies real CIFAR-100 PNGs from ../shared one at a time into the
store's incoming/ folder (as a user would: plain file copies), and waits for each execution
to finish in the executions database. Baseline, in the same run: the same images run
straight through the state machine (`scones run`'s code path) with the same endpoint, so the
ratio shows what the trigger adds (notification, settle time, scan). Goal (issue 8): an image
dropped into incoming/ is classified within a second.

    .venv/bin/python benchmarks/up_latency.py [--images 20] [--model DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "cifar100-vehicles" / "train"
GOAL_SECONDS = 1.0


def _free_port() -> int:
    from scones.service import free_port

    return free_port()


def _finished(db: Path) -> dict[str, str]:
    from scones.workflow.executions import ExecutionStore

    with ExecutionStore(db) as executions:
        return {
            r.input["s3_key"]: r.status
            for r in executions.list(limit=10_000)
            if r.status != "RUNNING"
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20, help="images to drop, one at a time")
    parser.add_argument("--model", type=Path, default=None, help="extracted model folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    images = sorted(SHARED_TRAIN.glob("*.png"))[: args.images]
    with tempfile.TemporaryDirectory(prefix="scones-up-bench-") as tmp:
        tmp_path = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            sys.path.insert(0, str(REPO / "tests"))
            from conftest import build_tiny_model  # the same real ONNX model the tests use

            model_dir = build_tiny_model(tmp_path / "model")
        home = tmp_path / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
        env["SCONES_HOME"] = str(home)
        port, dashboard = _free_port(), _free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scones",
                "up",
                "--model",
                str(model_dir),
                "--port",
                str(port),
                "--dashboard-port",
                str(dashboard),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        latencies: list[float] = []
        try:
            incoming = home / "store" / "incoming"
            deadline = time.monotonic() + 120
            while not incoming.is_dir():
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("scones up did not start")
                time.sleep(0.05)
            db = home / "scones.db"
            for image in images:
                key = f"incoming/{image.name}"
                dropped = time.monotonic()
                shutil.copyfile(image, incoming / image.name)
                while key not in _finished(db):
                    if time.monotonic() - dropped > 30:
                        raise SystemExit(f"{key} was not classified within 30 s")
                    time.sleep(0.005)
                latencies.append(time.monotonic() - dropped)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)

        # Baseline: the same images straight through the state machine, same endpoint kind.
        from scones.service import ChildProcess
        from scones.store import open_store
        from scones.workflow import runs
        from scones.workflow.executions import ExecutionStore

        store_root = tmp_path / "direct-store"
        store = open_store(str(store_root))
        for image in images:
            store.put(f"test/{image.name}", image.read_bytes())
        port = _free_port()
        endpoint = ChildProcess.scones(
            "endpoint",
            ["serve", "--model", str(model_dir), "--port", str(port), "--no-capture"],
            ready_url=f"http://127.0.0.1:{port}/ping",
        )
        endpoint.start()
        direct: list[float] = []
        try:
            runs.configure_local_functions(
                endpoint_url=f"http://127.0.0.1:{port}",
                threshold=0.93,
                bucket_store=("scones", str(store_root)),
            )
            with ExecutionStore(tmp_path / "direct.db") as db_store:
                for image in images:
                    started = time.monotonic()
                    runs.run_single_executions(db_store, "scones", [f"test/{image.name}"])
                    direct.append(time.monotonic() - started)
        finally:
            endpoint.stop()

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "images": len(latencies),
        "drop_to_done_p50_s": statistics.median(latencies),
        "drop_to_done_max_s": max(latencies),
        "direct_execution_p50_s": statistics.median(direct),
        "trigger_overhead_p50_s": statistics.median(latencies) - statistics.median(direct),
        "goal_s": GOAL_SECONDS,
        "meets_goal": max(latencies) < GOAL_SECONDS,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, value in result.items():
            print(f"{name:26} {value:.3f}" if isinstance(value, float) else f"{name:26} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
