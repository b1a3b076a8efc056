"""`scones serve` and `scones invoke` (scones.serving)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scones.cli.options import StoreOption, settings, store_uri


def serve(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Model REF: a version (3), an alias (production), a store URI of a "
            "model.tar.gz, or a local model.tar.gz or extracted folder.",
        ),
    ] = "production",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(help="TCP port (default 8080); SAGEMAKER_BIND_TO_PORT wins when set."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Worker processes, each with its own model and batcher.")
    ] = 1,
    endpoint_name: Annotated[
        str | None,
        typer.Option(help="Endpoint name, used in capture paths (default SCONES_ENDPOINT_NAME)."),
    ] = None,
    variant: Annotated[str, typer.Option(help="Production variant name.")] = "AllTraffic",
    max_batch_size: Annotated[
        int, typer.Option(help="Most images per ONNX Runtime call (micro-batching).")
    ] = 4,  # scones.serving.config.DEFAULT_MAX_BATCH_SIZE (not imported: --help stays fast)
    max_batch_delay_ms: Annotated[
        float,
        typer.Option(help="Longest a request waits for others to batch with, milliseconds."),
    ] = 2.0,
    intra_op_threads: Annotated[
        int,
        typer.Option(
            help="ONNX Runtime threads per inference call (0: auto, one per available CPU)."
        ),
    ] = 0,
    capture_uri: Annotated[
        str | None,
        typer.Option(help="Data capture store URI or prefix (default <store>/data_capture)."),
    ] = None,
    capture_sampling: Annotated[
        float, typer.Option(help="Percentage of requests captured, 0 to 100.")
    ] = 100.0,
    capture_options: Annotated[
        str, typer.Option(help="What to capture: Input, Output or Input,Output.")
    ] = "Input,Output",
    no_capture: Annotated[
        bool, typer.Option("--no-capture", help="Turn data capture off.")
    ] = False,
    log_level: Annotated[
        str, typer.Option(help="Log level: debug, info, warning, error.")
    ] = "info",
    store: StoreOption = None,
) -> None:
    """Serve a model as a SageMaker-style endpoint (/ping, /invocations) until SIGTERM."""
    from scones.serving.server import default_capture_uri, serve_model

    conf = settings()
    serve_model(
        model,
        store_uri=store_uri(store),
        cache_dir=conf.cache_dir,
        host=host,
        port=port,
        workers=workers,
        capture=not no_capture,
        log_level=log_level,
        endpoint_name=endpoint_name or conf.endpoint_name,
        variant=variant,
        max_batch_size=max_batch_size,
        max_batch_delay_ms=max_batch_delay_ms,
        intra_op_threads=intra_op_threads,
        capture_uri=default_capture_uri(capture_uri, store),
        capture_sampling=capture_sampling,
        capture_options=capture_options,
        s3_endpoint_url=conf.s3_endpoint_url,
    )


def invoke(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG or JPEG) to classify.")],
    endpoint: Annotated[
        str | None,
        typer.Option(help="Endpoint URL (default SCONES_ENDPOINT_URL, http://127.0.0.1:8080)."),
    ] = None,
    custom_attributes: Annotated[
        str | None,
        typer.Option(help="Sent as X-Amzn-SageMaker-Custom-Attributes."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per image.")
    ] = False,
) -> None:
    """Send images to an endpoint; print the class and confidence of each."""
    import json

    from scones.serving.invoke import invoke_images

    answers = invoke_images(
        endpoint or settings().endpoint_url, images, custom_attributes=custom_attributes
    )
    # Plain echo, not rich: tab-separated lines stay machine-readable.
    for answer in answers:
        if json_output:
            record = {
                "image": str(answer.path),
                "class": answer.class_name,
                "confidence": answer.confidence,
                "probabilities": answer.probabilities,
            }
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{answer.path}\t{answer.class_name}\t{answer.confidence:.4f}")
