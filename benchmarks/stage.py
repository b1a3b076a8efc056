"""How fast `scones stage` is, against the bare I/O floor measured in the same run.

    .venv/bin/python benchmarks/stage.py [--repeat N] [--no-s3] [--json]

Cases (median of --repeat runs each):

- import-local: stage the 1000 shared images (../shared/data/cifar100-vehicles) into a fresh
  local store. Baseline: read each PNG and `LocalStore.put` it as-is, one after another (no
  decoding, no validation, no temporary prefix): the floor any staging into that store pays.
- archive-local: stage 2 classes from a synthetic archive in the real CIFAR-100 format with
  12,000 rows (1,200 of the two classes). Baseline: read the archive, PNG-encode the 1,200
  rows and `LocalStore.put` them one after another, straight into place (no temporary prefix,
  no checksums, no splits).
- import-s3: stage 200 shared images into moto's S3 server over HTTP on 127.0.0.1. Baseline:
  sequential `put_object` of the same PNGs as-is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "data"))  # the CIFAR-format archive builder

from cifar_builder import build_cifar_archive  # noqa: E402
from stage_helpers import small_staged_folder  # noqa: E402

from scones.data.cifar import read_cifar_archive  # noqa: E402
from scones.data.layout import parse_lst  # noqa: E402
from scones.data.stage import encode_png, stage  # noqa: E402
from scones.store import ObjectStore, open_store  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "cifar100-vehicles"
CLASSES = ["bicycle", "motorcycle"]


def median_seconds(run: Callable[[Path], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            run(Path(scratch))
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def raw_put(folder: Path, store: ObjectStore) -> None:
    for entry in parse_lst((folder / "train.lst").read_text(), source="train.lst"):
        store.put(f"train/{entry.path}", (folder / "train" / entry.path).read_bytes())
    store.put("train.lst", (folder / "train.lst").read_bytes())


def read_encode_put(archive: Path, store: ObjectStore) -> None:
    contents = read_cifar_archive(archive)
    wanted = {contents.fine_label_names.index(name) for name in CLASSES}
    for name, split in contents.splits.items():
        for row, label in enumerate(split.fine_labels):
            if int(label) in wanted:
                store.put(f"{name}/{split.filenames[row]}", encode_png(split.image(row)))


def stage_into(source: Path | str, store: ObjectStore, scratch: Path) -> None:
    stage(
        str(source), store, classes=CLASSES, val_fraction=0.1, seed=0, md5=None,
        cache_dir=scratch / "cache",
    )  # fmt: skip


def case(name: str, images: int, staged: float, baseline: float, baseline_name: str) -> dict:
    return {
        "case": name,
        "images": images,
        "stage_s": round(staged, 3),
        "images_per_s": round(images / staged, 1),
        "baseline": baseline_name,
        "baseline_s": round(baseline, 3),
        "ratio": round(staged / baseline, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--no-s3", action="store_true", help="skip the moto S3 case")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    results = []

    results.append(
        case(
            "import-local",
            1000,
            median_seconds(lambda d: stage_into(SHARED, open_store(str(d / "s")), d), args.repeat),
            median_seconds(lambda d: raw_put(SHARED, open_store(str(d / "s"))), args.repeat),
            "LocalStore.put of the PNGs as-is",
        )
    )

    with tempfile.TemporaryDirectory() as work:
        archive = Path(work) / "cifar-100-python.tar.gz"
        filler = {"apple": 1000, "baby": 1000, "bear": 1000, "beaver": 1000, "bed": 1000}
        build_cifar_archive(
            archive,
            train_per_class={"bicycle": 500, "motorcycle": 500, **filler},
            test_per_class={"bicycle": 100, "motorcycle": 100, **filler},
        )
        results.append(
            case(
                "archive-local",
                1200,
                median_seconds(
                    lambda d: stage_into(archive, open_store(str(d / "s")), d), args.repeat
                ),
                median_seconds(
                    lambda d: read_encode_put(archive, open_store(str(d / "s"))), args.repeat
                ),
                "read archive, encode, LocalStore.put in place",
            )
        )

    if not args.no_s3:
        results.append(s3_case(args.repeat))

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"{'case':<14} {'images':>6} {'stage s':>8} {'img/s':>8} {'base s':>8} "
            f"{'ratio':>6}  baseline"
        )
        for r in results:
            print(
                f"{r['case']:<14} {r['images']:>6} {r['stage_s']:>8.3f} {r['images_per_s']:>8.1f} "
                f"{r['baseline_s']:>8.3f} {r['ratio']:>6.2f}  {r['baseline']}"
            )
    return 0


def s3_case(repeat: int) -> dict:
    import logging
    import os
    import socket
    import uuid

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint,
    )  # fmt: skip
    client = boto3.client("s3", endpoint_url=endpoint)

    def fresh_store() -> ObjectStore:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        return open_store(f"s3://{bucket}")

    try:
        with tempfile.TemporaryDirectory() as work:
            folder = small_staged_folder(SHARED, Path(work) / "small", per_class=100)
            staged = median_seconds(lambda d: stage_into(folder, fresh_store(), d), repeat)
            baseline = median_seconds(lambda d: raw_put(folder, fresh_store()), repeat)
    finally:
        server.stop()
    return case("import-s3", 200, staged, baseline, "sequential put_object of the PNGs as-is")


if __name__ == "__main__":
    sys.exit(main())
