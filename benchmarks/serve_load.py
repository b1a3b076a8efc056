"""Load test of the real endpoint: `scones serve` on loopback, driven with real PNGs.

Measures requests/s and p50/p95/p99 latency at concurrency 1, 8, 32 and 128, and in the
same run the raw ONNX Runtime throughput of the same model (batch 1 and 32, no HTTP) as the
ceiling. Goals (2 cores): at concurrency 32 at least 50% of raw batch-32 throughput; p99
under 25 ms at concurrency 8. The load generator is a lean asyncio HTTP/1.1 keep-alive client
(one connection per concurrent user, like wrk) because it shares the CPU with the server.

    .venv/bin/python benchmarks/serve_load.py [--model DIR] [--backbone efficientnet-lite0
        [--recipe JSON]] [--duration 5] [--json]

Without ``--model`` it builds a model of the real architecture (scones.model.net, random
weights: speed does not depend on the weights) and exports it to ONNX in a temp folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "cifar100-vehicles" / "train"
SCONES = Path(sys.executable).parent / "scones"
CONCURRENCIES = (1, 8, 32, 128)


def build_model(
    folder: Path,
    width: int = 32,
    backbone: str = "scratch",
    overrides: dict[str, Any] | None = None,
) -> Path:
    """The real architecture (flip-averaged VehicleNet of ``width``, or the transfer model of
    the default recipe, or of ``overrides`` to it) exported to ONNX."""
    import warnings

    import torch

    from scones.model.artifact import MODEL_JSON, MODEL_ONNX, ModelCard
    from scones.model.efficientnet import EfficientNetLite0
    from scones.model.net import FlipAveragedClassifier, VehicleNet
    from scones.model.preprocess import Preprocessing

    torch.manual_seed(0)
    prep = Preprocessing()
    if backbone == "scratch":
        net: torch.nn.Module = VehicleNet(num_classes=2, width=width)
        architecture = {"net": "VehicleNet", "width": width, "flip_average": True}
    else:
        from scones.model.train import TrainConfig, preprocessing_for
        from scones.model.transfer import FrozenTrunk, LinearProbe, TransferClassifier, TunedTail

        # The recipe's shape (speed does not depend on the weights).
        config = TrainConfig(**(overrides or {}))
        prep = preprocessing_for(config)
        lite0 = EfficientNetLite0(config.image_size).eval()
        cut = len(lite0._blocks) - config.tune_blocks
        tails = [TunedTail(lite0, cut, 2, config.dropout) for _ in range(config.members)]
        probe = LinearProbe(lite0, cut, 2) if config.linear_probe else None
        net = TransferClassifier(FrozenTrunk(lite0, cut), tails, probe)
        architecture = {
            "net": "EfficientNet-Lite0 transfer",
            "members": config.members,
            "linear_probe": config.linear_probe,
            "image_size": config.image_size,
        }
    model = FlipAveragedClassifier(net).eval()
    example = torch.zeros(1, 3, *prep.input_size)
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but exports this plain CNN fine and fast.
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(torch, model, example, folder / MODEL_ONNX)
    card = ModelCard(
        name="vehicle-classifier-bench",
        version=0,
        class_names=["bicycle", "motorcycle"],
        input_shape=(3, *prep.input_size),
        preprocessing=prep,
        architecture=architecture,
    )
    (folder / MODEL_JSON).write_text(card.model_dump_json(indent=2))
    return folder


def _export(torch, model, example, path: Path) -> None:
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )


def load_pngs(limit: int) -> list[bytes]:
    paths = sorted(SHARED_TRAIN.glob("*.png"))[:limit]
    if not paths:
        sys.exit(f"no PNGs under {SHARED_TRAIN}: the shared data sits beside the repo")
    return [path.read_bytes() for path in paths]


def raw_ort_throughput(
    model_dir: Path, images: list[bytes], batch: int, seconds: float, threads: int = 0
) -> tuple[float, float]:
    """Images/s and CPU ms per image of OnnxClassifier.predict (no HTTP, no decode)."""
    from scones.model.artifact import OnnxClassifier
    from scones.model.preprocess import preprocess_batch

    classifier = OnnxClassifier(model_dir, intra_op_threads=threads)
    inputs = preprocess_batch(images[:batch], classifier.preprocessing)
    for _ in range(3):
        classifier.predict(inputs)
    done = 0
    cpu_started = time.process_time()  # all threads of this process (ONNX Runtime's too)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        classifier.predict(inputs)
        done += batch
    elapsed = time.perf_counter() - started
    return done / elapsed, (time.process_time() - cpu_started) * 1000.0 / done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_bytes(image: bytes) -> bytes:
    head = (
        "POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Accept: application/json\r\nContent-Length: {len(image)}\r\n\r\n"
    )
    return head.encode() + image


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def user(
    port: int, requests: list[bytes], start: int, stop_at: float, latencies: list[float]
) -> int:
    """One keep-alive connection sending requests back to back until ``stop_at``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    index = start
    try:
        while time.perf_counter() < stop_at:
            payload = requests[index % len(requests)]
            index += 1
            sent = time.perf_counter()
            writer.write(payload)
            status = await read_response(reader)
            latencies.append(time.perf_counter() - sent)
            errors += status != 200
    finally:
        writer.close()
    return errors


async def drive(port: int, requests: list[bytes], concurrency: int, seconds: float) -> dict:
    warm: list[float] = []
    warm_until = time.perf_counter() + min(1.0, seconds / 4)
    await asyncio.gather(*(user(port, requests, i, warm_until, warm) for i in range(concurrency)))
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds
    errors = await asyncio.gather(
        *(user(port, requests, i * 7, stop_at, latencies) for i in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000.0
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": int(sum(errors)),
        "req_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(statistics.fmean(ms)),
    }


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit("the endpoint never became ready")


def tree_cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds of the server and its children (worker processes)."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def batch_histogram(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("scones_batch_size_sum", "scones_batch_size_count"):
            if line.startswith(name + "{"):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="extracted model folder (default: build one)")
    parser.add_argument(
        "--width", type=int, default=32, help="VehicleNet width of the built model (real: 32)"
    )
    parser.add_argument(
        "--backbone",
        default="scratch",
        choices=("scratch", "efficientnet-lite0"),
        help="architecture of the built model (efficientnet-lite0: the transfer default)",
    )
    parser.add_argument(
        "--recipe",
        type=json.loads,
        default={},
        metavar="JSON",
        help="TrainConfig overrides for the built transfer model, e.g. '{\"image_size\": 128}'",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="*", default=list(CONCURRENCIES))
    parser.add_argument("--max-batch-size", type=int, default=4, help="as scones serve")
    parser.add_argument("--max-batch-delay-ms", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--intra-op-threads", type=int, default=0, help="server's ONNX Runtime threads (0: auto)"
    )
    parser.add_argument("--no-capture", action="store_true", help="serve without data capture")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="scones-serve-bench-") as tmp:
        tmp_path = Path(tmp)
        model_dir = args.model or build_model(
            tmp_path / "model", args.width, args.backbone, args.recipe
        )
        images = load_pngs(256)
        # The ceiling: the best of ONNX Runtime with one thread and with one per core.
        raw: dict[str, float] = {}
        for threads, label in ((1, "1_thread"), (0, "all_cores")):
            for batch in (1, 32):
                rate, cpu_ms = raw_ort_throughput(
                    model_dir, images, batch, args.duration / 2, threads
                )
                raw[f"{label}_batch_{batch}_img_per_s"] = rate
                raw[f"{label}_batch_{batch}_cpu_ms_per_img"] = cpu_ms
        raw["batch_1_img_per_s"] = max(
            raw["1_thread_batch_1_img_per_s"], raw["all_cores_batch_1_img_per_s"]
        )
        raw["batch_32_img_per_s"] = max(
            raw["1_thread_batch_32_img_per_s"], raw["all_cores_batch_32_img_per_s"]
        )
        port = free_port()
        command = [
            str(SCONES), "serve", "--model", str(model_dir), "--port", str(port),
            "--max-batch-size", str(args.max_batch_size),
            "--max-batch-delay-ms", str(args.max_batch_delay_ms),
            "--workers", str(args.workers), "--log-level", "warning",
            "--intra-op-threads", str(args.intra_op_threads),
        ]  # fmt: skip
        command += ["--no-capture"] if args.no_capture else ["--capture-uri", str(tmp_path / "cap")]
        env = {**os.environ, "SCONES_HOME": str(tmp_path / "home")}
        server = subprocess.Popen(command, env=env)
        try:
            wait_ready(port, server)
            requests = [request_bytes(image) for image in images]
            runs = []
            server_process = psutil.Process(server.pid)
            for concurrency in args.concurrency:
                before = batch_histogram(port)
                cpu_before = tree_cpu_seconds(server_process)
                result = asyncio.run(drive(port, requests, concurrency, args.duration))
                cpu_used = tree_cpu_seconds(server_process) - cpu_before
                after = batch_histogram(port)
                # CPU per request is robust to neighbours on a shared machine; req/s is not.
                result["server_cpu_ms_per_req"] = cpu_used * 1000.0 / max(1, result["requests"])
                calls = after["scones_batch_size_count"] - before["scones_batch_size_count"]
                images_done = after["scones_batch_size_sum"] - before["scones_batch_size_sum"]
                result["mean_batch"] = images_done / calls if calls else 0.0
                result["vs_raw_batch_32"] = result["req_per_s"] / raw["batch_32_img_per_s"]
                runs.append(result)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)

    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with the load generator)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%a %b %d %H:%M:%S %Z %Y"),
        "model": str(
            args.model
            or (
                f"VehicleNet width {args.width}, flip-averaged, random weights"
                if args.backbone == "scratch"
                else "EfficientNet-Lite0 transfer "
                f"({json.dumps(args.recipe) if args.recipe else 'default recipe'}), random weights"
            )
        ),
        "capture": not args.no_capture,
        "raw_onnxruntime": raw,
        "runs": runs,
        "goals": goals(runs, raw),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


def goals(runs: list[dict], raw: dict) -> dict:
    by_c = {run["concurrency"]: run for run in runs}
    result = {}
    if 32 in by_c:
        ratio = by_c[32]["req_per_s"] / raw["batch_32_img_per_s"]
        result["c32_vs_raw_batch_32"] = {"value": ratio, "goal": ">= 0.50", "met": ratio >= 0.5}
    if 8 in by_c:
        p99 = by_c[8]["p99_ms"]
        result["c8_p99_ms"] = {"value": p99, "goal": "< 25", "met": p99 < 25.0}
    return result


def print_table(report: dict) -> None:
    raw = report["raw_onnxruntime"]
    print(f"machine: {report['machine']}\ndate: {report['date']}\nmodel: {report['model']}")
    print(f"capture: {'on' if report['capture'] else 'off'}")
    for label in ("1_thread", "all_cores"):
        print(
            f"raw ONNX Runtime ({label.replace('_', ' ')}): "
            f"batch 1 {raw[f'{label}_batch_1_img_per_s']:.0f} img/s "
            f"({raw[f'{label}_batch_1_cpu_ms_per_img']:.2f} CPU ms/img), batch 32 "
            f"{raw[f'{label}_batch_32_img_per_s']:.0f} img/s "
            f"({raw[f'{label}_batch_32_cpu_ms_per_img']:.2f} CPU ms/img)"
        )
    print(f"ceiling (best raw batch 32): {raw['batch_32_img_per_s']:.0f} img/s")
    print(
        f"{'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'batch':>6} {'vs raw32':>9} {'CPU ms/req':>10} {'errors':>6}"
    )
    for run in report["runs"]:
        print(
            f"{run['concurrency']:>5} {run['req_per_s']:>8.0f} {run['p50_ms']:>8.1f} "
            f"{run['p95_ms']:>8.1f} {run['p99_ms']:>8.1f} {run['mean_batch']:>6.1f} "
            f"{run['vs_raw_batch_32']:>9.2f} {run['server_cpu_ms_per_req']:>10.2f} "
            f"{run['errors']:>6}"
        )
    for name, goal in report["goals"].items():
        verdict = "met" if goal["met"] else "NOT met"
        print(f"goal {name}: {goal['value']:.2f} (goal {goal['goal']}): {verdict}")


if __name__ == "__main__":
    sys.exit(main())
