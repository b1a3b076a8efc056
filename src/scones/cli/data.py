"""`scones stage`: stage CIFAR-100 classes into the store (scones.data)."""

from __future__ import annotations

from typing import Annotated

import typer

from scones.cli.options import StoreOption, open_configured_store, settings
from scones.cli.render import console, out


def stage(
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="The CIFAR-100 python archive URL (MD5-verified download), a local archive "
            "of that format, or an already-staged folder or store prefix to import. "
            "Default: SCONES_SOURCE or the official archive.",
        ),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Comma-separated CIFAR-100 fine label names; a class's label is its "
            "position here. Default: SCONES_CLASSES or bicycle,motorcycle.",
        ),
    ] = None,
    store: StoreOption = None,
    prefix: Annotated[
        str,
        typer.Option("--prefix", help="Key prefix in the store for the layout (default: root)."),
    ] = "",
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction", help="Share of each class carved out of train as validation."
        ),
    ] = 0.1,
    test_fraction: Annotated[
        float,
        typer.Option(
            "--test-fraction",
            show_default=False,
            help="Share of each class carved out as test, only when an imported layout has no "
            "test.lst (default 1/6, CIFAR-100's own ratio).",
        ),
    ] = 1 / 6,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the stratified splits.")] = 0,
    md5: Annotated[
        str | None,
        typer.Option(
            "--md5",
            help="Expected MD5 of the archive (known for the official URL; required for other "
            "URLs; verified for a local archive when given).",
        ),
    ] = None,
) -> None:
    """Stage CIFAR-100 classes into the store in SageMaker's image-classification layout."""
    from rich.progress import Progress
    from rich.table import Table

    from scones.data.stage import stage as stage_data

    config = settings()
    target = open_configured_store(store)
    with Progress(console=console, transient=True) as progress:
        report = stage_data(
            source or config.source,
            target,
            classes=(classes or config.classes).split(","),
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            md5=md5,
            cache_dir=config.cache_dir,
            prefix=prefix,
            progress=progress,
            s3_endpoint_url=config.s3_endpoint_url,
        )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    where = target.uri_for(report.prefix) if report.prefix else target.uri
    table = Table(title=f"staged into {where}")
    table.add_column("split")
    for name in report.class_names:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    for split, counts in report.counts.items():
        cells = [str(counts[name]) for name in report.class_names]
        table.add_row(split, *cells, str(report.total(split)))
    out.print(table)
    console.print(f"done in {report.seconds:.1f} s", highlight=False)
