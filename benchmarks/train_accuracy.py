"""Scratch, transfer and distilled (and any --compare configuration) on the same 5 folds.

The 1000 shared CIFAR-100 vehicle images are split into 5 stratified folds (fixed seed). For
fold k, fold k is the test split (200 images), 10 % of the rest is validation (checkpoint
choice, calibration, the recommended threshold) and the rest is train. Every configuration
trains exactly as ``scones train`` does (``train_model``: fit, ONNX export, calibration), each
run in a fresh process so wall time and peak RSS are its own, and is evaluated through ONNX
Runtime on its test fold. Reported per configuration:

- accuracy and coverage at 99 % selective accuracy over the 1000 pooled test predictions
  (each calibrated by its own fold's validation), with its 95 % bootstrap interval, and per
  fold at the validation threshold;
- for a held-out set of 200 images (the goal's): the median and 95 % range of coverage over
  test sets of 200 drawn from the pooled predictions, and the share reaching the 0.90 goal;
- training seconds and peak RSS (mean, max);
- ONNX Runtime images/s at batch 1 and batch 32 (the served graph, flip TTA included).

"distilled" is the scratch network trained on the soft labels of the same fold's "transfer"
model (``"teacher": "@transfer"``: a teacher written ``@NAME`` is that fold's model of the
configuration NAME, trained earlier in the same run; its training time is not counted).

    .venv/bin/python benchmarks/train_accuracy.py [--folds 0,1,2,3,4] [--threads 2]
        [--compare NAME=JSON ...] [--no-scratch] [--no-distilled] [--only NAMES]
        [--models DIR] [--save FILE] [--json]
    .venv/bin/python benchmarks/train_accuracy.py --from-report FILE   # re-summarise a --save
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_VEHICLES = REPO.parent / "shared" / "data" / "cifar100-vehicles"
FOLDS = 5
FOLD_SEED = 0
VALIDATION_SHARE = 0.1
GOAL_ACCURACY = 0.96
GOAL_COVERAGE = 0.90
GOAL_SECONDS = 300.0
GOAL_RSS_MB = 3072.0
HELD_OUT_SIZE = 200  # the official CIFAR-100 test images of the two classes
CONFIGS: dict[str, dict[str, Any]] = {
    "transfer": {},
    "scratch": {"backbone": "scratch"},
    "distilled": {"teacher": "@transfer"},
}


def fold_splits(labels: np.ndarray, fold: int) -> dict[str, np.ndarray]:
    """Row indices of train / validation / test for ``fold`` (stratified, fixed seed)."""
    rng = np.random.default_rng(FOLD_SEED)
    test, validation, train = [], [], []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        parts = np.array_split(rows, FOLDS)
        rest = np.concatenate([p for k, p in enumerate(parts) if k != fold])
        n_val = round(len(rest) * VALIDATION_SHARE)
        test.append(parts[fold])
        validation.append(rest[:n_val])
        train.append(rest[n_val:])
    return {
        "train": np.concatenate(train),
        "validation": np.concatenate(validation),
        "test": np.concatenate(test),
    }


def write_fold(source: Path, dest: Path, fold: int) -> None:
    """A staged layout of one fold, images copied from the shared folder."""
    from scones.data.layout import IMAGE_FOLDER, LstEntry, format_lst, parse_lst

    entries = parse_lst((source / "train.lst").read_text(), source="train.lst")
    labels = np.array([e.label for e in entries])
    for split, rows in fold_splits(labels, fold).items():
        chosen = [entries[i] for i in sorted(rows)]
        folder = dest / IMAGE_FOLDER[split]
        folder.mkdir(parents=True, exist_ok=True)
        for entry in chosen:
            (folder / entry.path).write_bytes((source / "train" / entry.path).read_bytes())
        (dest / f"{split}.lst").write_text(
            format_lst([LstEntry(e.index, e.label, e.path) for e in chosen])
        )
    info = {"class_names": ["bicycle", "motorcycle"], "counts": {}}
    (dest / "dataset.json").write_text(json.dumps(info))


def onnx_images_per_second(model_dir: Path, batch: int, seconds: float = 3.0) -> float:
    from scones.model.artifact import OnnxClassifier

    classifier = OnnxClassifier(model_dir)
    shape = (batch, *classifier.card.input_shape)
    inputs = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    classifier.logits(inputs)  # warm up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        classifier.logits(inputs)
        done += batch
    return done / (time.perf_counter() - started)


def run_one(
    source: str, fold: int, overrides: dict[str, Any], keep: str, teacher: str | None
) -> dict[str, Any]:
    """One fold in a fresh process: write the layout, train like `scones train`, evaluate;
    the model folder is kept at ``keep`` (a later configuration may distil from it)."""
    import shutil

    import torch

    from scones.model.artifact import OnnxClassifier
    from scones.model.dataset import load_split
    from scones.model.evaluate import evaluate_model, predict_pixels
    from scones.model.train import TrainConfig, train_model
    from scones.store import open_store

    with tempfile.TemporaryDirectory(prefix="scones-bench-") as tmp:
        staged = Path(tmp) / "staged"
        write_fold(Path(source), staged, fold)
        config = TrainConfig(**overrides)
        store = open_store(str(staged))
        started = time.perf_counter()
        trained = train_model(
            store,
            config,
            Path(tmp) / "model",
            name="bench",
            teacher_dir=Path(teacher) if teacher else None,
        )
        seconds = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        threshold = trained.metrics["recommended_threshold"]
        test = evaluate_model(trained.model_dir, store, split="test", threshold=threshold)
        classifier = OnnxClassifier(trained.model_dir)
        images = load_split(store, "test", prep=classifier.preprocessing, num_classes=2)
        probabilities = predict_pixels(classifier, images.pixels)
        ips1 = onnx_images_per_second(trained.model_dir, 1)
        ips32 = onnx_images_per_second(trained.model_dir, 32)
        shutil.rmtree(keep, ignore_errors=True)  # a rerun with the same --models replaces it
        shutil.copytree(trained.model_dir, keep)
    at = test.get("at_threshold") or {}
    return {
        "fold": fold,
        "config": config.model_dump(mode="json"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "n_train": trained.card.training["n_train"],
        "n_test": test["n"],
        "test_accuracy": test["accuracy"],
        "test_coverage_at_99": test["coverage_at_recommended"],
        "val_threshold": threshold,
        "test_coverage_at_val_threshold": at.get("coverage"),
        "test_accuracy_at_val_threshold": at.get("selective_accuracy"),
        "temperature": trained.card.temperature,
        "parameters": trained.card.architecture["parameters"],
        "macs_per_image": trained.card.architecture["macs_per_image"],
        "train_seconds": seconds,
        "peak_rss_mb": peak_kb / 1024.0,
        "onnx_images_per_s_batch1": ips1,
        "onnx_images_per_s_batch32": ips32,
        "probabilities": probabilities.tolist(),
        "labels": images.labels.tolist(),
    }


def run_folds(
    source: Path, folds: list[int], name: str, overrides: dict[str, Any], kept: Path
) -> list[dict[str, Any]]:
    """Every fold of one configuration; models are kept under ``kept/NAME/fold-K``."""
    results = []
    for fold in folds:
        teacher = overrides.get("teacher")
        teacher_dir: str | None = teacher  # a model folder, or @NAME: that fold's model of NAME
        if isinstance(teacher, str) and teacher.startswith("@"):
            teacher_dir = str(kept / teacher[1:] / f"fold-{fold}")
            if not Path(teacher_dir).is_dir():
                raise SystemExit(f"{name}: teacher {teacher} has no model of fold {fold} yet")
        keep = kept / name / f"fold-{fold}"
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            result = pool.submit(
                run_one, str(source), fold, overrides, str(keep), teacher_dir
            ).result()
        print(
            f"  fold {fold}: test {result['test_accuracy']:.4f} "
            f"cov@99 {result['test_coverage_at_99']:.3f} {result['train_seconds']:.0f} s "
            f"{result['peak_rss_mb']:.0f} MB, ONNX {result['onnx_images_per_s_batch1']:.0f}/s "
            f"(b1) {result['onnx_images_per_s_batch32']:.0f}/s (b32)",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    return results


def summary(results: list[dict[str, Any]]) -> dict[str, float]:
    from scones.model.evaluate import (
        bootstrap_coverage,
        coverage_interval,
        lowest_threshold_reaching,
    )

    probabilities = np.concatenate([np.asarray(r["probabilities"]) for r in results])
    labels = np.concatenate([np.asarray(r["labels"]) for r in results])
    top = probabilities.max(1)
    correct = (probabilities.argmax(1) == labels).astype(np.float64)
    threshold = lowest_threshold_reaching(top, correct, 0.99)
    at_val = [r["test_coverage_at_val_threshold"] or 0.0 for r in results]
    interval = coverage_interval(top, correct, 0.99) or {"low": 0.0, "high": 0.0}
    # What a held-out set of 200 images could show: test sets of that size drawn from the
    # pooled predictions, each with its own threshold.
    held_out = bootstrap_coverage(top, correct, 0.99, sample_size=HELD_OUT_SIZE)
    return {
        "n": float(len(labels)),
        "accuracy": float(correct.mean()),
        "coverage_at_99": float((top >= threshold).mean()) if threshold is not None else 0.0,
        "coverage_at_99_low": interval["low"],
        "coverage_at_99_high": interval["high"],
        "coverage_at_99_n200_median": float(np.median(held_out)),
        "coverage_at_99_n200_low": float(np.quantile(held_out, 0.025)),
        "coverage_at_99_n200_high": float(np.quantile(held_out, 0.975)),
        "coverage_goal_share_n200": float((held_out >= GOAL_COVERAGE).mean()),
        # Each fold's own coverage (200 images, like a held-out test set of that size).
        "coverage_at_99_fold_mean": float(np.mean([r["test_coverage_at_99"] for r in results])),
        "coverage_at_val_threshold_mean": float(np.mean(at_val)),
        "train_seconds_mean": float(np.mean([r["train_seconds"] for r in results])),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in results),
        "onnx_images_per_s_batch1": float(
            np.mean([r["onnx_images_per_s_batch1"] for r in results])
        ),
        "onnx_images_per_s_batch32": float(
            np.mean([r["onnx_images_per_s_batch32"] for r in results])
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", default="0,1,2,3,4", help="which of the 5 folds to run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--source", type=Path, default=SHARED_VEHICLES, help="shared folder")
    parser.add_argument("--no-scratch", action="store_true", help="skip the scratch network")
    parser.add_argument(
        "--no-distilled",
        action="store_true",
        help="skip the scratch network distilled from transfer",
    )
    parser.add_argument(
        "--only",
        help="comma-separated built-in configurations to run (transfer, scratch, distilled); "
        "distilled alone needs --models from a run that trained transfer",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="also train this configuration (TrainConfig overrides) on the same folds",
    )
    parser.add_argument(
        "--from-report",
        type=Path,
        help="train nothing: summarise a report written earlier with --save (new figures "
        "over the same predictions)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--save", type=Path, help="also write the full report (JSON) here")
    parser.add_argument(
        "--models",
        type=Path,
        help="keep every fold's model under DIR/NAME/fold-K (default: a temporary folder); a "
        "later run with the same DIR can distil from them (teacher @NAME)",
    )
    args = parser.parse_args()
    folds = [int(f) for f in args.folds.split(",")]
    skipped = {"scratch"} if args.no_scratch else set()
    if args.no_distilled:
        skipped.add("distilled")
    if args.only:
        skipped |= set(CONFIGS) - set(args.only.split(","))
    configs = {k: v for k, v in CONFIGS.items() if k not in skipped}
    for item in args.compare:
        name, _, text = item.partition("=")
        try:
            values = json.loads(text)
        except ValueError as exc:
            parser.error(f"--compare {item!r}: not NAME=JSON: {exc}")
        if not name or not isinstance(values, dict):
            parser.error(f"--compare {item!r}: expected NAME={{...}}")
        configs[name] = values

    if args.from_report is not None:
        report = json.loads(args.from_report.read_text())
        for entry in report["configs"].values():
            entry["summary"] = summary(entry["runs"])
        return print_report(report, as_json=args.json)

    import torch

    common: dict[str, Any] = {"device": args.device}
    if args.threads:
        common["threads"] = args.threads
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, folds {folds}",
        file=sys.stderr,
    )
    report: dict[str, Any] = {"torch": torch.__version__, "folds": folds, "configs": {}}
    with tempfile.TemporaryDirectory(prefix="scones-bench-models-") as temporary:
        kept = args.models or Path(temporary)
        for name, values in configs.items():
            print(f"{name}: {json.dumps(values)}", file=sys.stderr)
            runs = run_folds(args.source, folds, name, {**common, **values}, kept)
            report["configs"][name] = {"overrides": values, "summary": summary(runs), "runs": runs}
    if args.save:
        args.save.write_text(json.dumps(report))
    return print_report(report, as_json=args.json)


def print_report(report: dict[str, Any], *, as_json: bool) -> int:
    if as_json:
        for entry in report["configs"].values():
            for run in entry["runs"]:
                del run["probabilities"], run["labels"]
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{'config':12s} {'n':>5s} {'accuracy':>9s} {'cov@99%':>8s} {'95% interval':>13s} "
        f"{'fold cov':>8s} {'cov@val thr':>11s} {'n=200 P(goal)':>13s} "
        f"{'train s':>8s} {'peak MB':>8s} {'ONNX/s b1':>10s} {'ONNX/s b32':>10s}"
    )
    for name, entry in report["configs"].items():
        s = entry["summary"]
        print(
            f"{name:12s} {s['n']:5.0f} {s['accuracy']:9.4f} {s['coverage_at_99']:8.3f} "
            f"{s['coverage_at_99_low']:6.3f}-{s['coverage_at_99_high']:.3f} "
            f"{s['coverage_at_99_fold_mean']:8.3f} {s['coverage_at_val_threshold_mean']:11.3f} "
            f"{s['coverage_goal_share_n200']:13.2f} "
            f"{s['train_seconds_mean']:8.1f} "
            f"{s['peak_rss_mb_max']:8.0f} {s['onnx_images_per_s_batch1']:10.0f} "
            f"{s['onnx_images_per_s_batch32']:10.0f}"
        )
    if "transfer" in report["configs"]:
        s = report["configs"]["transfer"]["summary"]
        print(
            f"\ntransfer vs goals: accuracy {s['accuracy']:.4f} / {GOAL_ACCURACY}, coverage "
            f"{s['coverage_at_99']:.3f} / {GOAL_COVERAGE}, train {s['train_seconds_mean']:.0f} "
            f"/ {GOAL_SECONDS:.0f} s, peak {s['peak_rss_mb_max']:.0f} / {GOAL_RSS_MB:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
