"""Train the vehicle classifier with its defaults on the shared CIFAR-100 vehicles, per seed.

For each seed the shared 1000 images are staged into a temporary store (stratified: 10 % test,
10 % validation, the rest train; the split depends on the seed), trained exactly as
``scones train`` trains (``train_model``: fit, ONNX export, calibration, baseline), and the
artifact is evaluated through ONNX Runtime on the held-out test images. Each run is a fresh
process, so wall time and peak RSS are its own.

The same run also trains a plain baseline (one network; crop + flip only, no cutout,
label smoothing or EMA, 30 epochs) on the same splits, and reports ratios against it.
``--compare NAME='{"members": 1, "epochs": 100}'`` (repeatable) adds configurations
(``TrainConfig`` overrides of the defaults) trained on the same splits in the same run.

    .venv/bin/python benchmarks/train_accuracy.py [--seeds 3] [--epochs N] [--device cuda]
        [--compare NAME=JSON ...] [--no-baseline] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_VEHICLES = REPO.parent / "shared" / "data" / "cifar100-vehicles"
PLAIN = {"epochs": 30, "cutout": 0, "label_smoothing": 0.0, "ema_decay": 0.0, "members": 1}
GOAL_ACCURACY = 0.96
GOAL_COVERAGE = 0.90
GOAL_SECONDS = 300.0
GOAL_RSS_MB = 3072.0


def stage_shared(source: Path, dest: Path, seed: int) -> None:
    """Stage with `scones stage`'s own code (import of a staged folder)."""
    from scones.data.stage import stage
    from scones.store import open_store

    stage(
        str(source),
        open_store(str(dest)),
        classes=["bicycle", "motorcycle"],
        val_fraction=0.1,
        test_fraction=0.1,
        seed=seed,
        md5=None,
        cache_dir=dest.parent / "cache",
    )


def run_one(source: str, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """One seed in a fresh process: stage, train like `scones train`, evaluate on test."""
    import torch

    from scones.model.evaluate import evaluate_model
    from scones.model.train import TrainConfig, train_model
    from scones.store import open_store

    with tempfile.TemporaryDirectory(prefix="scones-bench-") as tmp:
        staged = Path(tmp) / "staged"
        stage_shared(Path(source), staged, seed)
        config = TrainConfig(**{**overrides, "seed": seed})
        store = open_store(str(staged))
        started = time.perf_counter()
        trained = train_model(store, config, Path(tmp) / "model", name="bench")
        seconds = time.perf_counter() - started
        validation_threshold = trained.metrics["recommended_threshold"]
        test = evaluate_model(
            trained.model_dir, store, split="test", threshold=validation_threshold
        )
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    at = test.get("at_threshold") or {}
    return {
        "seed": seed,
        "config": config.model_dump(),
        "device": trained.card.training["device_used"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "n_train": trained.card.training["n_train"],
        "n_validation": trained.card.training["n_validation"],
        "n_test": test["n"],
        "val_accuracy": trained.metrics["accuracy"],
        "test_accuracy": test["accuracy"],
        "test_log_loss": test["log_loss"],
        "test_ece": test["ece"],
        "test_coverage_at_99": test["coverage_at_recommended"],
        "val_threshold": validation_threshold,
        "test_coverage_at_val_threshold": at.get("coverage"),
        "test_accuracy_at_val_threshold": at.get("selective_accuracy"),
        "temperature": trained.card.temperature,
        "best_epoch": trained.card.training["best_epoch"],
        "best_epochs": trained.card.training.get("best_epochs"),
        "members": config.members,
        "parameters": trained.card.architecture["parameters"],
        "macs_per_image": trained.card.architecture["macs_per_image"],
        "train_seconds": seconds,
        "peak_rss_mb": peak_kb / 1024.0,
    }


def run_seeds(source: Path, seeds: int, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for seed in range(seeds):
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            result = pool.submit(run_one, str(source), seed, overrides).result()
        print(
            f"  seed {seed}: val {result['val_accuracy']:.4f} test {result['test_accuracy']:.4f} "
            f"cov@99 {result['test_coverage_at_99']:.3f} {result['train_seconds']:.0f} s "
            f"{result['peak_rss_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    return results


def summary(results: list[dict[str, Any]]) -> dict[str, float]:
    def stats(key: str) -> tuple[float, float]:
        values = [float(r[key]) for r in results]
        return statistics.mean(values), statistics.pstdev(values)

    out: dict[str, float] = {}
    for key in ("val_accuracy", "test_accuracy", "test_coverage_at_99", "train_seconds"):
        out[f"{key}_mean"], out[f"{key}_sd"] = stats(key)
    out["peak_rss_mb_max"] = max(r["peak_rss_mb"] for r in results)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds (splits and init) to run")
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--source", type=Path, default=SHARED_VEHICLES, help="staged folder")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain baseline")
    parser.add_argument(
        "--no-default",
        action="store_true",
        help="skip the defaults (only --compare configurations; CPU runs are bit-reproducible)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="also train this configuration (TrainConfig overrides) on the same splits",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    comparisons: list[tuple[str, dict[str, Any]]] = []
    for item in args.compare:
        name, _, text = item.partition("=")
        try:
            values = json.loads(text)
        except ValueError as exc:
            parser.error(f"--compare {item!r}: not NAME=JSON: {exc}")
        if not name or not isinstance(values, dict):
            parser.error(f"--compare {item!r}: expected NAME={{...}}")
        comparisons.append((name, values))

    import torch

    from scones.model.train import TrainConfig

    overrides: dict[str, Any] = {"device": args.device}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    print(
        f"torch {torch.__version__} on {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else "")
        + f", {platform.processor() or platform.machine()}, defaults "
        + json.dumps(TrainConfig(**overrides).model_dump()),
        file=sys.stderr,
    )
    report: dict[str, Any] = {"torch": torch.__version__, "device": device, "seeds": args.seeds}
    if not args.no_default:
        print("default config:", file=sys.stderr)
        default_runs = run_seeds(args.source, args.seeds, overrides)
        report["default"] = {"runs": default_runs, "summary": summary(default_runs)}
    for name, values in comparisons:
        print(f"{name}: {json.dumps(values)}", file=sys.stderr)
        runs = run_seeds(args.source, args.seeds, {**overrides, **values})
        report.setdefault("compare", {})[name] = {
            "overrides": values,
            "runs": runs,
            "summary": summary(runs),
        }
    if not args.no_baseline:
        print("plain baseline:", file=sys.stderr)
        plain_runs = run_seeds(args.source, args.seeds, {**overrides, **PLAIN})
        report["plain"] = {"runs": plain_runs, "summary": summary(plain_runs)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    rows = [("default", report["default"]["summary"])] if "default" in report else []
    rows += [(name, entry["summary"]) for name, entry in report.get("compare", {}).items()]
    if "plain" in report:
        rows.append(("plain baseline", report["plain"]["summary"]))
    header = (
        f"{'config':16s} {'val acc':>14s} {'test acc':>14s} {'cov@99%':>14s} "
        f"{'train s':>12s} {'peak RSS MB':>11s}"
    )
    print(header)
    for name, s in rows:
        print(
            f"{name:16s} {s['val_accuracy_mean']:.4f}±{s['val_accuracy_sd']:.4f}  "
            f"{s['test_accuracy_mean']:.4f}±{s['test_accuracy_sd']:.4f}  "
            f"{s['test_coverage_at_99_mean']:.3f}±{s['test_coverage_at_99_sd']:.3f}  "
            f"{s['train_seconds_mean']:7.1f}±{s['train_seconds_sd']:4.1f} "
            f"{s['peak_rss_mb_max']:11.0f}"
        )
    if "default" not in report:
        return 0
    s = report["default"]["summary"]
    for name, entry in report.get("compare", {}).items():
        c = entry["summary"]
        print(
            f"  {name} vs default: test error "
            f"{(1 - c['test_accuracy_mean']) / max(1e-9, 1 - s['test_accuracy_mean']):.2f}x, "
            f"train time {c['train_seconds_mean'] / s['train_seconds_mean']:.2f}x"
        )
    print("\nratios (default):")
    if "plain" in report:
        p = report["plain"]["summary"]
        print(
            f"  test error vs plain baseline: "
            f"{(1 - s['test_accuracy_mean']) / max(1e-9, 1 - p['test_accuracy_mean']):.2f}x"
        )
        print(
            f"  train time vs plain baseline: "
            f"{s['train_seconds_mean'] / p['train_seconds_mean']:.2f}x"
        )
    print(
        f"  test accuracy / goal {GOAL_ACCURACY:.0%}: {s['test_accuracy_mean'] / GOAL_ACCURACY:.3f}"
    )
    print(
        f"  coverage@99% / goal {GOAL_COVERAGE:.0%}: "
        f"{s['test_coverage_at_99_mean'] / GOAL_COVERAGE:.3f}"
    )
    print(
        f"  train time / budget {GOAL_SECONDS:.0f} s: {s['train_seconds_mean'] / GOAL_SECONDS:.2f}"
    )
    print(f"  peak RSS / budget {GOAL_RSS_MB:.0f} MB: {s['peak_rss_mb_max'] / GOAL_RSS_MB:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
