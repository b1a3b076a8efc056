"""The endpoint against the servers users would otherwise pick: LitServe, BentoML, KServe.

The same ONNX model (the default transfer recipe's architecture) and the same real PNGs,
served one server after another on the same cores by `scones serve`, LitServe, BentoML and
KServe's Python model server, each configured as its documentation recommends for throughput:
dynamic batching on where the server has it (the same maximum batch size and delay), one
worker process, the same ONNX Runtime threads. Raw batched ONNX Runtime (no HTTP) is the
ceiling. The load comes from `wrk` (C, one thread, keep-alive connections), so the CPU it
takes is small and the figure is the server's. Each server runs ``--rounds`` times (servers
in a rotated order each round); the table shows medians: requests/s, p50 and p99 latency at
concurrency 1, 8, 32 and 128, and the server's CPU-seconds per 1,000 requests (its process
tree, from /proc).

    .venv/bin/python benchmarks/serve_peers.py [--no-install] [--rounds 3] [--duration 5]
        [--servers scones litserve bentoml kserve] [--profile] [--json]

The peers live in their own virtual environments under ``.bench/peers/NAME`` (ignored by
git): their pins clash with ours and with each other. Missing ones are created from the
``peers`` extra in pyproject.toml, with our own versions of onnxruntime, numpy and Pillow. A
peer that cannot be installed or started is reported as such in the table, never dropped.
``--profile`` records where our endpoint's CPU goes at concurrency 32 with py-spy (a flame
graph SVG and the top functions) under ``.bench/profile/``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import build_model, free_port, load_pngs, raw_ort_throughput, tree_cpu_seconds

REPO = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(__file__).resolve().parent / "peers"
VENVS = REPO / ".bench" / "peers"
PROFILE_DIR = REPO / ".bench" / "profile"
SCONES = Path(sys.executable).parent / "scones"
CONCURRENCIES = (1, 8, 32, 128)
SERVER_NAMES = ("scones", "scones+capture", "litserve", "bentoml", "kserve")
RAW_BATCHES = (1, 4, 8, 32)
# The model-side packages every peer gets at our own versions, so only the server differs.
SHARED_PINS = ("onnxruntime", "numpy", "pillow")

# wrk: requests cycle through the bodies, each thread from its own offset; done() prints the
# figures as one JSON line (latency in microseconds, status errors are non-2xx/3xx answers).
WRK_SCRIPT = """
local folder, count, path = "%(folder)s", %(count)d, "%(path)s"
local headers = {["Content-Type"] = "%(content_type)s"}
local requests, index = {}, 0
function init(args)
  for i = 0, count - 1 do
    local file = assert(io.open(folder .. "/" .. i .. ".body", "rb"))
    requests[i + 1] = wrk.format("POST", path, headers, file:read("*a"))
    file:close()
  end
end
function request()
  index = index %% count + 1
  return requests[index]
end
function done(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "status_errors": %%d, ' ..
    '"socket_errors": %%d, "p50_us": %%d, "p99_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass
class Server:
    """How to start one server and what its requests look like."""

    name: str
    path: str  # the inference route
    ready_path: str
    content_type: str
    encode: Callable[[bytes], bytes]  # a PNG -> this server's documented request body
    command: Callable[[int], list[str]]  # port -> the command line
    batching: str  # how it batches, in words, for the table
    unavailable: str | None = None  # why it could not be installed
    runs: list[dict] = field(default_factory=list)


def _json_b64(key: str) -> Callable[[bytes], bytes]:
    return lambda png: json.dumps({key: base64.b64encode(png).decode()}).encode()


def _kserve_body(png: bytes) -> bytes:
    image = {"image_bytes": {"b64": base64.b64encode(png).decode()}}
    return json.dumps({"instances": [image]}).encode()


MULTIPART_BOUNDARY = "scones-bench-boundary"


def _multipart(png: bytes) -> bytes:
    head = (
        f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="images"; '
        'filename="image.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    return head + png + f"\r\n--{MULTIPART_BOUNDARY}--\r\n".encode()


def peer_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def servers(args: argparse.Namespace, model_dir: Path, capture_dir: Path) -> list[Server]:
    batch, delay = args.max_batch_size, args.max_batch_delay_ms

    def scones_command(capture: bool) -> Callable[[int], list[str]]:
        def command(port: int) -> list[str]:
            line = [
                str(SCONES), "serve", "--model", str(model_dir), "--port", str(port),
                "--max-batch-size", str(batch), "--max-batch-delay-ms", str(delay),
                "--workers", "1", "--log-level", "warning",
                "--intra-op-threads", str(args.intra_op_threads),
            ]  # fmt: skip
            return line + (["--capture-uri", str(capture_dir)] if capture else ["--no-capture"])

        return command

    every = [
        Server(
            "scones", "/invocations", "/ping", "image/png", lambda png: png,
            scones_command(False), f"micro-batch <= {batch}, {delay} ms",
        ),
        Server(
            "scones+capture", "/invocations", "/ping", "image/png", lambda png: png,
            scones_command(True), f"micro-batch <= {batch}, {delay} ms; data capture on",
        ),
        Server(
            "litserve", "/predict", "/health", "application/json", _json_b64("image"),
            lambda port: [str(peer_python("litserve")), "litserve_app.py", str(port)],
            f"LitAPI batch <= {batch}, batch_timeout {delay} ms, fast_queue",
        ),
        Server(
            "bentoml", "/classify", "/readyz",
            f"multipart/form-data; boundary={MULTIPART_BOUNDARY}", _multipart,
            lambda port: [
                str(VENVS / "bentoml" / "bin" / "bentoml"), "serve",
                "bentoml_app:VehicleClassifier", "--host", "127.0.0.1", "--port", str(port),
            ],
            f"adaptive batching <= {batch} (no fixed delay knob)",
        ),
        Server(
            "kserve", "/v1/models/vehicles:predict", "/v1/models/vehicles", "application/json",
            _kserve_body,
            lambda port: [str(peer_python("kserve")), "kserve_app.py", str(port)],
            "none in the Python server (KServe batches in its Go agent sidecar)",
        ),
    ]  # fmt: skip
    chosen = [server for server in every if server.name in args.servers]
    for server in chosen:
        if not server.name.startswith("scones") and not peer_python(server.name).exists():
            server.unavailable = f"no venv at {VENVS / server.name} (run without --no-install)"
    return chosen


def peer_requirements() -> dict[str, str]:
    """The ``peers`` extra of pyproject.toml, by distribution name."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["optional-dependencies"]["peers"]
    return {spec.split(">")[0].split("=")[0].split("[")[0].strip(): spec for spec in specs}


def install_peers(names: list[str]) -> dict[str, str]:
    """Create each peer's venv; name -> why it failed, for those that did."""
    pins = [f"{name}=={metadata.version(name)}" for name in SHARED_PINS]
    failures = {}
    for name, spec in peer_requirements().items():
        if name not in names or peer_python(name).exists():
            continue
        folder = VENVS / name
        print(f"installing {spec} into {folder}", file=sys.stderr, flush=True)
        steps = [
            [sys.executable, "-m", "venv", str(folder)],
            [str(peer_python(name)), "-m", "pip", "install", "-q", spec, *pins],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
                failures[name] = f"install failed: {lines[-1][:200]}"
                shutil.rmtree(folder, ignore_errors=True)
                break
    return failures


def write_bodies(folder: Path, server: Server, images: list[bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        (folder / f"{index}.body").write_bytes(server.encode(image))
    script = folder / "wrk.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "folder": folder,
            "count": len(images),
            "path": server.path,
            "content_type": server.content_type,
        }
    )
    return script


def wait_ready(port: int, path: str, process: subprocess.Popen, timeout: float) -> str | None:
    """None when the server answers 200 on ``path``; else why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with {process.returncode} before it was ready"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                if answer.status == 200:
                    return None
        except OSError:
            pass
        time.sleep(0.2)
    return f"not ready after {timeout:.0f} s"


def run_wrk(script: Path, port: int, path: str, concurrency: int, seconds: float) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
            "-s", str(script), f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout[-300:]} {done.stderr[-300:]}")
    result = json.loads(line.removeprefix("WRK_JSON "))
    result["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def profile_scones(pid: int, script: Path, port: int, path: str, seconds: float) -> str:
    """py-spy over our server while wrk drives it at concurrency 32."""
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).parent / "py-spy"
    flame = PROFILE_DIR / "scones-c32.svg"
    raw = PROFILE_DIR / "scones-c32.txt"
    record = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds))]
    spies = [
        subprocess.Popen([*record, "--output", str(flame)], stdout=subprocess.DEVNULL),
        subprocess.Popen(
            [*record, "--format", "raw", "--output", str(raw)], stdout=subprocess.DEVNULL
        ),
    ]
    run_wrk(script, port, path, 32, seconds + 1)
    for spy in spies:
        spy.wait(timeout=60)
    return f"flame graph {flame}; folded stacks {raw}"


def measure_server(
    server: Server,
    args: argparse.Namespace,
    images: list[bytes],
    work: Path,
    env: dict[str, str],
) -> dict | str:
    """One round of one server: its figures per concurrency, or why it could not run."""
    script = write_bodies(work / "bodies" / server.name, server, images)
    port = free_port()
    log = (work / f"{server.name}.log").open("w")
    process = subprocess.Popen(
        server.command(port), cwd=PEERS_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        problem = wait_ready(port, server.ready_path, process, args.start_timeout)
        if problem:
            tail = (work / f"{server.name}.log").read_text()[-400:].strip()
            return f"did not start: {problem}: {tail}"
        tree = psutil.Process(process.pid)
        result: dict = {}
        for concurrency in args.concurrency:
            run_wrk(script, port, server.path, concurrency, max(1.0, args.duration / 4))  # warm
            cpu_before = tree_cpu_seconds(tree)
            figures = run_wrk(script, port, server.path, concurrency, args.duration)
            server_cpu = tree_cpu_seconds(tree) - cpu_before
            requests = max(1, figures["requests"])
            result[concurrency] = {
                "req_per_s": figures["requests"] / (figures["duration_us"] / 1e6),
                "p50_ms": figures["p50_us"] / 1000.0,
                "p99_ms": figures["p99_us"] / 1000.0,
                "errors": figures["status_errors"] + figures["socket_errors"],
                "server_cpu_s_per_1000": server_cpu * 1000.0 / requests,
                "client_cpu_share": figures["client_cpu_s"]
                / max(1e-9, figures["client_cpu_s"] + server_cpu),
            }
        if args.profile and server.name == "scones" and not server.runs:
            result["profile"] = profile_scones(process.pid, script, port, server.path, 10)
        return result
    finally:
        process.send_signal(signal.SIGINT if server.name != "scones" else signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for proc in psutil.Process(process.pid).children(recursive=True):
                proc.kill()
            process.kill()
            process.wait()
        log.close()


def medians(runs: list[dict], concurrencies: list[int]) -> dict[int, dict[str, float]]:
    table = {}
    for concurrency in concurrencies:
        rows = [run[concurrency] for run in runs]
        table[concurrency] = {
            key: statistics.median(row[key] for row in rows)
            for key in (
                "req_per_s",
                "p50_ms",
                "p99_ms",
                "server_cpu_s_per_1000",
                "client_cpu_share",
            )
        }
        table[concurrency]["errors"] = sum(row["errors"] for row in rows)
    return table


def goals(table: dict[str, dict], ceiling: float) -> dict[str, dict]:
    ours = table.get("scones")
    peers = {name: rows for name, rows in table.items() if not name.startswith("scones")}
    if not ours:
        return {}
    result = {}
    if 32 in ours:
        best_peer = max((rows[32]["req_per_s"] for rows in peers.values() if 32 in rows), default=0)
        ratio = ours[32]["req_per_s"] / ceiling
        result["c32_throughput_vs_every_peer"] = {
            "value": ours[32]["req_per_s"] / best_peer if best_peer else float("nan"),
            "goal": ">= 1.0 (ours / best peer)",
            "met": best_peer > 0 and ours[32]["req_per_s"] >= best_peer,
        }
        result["c32_vs_raw_batched"] = {"value": ratio, "goal": ">= 0.6", "met": ratio >= 0.6}
    if 8 in ours:
        best_p99 = min((rows[8]["p99_ms"] for rows in peers.values() if 8 in rows), default=0)
        result["c8_p99_below_every_peer"] = {
            "value": ours[8]["p99_ms"] / best_p99 if best_p99 else float("nan"),
            "goal": "< 1.0 (ours / best peer)",
            "met": best_p99 > 0 and ours[8]["p99_ms"] < best_p99,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="extracted model folder (default: build one)")
    parser.add_argument("--servers", nargs="*", default=list(SERVER_NAMES), choices=SERVER_NAMES)
    parser.add_argument(
        "--no-install", action="store_true", help="do not create missing peer venvs"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per server (medians)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="*", default=list(CONCURRENCIES))
    parser.add_argument("--max-batch-size", type=int, default=4, help="as scones serve")
    parser.add_argument("--max-batch-delay-ms", type=float, default=2.0)
    parser.add_argument(
        "--intra-op-threads", type=int, default=os.cpu_count() or 1,
        help="ONNX Runtime threads of every server (default: one per core, as scones serve picks)",
    )  # fmt: skip
    parser.add_argument("--start-timeout", type=float, default=120.0)
    parser.add_argument("--profile", action="store_true", help="py-spy our server at c32")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: `apt-get install wrk` (`make bench` does it as root)")

    install_failures = {} if args.no_install else install_peers(args.servers)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="scones-peers-") as tmp:
        work = Path(tmp)
        model_dir = args.model or build_model(work / "model", backbone="efficientnet-lite0")
        images = load_pngs(256)
        raw = {
            f"{label}_batch_{batch}": raw_ort_throughput(
                model_dir, images, batch, args.duration / 2, threads
            )[0]
            for threads, label in ((1, "1_thread"), (0, "all_cores"))
            for batch in RAW_BATCHES
        }
        # The ceiling: the best batched figure at any batch size and thread count (on 2 cores
        # batches of 4-8 run faster than 32, so "batch 32" alone would flatter the servers).
        ceiling = max(value for key, value in raw.items() if not key.endswith("_batch_1"))
        env = {
            **os.environ,
            "SCONES_HOME": str(work / "home"),
            "PEER_MODEL_DIR": str(model_dir),
            "PEER_INTRA_OP_THREADS": str(args.intra_op_threads),
            "PEER_MAX_BATCH_SIZE": str(args.max_batch_size),
            "PEER_MAX_BATCH_DELAY_MS": str(args.max_batch_delay_ms),
            "BENTOML_HOME": str(work / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
            "DO_NOT_TRACK": "1",
            "KSERVE_LOGLEVEL": "WARNING",
        }
        chosen = servers(args, model_dir, work / "capture")
        for server in chosen:
            server.unavailable = install_failures.get(server.name, server.unavailable)
        for round_index in range(args.rounds):
            rotated = chosen[round_index % len(chosen) :] + chosen[: round_index % len(chosen)]
            for server in rotated:
                if server.unavailable:
                    continue
                print(f"round {round_index + 1}: {server.name}", file=sys.stderr, flush=True)
                outcome = measure_server(server, args, images, work, env)
                if isinstance(outcome, str):
                    server.unavailable = outcome
                else:
                    server.runs.append(outcome)
    table = {s.name: medians(s.runs, args.concurrency) for s in chosen if not s.unavailable}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with wrk)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%a %b %d %H:%M:%S %Z %Y"),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "model": str(args.model or "EfficientNet-Lite0 transfer (default recipe), random weights"),
        "versions": {name: _peer_version(name) for name in ("litserve", "bentoml", "kserve")},
        "intra_op_threads": args.intra_op_threads,
        "rounds": args.rounds,
        "raw_onnxruntime_img_per_s": raw,
        "ceiling_img_per_s": ceiling,
        "servers": {
            s.name: {
                "batching": s.batching,
                "unavailable": s.unavailable,
                "medians": table.get(s.name),
            }
            for s in chosen
        },
        "profile": next(
            (run.get("profile") for s in chosen for run in s.runs if "profile" in run), None
        ),
        "goals": goals(table, ceiling),
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_table(report)
    return 0


def _peer_version(name: str) -> str | None:
    python = peer_python(name)
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() or None


def print_table(report: dict) -> None:
    print(f"machine: {report['machine']}\ndate: {report['date']}\nmodel: {report['model']}")
    before, after = report["load_average_before"], report["load_average_after"]
    print(f"load average before/after: {before} / {after}")
    print(
        f"peer versions: {report['versions']}; ONNX Runtime threads: {report['intra_op_threads']}"
    )
    raw = report["raw_onnxruntime_img_per_s"]
    print("raw ONNX Runtime img/s: " + ", ".join(f"{k} {v:.0f}" for k, v in raw.items()))
    ceiling = report["ceiling_img_per_s"]
    print(f"ceiling (best raw batched): {ceiling:.0f} img/s; medians of {report['rounds']} rounds")
    print(
        f"{'server':<15} {'conc':>4} {'req/s':>7} {'vs raw':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU s/1k':>8} {'wrk CPU':>7} {'errors':>6}"
    )
    for name, server in report["servers"].items():
        if server["unavailable"]:
            print(f"{name:<15} unavailable: {server['unavailable']}")
            continue
        for concurrency, row in server["medians"].items():
            print(
                f"{name:<15} {concurrency:>4} {row['req_per_s']:>7.0f} "
                f"{row['req_per_s'] / ceiling:>6.2f} {row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} "
                f"{row['server_cpu_s_per_1000']:>8.2f} {row['client_cpu_share']:>7.0%} "
                f"{row['errors']:>6}"
            )
    if report["profile"]:
        print(f"profile: {report['profile']}")
    for name, goal in report["goals"].items():
        verdict = "met" if goal["met"] else "NOT met"
        print(f"goal {name}: {goal['value']:.2f} (goal {goal['goal']}): {verdict}")


if __name__ == "__main__":
    sys.exit(main())
