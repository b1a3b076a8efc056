"""`scones review ...` and `scones compare` (scones.review)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scones.cli.options import (
    CaptureUriOption,
    EndpointNameOption,
    StoreOption,
    ThresholdOption,
    open_configured_store,
    settings,
    store_uri,
)
from scones.cli.render import console, out

if TYPE_CHECKING:
    from scones.review.actions import ReviewConfig

review_app = typer.Typer(
    help="Review unsure predictions: list, label, undo, export for retraining, sync.",
    no_args_is_help=True,
)

ByOption = Annotated[
    str | None, typer.Option("--by", help="Who labels (default: the OS user name).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def review_config() -> ReviewConfig:
    """The queue in the executions database (SCONES_DB), labelling the configured classes."""
    from scones.review.actions import ReviewConfig

    conf = settings()
    return ReviewConfig(conf.db, tuple(conf.class_names), conf.s3_endpoint_url)


def _reviewer(by: str | None) -> str:
    from scones.review.api import default_reviewer

    return by or default_reviewer()


def _print_item_line(item) -> None:
    # Tab-separated, as `scones run` prints one image: easy to read and to cut.
    typer.echo(
        f"{item.item_id}\t{item.status}\t{item.label or '-'}\t"
        f"guess {item.predicted_class} {item.confidence:.4f}"
    )


@review_app.command("list")
def review_list(
    status: Annotated[
        str | None, typer.Option("--status", help="Only pending or labelled items.")
    ] = None,
    model_version: Annotated[
        str | None, typer.Option("--model-version", help="Only items of this model version.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only items seen since: ISO 8601 time or an age (2h, 1d)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only items seen until this ISO 8601 time.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most items to show.")] = 50,
    json_output: JsonOption = False,
) -> None:
    """List review items, most useful first (pending, closest to the decision boundary)."""
    from rich.table import Table

    from scones.review.actions import list_items
    from scones.times import parse_optional_moment

    items, counts = list_items(
        review_config(),
        status=status,
        model_version=model_version,
        since=parse_optional_moment(since, parameter="since"),
        until=parse_optional_moment(until, parameter="until"),
        limit=limit,
    )
    if json_output:
        for item in items:
            typer.echo(json.dumps(item.as_dict()))
        return
    table = Table(title=f"{counts['pending']} pending, {counts['labelled']} labelled")
    for column in ("key", "status", "guess", "confidence", "label", "by", "model", "seen"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item.item_id,
            item.status,
            item.predicted_class,
            f"{item.confidence:.4f}",
            item.label or "",
            item.labelled_by or "",
            item.model_version,
            item.observed_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)


@review_app.command("show")
def review_show(
    key: Annotated[str, typer.Argument(help="Item key (12 hex digits, from `review list`).")],
) -> None:
    """Show one item: the model's guess, where its image is, its label history."""
    from scones.review.actions import show_item

    typer.echo(json.dumps(show_item(review_config(), key).as_dict(), indent=2))


@review_app.command("label")
def review_label(
    key: Annotated[str, typer.Argument(help="Item key (12 hex digits, from `review list`).")],
    label: Annotated[
        str, typer.Argument(help="bicycle, motorcycle (the classes) or neither (not a vehicle).")
    ],
    note: Annotated[str | None, typer.Option("--note", help="A note kept with the label.")] = None,
    by: ByOption = None,
    relabel: Annotated[
        bool,
        typer.Option("--relabel", help="Replace an existing label (the old one stays in history)."),
    ] = False,
) -> None:
    """Label one item; a labelled item needs --relabel."""
    from scones.review.actions import label_item

    item = label_item(review_config(), key, label, by=_reviewer(by), note=note, relabel=relabel)
    _print_item_line(item)


@review_app.command("undo")
def review_undo(
    key: Annotated[str, typer.Argument(help="Item key (12 hex digits, from `review list`).")],
    by: ByOption = None,
) -> None:
    """Withdraw an item's latest label (it shows the one before, or is pending again)."""
    from scones.review.actions import undo_label

    _print_item_line(undo_label(review_config(), key, by=_reviewer(by)))


@review_app.command("export")
def review_export(
    out_dir: Annotated[
        Path, typer.Option("--out", help="New or empty folder for the staged layout.")
    ],
) -> None:
    """Write labelled items (not neither) as a staged layout: train/, train.lst, dataset.json.

    Import it with `scones stage --source DIR`.
    """
    from scones.review.actions import export_items

    report = export_items(review_config(), out_dir)
    counts = ", ".join(f"{name} {count}" for name, count in report.counts.items())
    out.print(f"exported {report.total} images to {report.out_dir} ({counts})", highlight=False)


@review_app.command("sync")
def review_sync(
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only what happened since: ISO 8601 time or an age (2h)."),
    ] = None,
    model_version: Annotated[
        str,
        typer.Option("--model-version", help="Model version to record on new items (if known)."),
    ] = "",
    no_capture: Annotated[
        bool, typer.Option("--no-capture", help="Only the executions, not the data capture.")
    ] = False,
    capture_uri: CaptureUriOption = None,
    endpoint_name: EndpointNameOption = None,
    threshold: ThresholdOption = None,
    store: StoreOption = None,
) -> None:
    """Add every threshold failure and captured request under the threshold (once each)."""
    from scones.review.actions import SyncRequest, sync_review
    from scones.times import parse_optional_moment

    conf = settings()
    request = SyncRequest(
        store_uri=store_uri(store),
        capture_uri=None if no_capture else (capture_uri or conf.capture_uri),
        endpoint_name=endpoint_name or conf.endpoint_name,
        threshold=conf.threshold if threshold is None else threshold,
        model_version=model_version,
        since=parse_optional_moment(since, parameter="since"),
    )
    report = sync_review(review_config(), request)
    out.print(
        f"added {report.added} items ({report.merged} more sources of known images, "
        f"{report.known} already imported)",
        highlight=False,
    )
    for reason, count in sorted(report.skipped.items()):
        console.print(f"skipped {count}: {reason}", highlight=False, markup=False)


def compare(
    candidate: Annotated[
        str, typer.Option("--candidate", help="Challenger model REF: version, alias, URI, path.")
    ],
    model: Annotated[
        str, typer.Option("--model", help="Champion model REF (default: production).")
    ] = "production",
    data: Annotated[
        str | None,
        typer.Option("--data", help="Staged layout to compare on (default: the store)."),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="Held-out split both models are scored on.")
    ] = "test",
    threshold: ThresholdOption = None,
    json_output: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Champion vs challenger on the same images: accuracy, coverage, selective accuracy,
    ECE, and McNemar's exact test on the images only one of them gets right."""
    from rich.table import Table

    from scones.review.compare import compare_references
    from scones.store import open_store

    conf = settings()
    registry = open_configured_store(store)
    data_store = open_store(data, s3_endpoint_url=conf.s3_endpoint_url) if data else registry
    result = compare_references(
        model,
        candidate,
        data_store,
        registry=registry,
        cache_dir=conf.cache_dir,
        split=split,
        threshold=conf.threshold if threshold is None else threshold,
        s3_endpoint_url=conf.s3_endpoint_url,
    )
    if json_output:
        typer.echo(json.dumps(result))
        return
    champion, challenger = result["champion"], result["candidate"]
    table = Table(
        title=f"{result['data']['n']} images of {split} in {result['data']['uri']}, "
        f"threshold {result['threshold']:g}"
    )
    table.add_column("")
    for role, figures in (("champion", champion), ("candidate", challenger)):
        table.add_column(f"{role} {figures['model']['name']} v{figures['model']['version']}")
    table.add_column("difference")

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    for name in ("accuracy", "coverage", "selective_accuracy", "ece"):
        difference = result["difference"][name]
        table.add_row(
            name.replace("_", " "),
            cell(champion[name]),
            cell(challenger[name]),
            "-" if difference is None else f"{difference:+.4f}",
        )
    out.print(table)
    test = result["mcnemar"]
    out.print(
        f"McNemar exact test: {test['candidate_only_correct']} images only the candidate gets "
        f"right, {test['champion_only_correct']} only the champion; p = {test['p_value']:.4g}",
        highlight=False,
    )
    for note in result["overlap"]["unverified"]:
        console.print(f"note: overlap not verified: {note}", highlight=False, markup=False)
