"""`scones monitor` at scale: 1,000,000 captured records, streamed.

Generates SageMaker-format capture files (small payloads: a handful of distinct 32x32 PNGs,
reused, as real traffic repeats; two variants written in parallel so the time-ordered merge
works across files), then runs the real CLI over them and measures wall time and peak memory
(the child's max RSS). The baseline, measured in the same run on the same files, is the floor
any Python reader pays: open every file and ``json.loads`` every line, nothing else.

Goals: >= 50,000 records/s on 2 cores; peak memory < 500 MB whatever the record count
(compare the rows for different counts). A separate row runs all-distinct images (no
statistics cache hits) at a smaller count, to show the cost of decoding every image.

    .venv/bin/python benchmarks/monitor_scale.py [--records 1000000] [--json]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

SCONES = str(Path(sys.executable).with_name("scones"))
RECORDS_PER_FILE = 10_000
START = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
SPAN = timedelta(hours=24)


def tiny_pngs(count: int, seed: int) -> list[str]:
    # Smooth gradients of random colours: real 32x32 PNGs of a few hundred bytes.
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-40, 40, 32)[None, :, None] + np.linspace(-20, 20, 32)[:, None, None]
    images = []
    for _ in range(count):
        pixels = np.clip(rng.uniform(50, 200, 3) + ramp * rng.uniform(0.2, 1.0), 0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, format="PNG")
        images.append(base64.b64encode(buffer.getvalue()).decode())
    return images


def sagemaker_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def generate(root: Path, records: int, *, distinct_images: int, seed: int = 0) -> int:
    """Write ``records`` capture records under root/<endpoint>/...; returns bytes written."""
    rng = random.Random(seed)
    images = tiny_pngs(distinct_images, seed)
    step = SPAN / records
    total = 0
    variants = ("AllTraffic", "Canary")
    for first in range(0, records, RECORDS_PER_FILE * 2):
        # Two variants' files cover the same stretch of time, records interleaved.
        for offset, variant in enumerate(variants):
            indices = range(first + offset, min(first + RECORDS_PER_FILE * 2, records), 2)
            if not indices:
                continue
            moment = START + step * indices[0]
            key = (
                f"scones-endpoint/{variant}/{moment:%Y/%m/%d/%H}/"
                f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{uuid.uuid4().hex}.jsonl"
            )
            lines = []
            for index in indices:
                top = 1.0 - rng.random() * 0.2 if rng.random() < 0.9 else 0.5 + rng.random() * 0.4
                probabilities = [round(top, 4), round(1 - top, 4)]
                if rng.random() < 0.5:
                    probabilities.reverse()
                record = {
                    "captureData": {
                        "endpointInput": {
                            "observedContentType": "image/png",
                            "mode": "INPUT",
                            "data": images[index % len(images)],
                            "encoding": "BASE64",
                        },
                        "endpointOutput": {
                            "observedContentType": "application/json",
                            "mode": "OUTPUT",
                            "data": json.dumps(probabilities),
                            "encoding": "JSON",
                        },
                    },
                    "eventMetadata": {
                        "eventId": str(uuid.UUID(int=rng.getrandbits(128))),
                        "inferenceTime": sagemaker_time(START + step * index),
                    },
                    "eventVersion": "0",
                }
                lines.append(json.dumps(record, separators=(",", ":")))
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            body = ("\n".join(lines) + "\n").encode()
            path.write_bytes(body)
            total += len(body)
    return total


def baseline_parse(root: Path) -> float:
    """Seconds to read every file and json.loads every line (the floor of any reader)."""
    started = time.perf_counter()
    count = 0
    for path in sorted(root.rglob("*.jsonl")):
        with path.open("rb") as handle:
            for line in handle:
                json.loads(line)
                count += 1
    return time.perf_counter() - started


def write_model(folder: Path) -> Path:
    """A model folder with model.json and a baseline.json (the monitor needs no ONNX)."""
    from scones.images import image_statistics
    from scones.model.artifact import ModelCard
    from scones.model.baseline import CONFIDENCE_BIN_EDGES

    folder.mkdir(parents=True, exist_ok=True)
    card = ModelCard(name="bench", version=1, class_names=["bicycle", "motorcycle"])
    (folder / "model.json").write_text(card.model_dump_json())
    stats = [
        image_statistics(Image.open(io.BytesIO(base64.b64decode(data))))
        for data in tiny_pngs(200, seed=99)
    ]
    baseline = {
        "format_version": 1,
        "split": "validation",
        "n": 200,
        "class_names": ["bicycle", "motorcycle"],
        "class_mix": {"bicycle": 0.5, "motorcycle": 0.5},
        "label_mix": {"bicycle": 0.5, "motorcycle": 0.5},
        "confidence_bin_edges": list(CONFIDENCE_BIN_EDGES),
        "confidence_histogram": [0] * 10 + [2, 2, 2, 2, 2, 2, 10, 20, 40, 118],
        "image_stats": {name: [s[name] for s in stats] for name in stats[0]},
    }
    (folder / "baseline.json").write_text(json.dumps(baseline))
    return folder


def run_monitor(root: Path, out: Path, model: Path, workers: int) -> tuple[float, float, dict]:
    """(wall seconds, peak MB, summary.json) of `scones monitor`.

    Peak memory is the largest total RSS of the monitor and its worker processes together,
    sampled every 20 ms (psutil).
    """
    import psutil

    env = {**os.environ, "SCONES_HOME": str(out / "home")}
    command = [
        SCONES,
        "monitor",
        "--capture-uri",
        str(root),
        "--out",
        str(out / "report"),
        "--model",
        str(model),
        "--workers",
        str(workers),
    ]
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "stderr.txt").open("wb")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    log.close()
    if process.returncode not in (0, 3):
        stderr = (out / "stderr.txt").read_text()
        raise SystemExit(f"scones monitor failed ({process.returncode}): {stderr}")
    summary = json.loads((out / "report" / "summary.json").read_text())
    return seconds, peak / 1e6, summary


def measure(records: int, distinct_images: int, workdir: Path, workers: list[int]) -> list[dict]:
    root = workdir / f"capture-{records}-{distinct_images}"
    generated = time.perf_counter()
    size = generate(root, records, distinct_images=distinct_images)
    generated = time.perf_counter() - generated
    parse_seconds = baseline_parse(root)
    model = write_model(workdir / "model")
    rows = []
    for count in workers:
        out = workdir / f"out-{records}-{distinct_images}-{count}"
        seconds, peak_mb, summary = run_monitor(root, out, model, count)
        assert summary["records"]["total"] == records, summary["records"]
        rows.append(
            {
                "records": records,
                "distinct_images": distinct_images,
                "workers": count,
                "capture_mb": round(size / 1e6, 1),
                "generate_s": round(generated, 1),
                "baseline_json_parse_s": round(parse_seconds, 2),
                "monitor_s": round(seconds, 2),
                "records_per_s": round(records / seconds),
                "ratio_to_json_parse": round(seconds / parse_seconds, 2),
                "peak_rss_mb": round(peak_mb, 1),
                "image_decodes": summary["image_stats_cache"]["decodes"],
                "drift": summary["drift"]["status"],
            }
        )
    shutil.rmtree(root)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the big run")
    parser.add_argument(
        "--distinct-run",
        type=int,
        default=20_000,
        help="records in the all-distinct-images run (0 to skip)",
    )
    parser.add_argument("--workers", type=int, default=2, help="--workers of the parallel runs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="scones-monitor-bench-") as temp:
        workdir = Path(temp)
        if args.distinct_run:
            rows += measure(args.distinct_run, args.distinct_run, workdir, [1])
        if args.records >= 10:
            rows += measure(args.records // 10, 8, workdir, [args.workers])
        rows += measure(args.records, 8, workdir, sorted({1, args.workers}))
    big = rows[-1]
    verdict = {
        "records_per_s_goal": 50_000,
        "peak_rss_mb_goal": 500,
        "meets_throughput": big["records_per_s"] >= 50_000,
        "meets_memory": all(row["peak_rss_mb"] < 500 for row in rows),
    }
    if args.json:
        print(json.dumps({"rows": rows, "verdict": verdict}, indent=2))
        return 0
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    print(
        f"goal >= 50000 records/s: {'met' if verdict['meets_throughput'] else 'MISSED'} "
        f"({big['records_per_s']}/s); goal peak < 500 MB: "
        f"{'met' if verdict['meets_memory'] else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
