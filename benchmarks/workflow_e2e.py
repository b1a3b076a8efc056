"""Images per second through the whole workflow, and the runtime's own share of the time.

Starts `scones serve` (the tiny colour model, or --model) in this run, stages real CIFAR-100
images from ../shared into a temporary local store, then measures at --concurrency:

- handlers: the three Lambda handlers called directly in a thread pool (store read, HTTP to
  the endpoint, filter). The baseline: the work the workflow cannot avoid.
- workflow: the same images as executions of the real state machine on the ASL runtime,
  each persisted in SQLite (RUNNING row, then status, output and full history).
- runtime only: the same executions with handlers that return precomputed results, so only
  orchestration and persistence are left (executions/s of the runtime itself).
- unpersisted: the workflow with a store that keeps nothing. Not a way to run: it shows how
  much of the runtime's share is the interpreter alone, a floor that no persistence scheme
  can go under.
- endpoint ceiling: the same PNGs posted straight to the endpoint's /invocations from
  kept-alive connections, at --concurrency and at --ceiling-concurrency (its micro-batches
  fill up), nothing else: the most images/s this endpoint gives on this machine now. The
  workflow's images/s is reported against the higher of the two.

runtime share (CPU, the goal's measure) = client CPU the workflow spends beyond the handlers'
own / all CPU of the workflow run (client and endpoint processes). Also shown: the wall view,
(workflow seconds - handlers seconds) / workflow seconds. Goals: >= 300 images/s (issue 6) and
runtime share of CPU < 25% (issue 18).

    .venv/bin/python benchmarks/workflow_e2e.py [--images 600] [--concurrency 16] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_VEHICLES = REPO.parent / "shared" / "data" / "cifar100-vehicles"
GOAL_IMAGES_PER_S = 300.0
GOAL_RUNTIME_SHARE = 0.25


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_endpoint(
    model_dir: Path, home: Path, intra_op_threads: int = 0
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    process = subprocess.Popen(
        [
            str(REPO / ".venv/bin/scones"),
            "serve",
            "--model",
            str(model_dir),
            "--port",
            str(port),
            "--no-capture",
            "--intra-op-threads",
            str(intra_op_threads),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("scones serve exited during start-up")
        try:
            with urllib.request.urlopen(url + "/ping", timeout=1) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("scones serve did not become ready")


def stage_images(store_root: Path, count: int) -> list[str]:
    from scones.data.layout import read_lst
    from scones.store import open_store

    source = open_store(str(SHARED_VEHICLES))
    store = open_store(str(store_root))
    entries = read_lst(source, "train")
    keys = []
    for index in range(count):
        entry = entries[index % len(entries)]
        key = f"test/{index:05d}-{entry.path}"
        store.put(key, source.get(f"train/{entry.path}"))
        keys.append(key)
    return keys


def run_handlers_directly(
    keys: list[str], concurrency: int, server_pid: int | None = None
) -> dict[str, Any]:
    """The three handlers in a thread pool; 'value' maps each key to its classifier body."""
    from scones.functions import classify_image, filter_inferences, serialize_image_data

    def one(key: str) -> dict[str, Any]:
        body = serialize_image_data.handler(
            {"s3_bucket": "scones", "s3_key": key, "image_data": ""}, None
        )["body"]
        body = classify_image.handler(body, None)["body"]
        with contextlib.suppress(filter_inferences.ThresholdConfidenceNotMet):
            filter_inferences.handler(body, None)
        return body

    with ThreadPoolExecutor(concurrency) as pool:
        result = _timed(lambda: list(pool.map(one, keys)), len(keys), server_pid)
    result["value"] = {body["s3_key"]: body for body in result["value"]}
    return result


def run_endpoint_directly(
    url: str, images: list[bytes], concurrency: int, server_pid: int
) -> dict[str, Any]:
    """POST each image to /invocations from ``concurrency`` kept-alive connections."""
    import http.client
    import socket
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    local = threading.local()

    def post(image: bytes) -> bytes:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=30
            )
            connection.connect()
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.request(
            "POST", "/invocations", body=image, headers={"Content-Type": "image/png"}
        )
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"endpoint answered {response.status}: {body[:200]!r}")
        return body

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, images[:concurrency]))  # connect every thread first
        result = _timed(lambda: list(pool.map(post, images)), len(images), server_pid)
    result.pop("value")
    result["concurrency"] = concurrency
    return result


def run_workflow(
    db_path: Path | None, keys: list[str], concurrency: int, overrides=None, server_pid=None
) -> dict:
    """The executions on the ASL runtime, persisted in ``db_path`` (None: persisted nowhere)."""
    from scones.workflow.executions import ExecutionStore
    from scones.workflow.local import local_runner

    with (
        ExecutionStore(db_path) if db_path is not None else NullStore() as db,
        local_runner(db, max_concurrency=concurrency, overrides=overrides) as runner,
    ):
        inputs = [(None, {"s3_bucket": "scones", "s3_key": k, "image_data": ""}) for k in keys]
        # What a batch run keeps of each record (`scones run` keeps its outcome):
        # not the histories, which would pile up.
        result = _timed(
            lambda: runner.run_all(inputs, keep=lambda r: (r.status, len(r.history))),
            len(keys),
            server_pid,
        )
        kept = result.pop("value")
        result["succeeded"] = sum(status == "SUCCEEDED" for status, _ in kept)
        result["failed"] = sum(status == "FAILED" for status, _ in kept)
        result["other"] = len(kept) - result["succeeded"] - result["failed"]
        result["history_events"] = sum(events for _, events in kept)
    return result


class NullStore(contextlib.AbstractContextManager):
    """An execution store that keeps nothing: the runtime's cost without persistence, a
    floor no persistence scheme can go under (a diagnostic, not a way to run)."""

    def start(
        self, state_machine: str, name: str, input: Any, *, generated_name: bool = False
    ) -> tuple[Any, bool]:
        from scones.times import utc_now
        from scones.workflow.executions import ExecutionRecord, execution_id_for

        record = ExecutionRecord(
            execution_id_for(state_machine, name),
            name,
            state_machine,
            "RUNNING",
            input,
            None,
            None,
            None,
            utc_now(),
            None,
            [],
        )
        return record, True

    def finish(self, running: Any, *, status: str, history: list, **fields: Any) -> Any:
        import dataclasses

        return dataclasses.replace(running, status=status, history=history)

    def finish_later(self, running: Any, **fields: Any) -> Any:
        from scones.workflow.executions import PendingFinish

        return PendingFinish.done(self.finish(running, **fields))

    def __exit__(self, *exc_info: object) -> None:
        return None


def precomputed_handlers(bodies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Handlers that answer at once with what the real ones answered for each key.

    The executions then take the same paths (succeeded or failed on the threshold) with the
    same payloads as the real workflow, minus the store read and the endpoint call. The
    filter is the real one: it is pure Python and microseconds.
    """

    def serialize(event: dict, context: object) -> dict:
        body = bodies[event["s3_key"]]
        return {
            "statusCode": 200,
            "body": {**event, "image_data": body["image_data"], "inferences": []},
        }

    def classify(event: dict, context: object) -> dict:
        return {"statusCode": 200, "body": dict(bodies[event["s3_key"]])}

    return {"serialize_image_data": serialize, "classify_image": classify}


def _timed(fn, count: int, server_pid: int | None = None) -> dict[str, Any]:
    import psutil

    server = psutil.Process(server_pid) if server_pid else None
    server0 = sum(server.cpu_times()[:2]) if server else 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    value = fn()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    server_cpu = (sum(server.cpu_times()[:2]) - server0) if server else 0.0
    return {
        "images": count,
        "seconds": wall,
        "images_per_s": count / wall,
        "client_cpu_s": cpu,
        "server_cpu_s": server_cpu,
        "value": value,
    }


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (rounds interleave modes: load hits all alike)."""
    ordered = sorted(rows, key=lambda row: row["images_per_s"])
    return ordered[len(ordered) // 2]


def measure(
    keys: list[str],
    concurrency: int,
    rounds: int,
    tmp_path: Path,
    server_pid: int,
    url: str,
    ceiling_concurrency: int,
) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {
        "handlers": [],
        "workflow": [],
        "runtime_only": [],
        "unpersisted": [],
        "endpoint": [],
        "endpoint_wide": [],
    }
    images = [(tmp_path / "store" / key).read_bytes() for key in keys]
    warm = keys[: min(64, len(keys))]
    run_handlers_directly(warm, concurrency)
    run_workflow(tmp_path / "warm.db", warm, concurrency)
    run_endpoint_directly(url, images[:64], ceiling_concurrency, server_pid)
    for round_index in range(rounds):
        rows["endpoint"].append(run_endpoint_directly(url, images, concurrency, server_pid))
        rows["endpoint_wide"].append(
            run_endpoint_directly(url, images, ceiling_concurrency, server_pid)
        )
        handlers = run_handlers_directly(keys, concurrency, server_pid)
        bodies = handlers.pop("value")
        rows["handlers"].append(handlers)
        rows["workflow"].append(
            run_workflow(
                tmp_path / f"workflow-{round_index}.db", keys, concurrency, server_pid=server_pid
            )
        )
        rows["unpersisted"].append(run_workflow(None, keys, concurrency, server_pid=server_pid))
        rows["runtime_only"].append(
            run_workflow(
                tmp_path / f"runtime-{round_index}.db",
                keys,
                concurrency,
                precomputed_handlers(bodies),
                server_pid=server_pid,
            )
        )
    return rows


def build_model_elsewhere(model_dir: Path) -> Path:
    """The tests' tiny real ONNX model, built in another process: onnx and the test
    helpers stay out of this one, whose garbage-collector passes then walk what a
    ``scones run`` process holds, not tens of thousands of objects more."""
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "from conftest import build_tiny_model; build_tiny_model(Path(sys.argv[2]))"
    )
    subprocess.run([sys.executable, "-c", script, str(REPO / "tests"), str(model_dir)], check=True)
    return model_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=600, help="images per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument(
        "--ceiling-concurrency",
        type=int,
        default=64,
        help="concurrent requests for the endpoint's ceiling (besides --concurrency)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="extracted model folder (default: the tiny colour test model)",
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=0,
        help="the endpoint's ONNX Runtime threads (0: its default, one per core). Its CPU per "
        "image is part of the share's denominator: 1 shows the share against a leaner endpoint",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if not (SHARED_VEHICLES / "train.lst").is_file():
        raise SystemExit(f"shared images missing: {SHARED_VEHICLES}")

    with tempfile.TemporaryDirectory(prefix="scones-bench-") as tmp:
        tmp_path = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            model_dir = build_model_elsewhere(tmp_path / "model")
        os.environ["SCONES_HOME"] = str(tmp_path / "home")
        os.environ["SCONES_STORE"] = str(tmp_path / "store")
        keys = stage_images(tmp_path / "store", args.images)
        server, url = start_endpoint(model_dir, tmp_path / "serve-home", args.intra_op_threads)
        os.environ["SCONES_ENDPOINT_URL"] = url
        try:
            rows = measure(
                keys,
                args.concurrency,
                args.rounds,
                tmp_path,
                server.pid,
                url,
                args.ceiling_concurrency,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)

    handlers = _median_row(rows["handlers"])
    workflow = _median_row(rows["workflow"])
    runtime_only = _median_row(rows["runtime_only"])
    unpersisted = _median_row(rows["unpersisted"])
    ceiling = max(
        (_median_row(rows["endpoint"]), _median_row(rows["endpoint_wide"])),
        key=lambda row: row["images_per_s"],
    )
    # Wall-clock view: what the workflow adds on top of its handlers' own work.
    wall_share = max(0.0, 1 - handlers["seconds"] / workflow["seconds"])
    # CPU view, robust to other load on a shared machine: the client CPU the workflow spends
    # beyond the handlers', over all CPU the workflow run used (client and endpoint).
    runtime_cpu = max(0.0, workflow["client_cpu_s"] - handlers["client_cpu_s"])
    cpu_share = runtime_cpu / (workflow["client_cpu_s"] + workflow["server_cpu_s"])
    # The same measure within each round (its handlers and workflow runs are back to back).
    round_shares = sorted(
        max(0.0, w["client_cpu_s"] - h["client_cpu_s"]) / (w["client_cpu_s"] + w["server_cpu_s"])
        for h, w in zip(rows["handlers"], rows["workflow"], strict=True)
    )
    floor_cpu = max(0.0, unpersisted["client_cpu_s"] - handlers["client_cpu_s"])
    floor_share = floor_cpu / (unpersisted["client_cpu_s"] + unpersisted["server_cpu_s"])
    per_image_ms = {
        "handlers_client_cpu": handlers["client_cpu_s"] / args.images * 1e3,
        "endpoint_cpu": workflow["server_cpu_s"] / args.images * 1e3,
        "runtime_cpu": runtime_cpu / args.images * 1e3,
        "runtime_only_cpu": runtime_only["client_cpu_s"] / args.images * 1e3,
        "endpoint_alone_cpu": ceiling["server_cpu_s"] / args.images * 1e3,
        "runtime_unpersisted_cpu": floor_cpu / args.images * 1e3,
    }
    result = {
        "images": args.images,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "handlers": handlers,
        "workflow": workflow,
        "runtime_only": runtime_only,
        "unpersisted": unpersisted,
        "endpoint_ceiling": ceiling,
        "all_rounds": rows,
        "workflow_vs_handlers": workflow["images_per_s"] / handlers["images_per_s"],
        "workflow_vs_ceiling": workflow["images_per_s"] / ceiling["images_per_s"],
        "runtime_share_wall": wall_share,
        "runtime_share_cpu": cpu_share,
        "runtime_share_cpu_rounds": round_shares,
        "runtime_share_cpu_unpersisted": floor_share,
        "per_image_ms": per_image_ms,
        "goal_images_per_s": GOAL_IMAGES_PER_S,
        "goal_runtime_share": GOAL_RUNTIME_SHARE,
        "meets_throughput_goal": workflow["images_per_s"] >= GOAL_IMAGES_PER_S,
        "meets_share_goal": cpu_share < GOAL_RUNTIME_SHARE,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{args.images} images x {args.rounds} interleaved rounds (medians), concurrency "
        f"{args.concurrency}, {os.cpu_count()} CPUs, load average "
        + " ".join(f"{load:.2f}" for load in result["load_average"])
    )
    print(
        f"{'mode':<14}{'seconds':>9}{'images/s':>11}{'vs handlers':>13}"
        f"{'client CPU s':>14}{'endpoint CPU s':>16}"
    )
    for name, row in (
        ("handlers", handlers),
        ("workflow", workflow),
        ("runtime only", runtime_only),
        ("unpersisted", unpersisted),
        (f"endpoint c{ceiling['concurrency']}", ceiling),
    ):
        ratio = row["images_per_s"] / handlers["images_per_s"]
        print(
            f"{name:<14}{row['seconds']:>9.2f}{row['images_per_s']:>11.1f}{ratio:>12.2f}x"
            f"{row['client_cpu_s']:>14.2f}{row['server_cpu_s']:>16.2f}"
        )
    print(
        f"workflow executions: {workflow['succeeded']} succeeded, {workflow['failed']} failed "
        f"(threshold), {workflow['history_events']} history events persisted"
    )
    print("CPU per image (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in per_image_ms.items()))
    print(
        f"end to end: {workflow['images_per_s']:.0f} images/s, "
        f"{result['workflow_vs_ceiling']:.2f} of the endpoint's ceiling "
        f"({ceiling['images_per_s']:.0f} images/s at concurrency {ceiling['concurrency']})"
    )
    print(
        f"runtime share: {cpu_share:.1%} of CPU (goal < {GOAL_RUNTIME_SHARE:.0%}: "
        f"{'met' if result['meets_share_goal'] else 'NOT met'}; rounds "
        + ", ".join(f"{share:.1%}" for share in round_shares)
        + f"), {wall_share:.1%} of wall time; {floor_share:.1%} of CPU with nothing persisted"
    )
    print(
        f"throughput goal >= {GOAL_IMAGES_PER_S:.0f} images/s: "
        f"{'met' if result['meets_throughput_goal'] else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
