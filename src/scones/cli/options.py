"""Option types shared by several commands, and the settings their defaults come from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from scones.errors import SconesError
from scones.settings import Settings, get_settings

if TYPE_CHECKING:
    from scones.store import ObjectStore

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Object store URI (folder, file:///abs, s3://bucket/prefix). "
        "Default: SCONES_STORE or ./.scones/store.",
    ),
]


ModelNameOption = Annotated[
    str | None,
    typer.Option("--name", help="Model name in the registry (default SCONES_MODEL_NAME)."),
]


CaptureUriOption = Annotated[
    str | None,
    typer.Option(
        "--capture-uri",
        help="Data capture prefix (folder, file:// or s3:// URI). "
        "Default: SCONES_CAPTURE_URI or <store>/data_capture.",
    ),
]
EndpointNameOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-name",
        help="Endpoint whose capture to read. Default: SCONES_ENDPOINT_NAME or scones-endpoint.",
    ),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="Confidence a prediction needs to pass. Default: SCONES_THRESHOLD or 0.93.",
    ),
]
MonitorModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model whose baseline.json the traffic is compared with: version, alias, store "
        "URI or local path. Default: production (drift skipped when it cannot be resolved).",
    ),
]


def routing_threshold(explicit: float | None, endpoint_url: str) -> float:
    """``--threshold`` when given, else SCONES_THRESHOLD; SCONES_THRESHOLD=model asks the
    endpoint for the threshold its model records (the default when it records none)."""
    if explicit is not None:
        return explicit
    conf = settings()
    if not conf.threshold_from_model:
        return conf.threshold
    from scones.serving.client import model_routing_threshold

    return model_routing_threshold(endpoint_url, conf.threshold)


def settings() -> Settings:
    """The settings (environment, .env) the options fall back to."""
    return get_settings()


def store_uri(store: str | None) -> str:
    """``--store`` when given, else the configured store."""
    return store or settings().store


def open_configured_store(store: str | None) -> ObjectStore:
    """The store ``--store`` names (or the configured one), with the configured S3 endpoint."""
    from scones.store import open_store

    return open_store(store_uri(store), s3_endpoint_url=settings().s3_endpoint_url)


# A library error names the parameter (``config_file``); the user typed a flag (``--config``).
# Parameters whose flag is not simply ``--`` + the name with ``-`` for ``_``:
_FLAG_OF_PARAMETER = {
    "config_file": "--config",
    "keys": "--key",
    "random_count": "--random",
    "model_ref": "--model",
    "out_dir": "--out",
}


def flag_for(parameter: str) -> str:
    """The command-line flag that sets library parameter ``parameter``."""
    return _FLAG_OF_PARAMETER.get(parameter, "--" + parameter.replace("_", "-"))


def user_message(error: SconesError) -> str:
    """An error's message as the CLI user should read it: flags, not parameter names."""
    return error.naming({name: flag_for(name) for name in error.parameters})
