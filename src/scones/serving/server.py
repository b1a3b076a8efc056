"""Run the endpoint on uvicorn: port rules, worker processes, graceful shutdown.

SIGTERM and SIGINT make uvicorn stop accepting connections, finish the requests in flight
(up to ``GRACEFUL_SHUTDOWN_S``), then run the app's shutdown: the batcher finishes its
queue and the capture writer flushes every record before the process exits.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TypedDict

from scones.errors import ParameterError, UsageError
from scones.serving.config import ServeConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
# SageMaker tells a container which port to bind with this variable; it wins over --port.
SAGEMAKER_PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
# Worker processes read their configuration from here (uvicorn starts them by import string).
CONFIG_ENV = "SCONES_SERVE_CONFIG_JSON"
GRACEFUL_SHUTDOWN_S = 30
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
KEEP_ALIVE_S = 75  # longer than typical load balancer idle timeouts (SageMaker: 60 s)


def parse_port(value: str | int, source: str = "{port}") -> int:
    """A TCP port from ``source``: the ``port`` parameter, or a variable's name."""
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ParameterError(f"{source} {value!r} is not a TCP port (1-65535)", "port")
    return int(text)


def resolve_port(port: int | None, env: Mapping[str, str] | None = None) -> int:
    """``SAGEMAKER_BIND_TO_PORT`` when set, else ``port``, else 8080."""
    env = os.environ if env is None else env
    sagemaker_port = env.get(SAGEMAKER_PORT_ENV, "").strip()
    if sagemaker_port:
        chosen = parse_port(sagemaker_port, SAGEMAKER_PORT_ENV)
        if port is not None and port != chosen:
            logger.info("%s=%s overrides --port %s", SAGEMAKER_PORT_ENV, chosen, port)
        return chosen
    if port is None:
        return DEFAULT_PORT
    return parse_port(port)


def app_from_env() -> FastAPI:
    """Worker processes' app factory (uvicorn imports it by name): the configuration comes
    as JSON in the environment."""
    from scones.serving.app import create_app

    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise UsageError(f"{CONFIG_ENV} is not set: start workers with `scones serve`")
    return create_app(ServeConfig.model_validate_json(text))


def check_model_loads(config: ServeConfig) -> None:
    """Load the model once up front, so a broken artifact is one clear error, not a 503."""
    from scones.model.artifact import OnnxClassifier

    OnnxClassifier(config.model_dir, intra_op_threads=1)


class _UvicornOptions(TypedDict):
    """What one worker and many share (typed, so uvicorn's keyword types are checked)."""

    host: str
    port: int
    log_level: str
    timeout_graceful_shutdown: int
    timeout_keep_alive: int
    proxy_headers: bool
    server_header: bool


def run_server(
    config: ServeConfig,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """Serve until SIGTERM/SIGINT; returns after the graceful shutdown completed."""
    import uvicorn

    if workers < 1:
        raise ParameterError(f"{{workers}} {workers} must be at least 1", "workers")
    common: _UvicornOptions = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "proxy_headers": False,
        "server_header": False,
    }
    if workers == 1:
        from scones.serving.app import create_app

        server = uvicorn.Server(uvicorn.Config(create_app(config), **common))
        previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}

        def after_graceful_shutdown(sig: int, _frame: FrameType | None) -> None:
            # uvicorn re-raises the stop signal once its graceful shutdown is done; that is
            # a clean stop (exit 0). A signal before uvicorn took over stops at once.
            if not server.should_exit:
                raise SystemExit(128 + sig)

        in_main_thread = threading.current_thread() is threading.main_thread()
        for sig in _STOP_SIGNALS if in_main_thread else ():
            signal.signal(sig, after_graceful_shutdown)
        try:
            server.run()
        finally:
            for sig, handler in previous.items() if in_main_thread else ():
                signal.signal(sig, handler)
        return
    # Each worker is its own process with its own model, batcher, capture writer, metrics.
    os.environ[CONFIG_ENV] = config.model_dump_json()
    uvicorn.run("scones.serving.server:app_from_env", factory=True, workers=workers, **common)


def default_capture_uri(
    capture_uri: str | None, store_flag: str | None, env: Mapping[str, str] | None = None
) -> str:
    """``--capture-uri``; else ``<--store>/data_capture`` when --store was given (unless
    ``SCONES_CAPTURE_URI`` is set); else the settings' default, ``<store>/data_capture``."""
    from scones.settings import get_settings

    env = os.environ if env is None else env
    if capture_uri:
        return capture_uri
    if store_flag and not env.get("SCONES_CAPTURE_URI"):
        return store_flag.rstrip("/") + "/data_capture"
    return get_settings().capture_uri


def serve_model(
    model_ref: str,
    *,
    store_uri: str,
    cache_dir: Path,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    workers: int = 1,
    capture: bool = True,
    log_level: str = "info",
    **config_values: object,
) -> None:
    """``scones serve``: resolve the model, check it loads, serve until stopped."""
    from scones.serving.config import build_serve_config
    from scones.serving.model_ref import resolve_model_dir
    from scones.store import open_store

    if not capture:
        config_values["capture_uri"] = None
    chosen_port = resolve_port(port)
    s3_endpoint_url = config_values.get("s3_endpoint_url")
    if s3_endpoint_url is not None and not isinstance(s3_endpoint_url, str):
        raise UsageError(f"s3_endpoint_url {s3_endpoint_url!r} must be a URL")
    store = open_store(store_uri, s3_endpoint_url=s3_endpoint_url)
    model_dir = resolve_model_dir(
        model_ref, store=store, cache_dir=cache_dir, s3_endpoint_url=s3_endpoint_url
    )
    config = build_serve_config(model_dir=model_dir, **config_values)
    if config.capture_uri:
        open_store(config.capture_uri, s3_endpoint_url=s3_endpoint_url)  # a bad URI fails now
    check_model_loads(config)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s %(message)s")
    run_server(config, host=host, port=chosen_port, workers=workers, log_level=log_level)
