"""`scones models list|show|promote`: the model registry in the store."""

from __future__ import annotations

from typing import Annotated

import typer

from scones.cli.options import ModelNameOption, StoreOption, open_configured_store, settings
from scones.cli.render import out, print_json_lines, print_rows
from scones.times import iso_z

models_app = typer.Typer(
    help="The model registry in the store: list versions, show one, promote one.",
    no_args_is_help=True,
)


@models_app.command("list")
def models_list(
    name: ModelNameOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON Lines.")] = False,
    store: StoreOption = None,
) -> None:
    """List the registered versions of a model, with their aliases."""
    from scones.model.registry import list_versions

    model_name = name or settings().model_name
    versions = list_versions(open_configured_store(store), model_name)
    if json_output:
        print_json_lines(version.to_dict() for version in versions)
        return
    rows = [
        [
            str(v.version),
            ",".join(v.aliases),
            iso_z(v.registered_at),
            f"{v.size / 1e6:.1f} MB",
            v.uri,
        ]
        for v in versions
    ]
    columns = ["version", "aliases", "registered", "size", "uri"]
    print_rows(columns, rows, title=f"model {model_name}")


@models_app.command("show")
def models_show(
    ref: Annotated[
        str, typer.Argument(help="Model REF: version, alias, store URI or local path.")
    ] = "production",
    name: ModelNameOption = None,
    store: StoreOption = None,
) -> None:
    """Print a model's model.json (classes, preprocessing, temperature, metrics, ...)."""
    from scones.model.registry import describe, resolve_model

    model_dir = resolve_model(
        ref, store=open_configured_store(store), cache_dir=settings().cache_dir, name=name
    )
    card = describe(model_dir)
    typer.echo(card.model_dump_json(indent=2))


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="The version to promote.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to point at it.")] = "production",
    if_better: Annotated[
        bool,
        typer.Option(
            "--if-better",
            help="Only when it is not worse than the version the alias points at now, on the "
            "held-out split (refused with the numbers otherwise).",
        ),
    ] = False,
    margin: Annotated[
        float,
        typer.Option(
            "--margin", help="With --if-better: accuracy it may lose and still be promoted."
        ),
    ] = 0.0,
    data: Annotated[
        str | None,
        typer.Option("--data", help="With --if-better: staged layout to compare on (the store)."),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="With --if-better: the held-out split.")
    ] = "test",
    name: ModelNameOption = None,
    store: StoreOption = None,
) -> None:
    """Point an alias (production by default) at a registered version."""
    from scones.model.registry import promote
    from scones.review.compare import promote_if_better
    from scones.store import open_store

    conf = settings()
    model_name = name or conf.model_name
    registry = open_configured_store(store)
    if not if_better:
        previous = promote(registry, model_name, version, alias)
        out.print(f"{model_name}: {alias} -> version {version} (was {previous})", highlight=False)
        return
    promotion = promote_if_better(
        registry,
        model_name,
        version,
        data=open_store(data, s3_endpoint_url=conf.s3_endpoint_url) if data else registry,
        cache_dir=conf.cache_dir,
        split=split,
        threshold=conf.threshold,
        margin=margin,
        alias=alias,
        s3_endpoint_url=conf.s3_endpoint_url,
    )
    out.print(
        f"{model_name}: {alias} -> version {version} (was {promotion.previous}); "
        f"{promotion.decision.reason}",
        highlight=False,
    )
