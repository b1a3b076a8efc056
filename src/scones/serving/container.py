"""The SageMaker bring-your-own-container entry point (``docker/serve`` execs this).

SageMaker runs the image as ``docker run <image> serve``, extracts ``model.tar.gz`` into
``/opt/ml/model`` and sends traffic to port 8080 (or ``SAGEMAKER_BIND_TO_PORT``). On SageMaker
the platform's own ``DataCaptureConfig`` captures traffic, so the container captures nothing
unless ``SCONES_CAPTURE_URI`` is set (for running the image outside SageMaker).

Environment (all optional):

- ``SCONES_MODEL_DIR``: model folder or ``model.tar.gz`` instead of ``/opt/ml/model``
- ``SAGEMAKER_BIND_TO_PORT``: port (default 8080)
- ``SAGEMAKER_MODEL_SERVER_WORKERS``: worker processes (default 1)
- ``SCONES_HOST``: interface to bind (default 0.0.0.0, all interfaces of the container)
- ``SCONES_ENDPOINT_NAME``, ``SCONES_VARIANT``: names used in capture paths and metrics
- ``SCONES_CAPTURE_URI``, ``SCONES_CAPTURE_SAMPLING``: data capture outside SageMaker
- ``SCONES_MAX_BATCH_SIZE``, ``SCONES_MAX_BATCH_DELAY_MS``: micro-batching
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scones.errors import SconesError, UsageError
from scones.model.artifact import MODEL_JSON
from scones.model.registry import extract_to_cache
from scones.serving.config import DEFAULT_MAX_BATCH_SIZE, ServeConfig, build_serve_config
from scones.serving.model_ref import ModelReferenceError
from scones.serving.server import resolve_port

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
MODEL_DIR_ENV = "SCONES_MODEL_DIR"
WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
CONTAINER_HOST = "0.0.0.0"  # reachable from outside the container


@dataclass(frozen=True)
class ContainerPlan:
    """What the container will serve, and where."""

    config: ServeConfig
    host: str
    port: int
    workers: int


def find_model_dir(env: Mapping[str, str], cache_dir: Path) -> Path:
    """``SCONES_MODEL_DIR`` or ``/opt/ml/model``: an extracted folder, or one holding
    ``model.tar.gz`` (SageMaker extracts it; ``docker run -v`` mounts may not)."""
    configured = env.get(MODEL_DIR_ENV, "").strip()
    source = Path(configured) if configured else SAGEMAKER_MODEL_DIR
    name = MODEL_DIR_ENV if configured else "the SageMaker model folder"
    if source.is_file():
        return extract_to_cache(source, cache_dir)
    if not source.is_dir():
        raise ModelReferenceError(f"{name} {str(source)!r} does not exist")
    if (source / MODEL_JSON).is_file():
        return source
    archive = source / "model.tar.gz"
    if archive.is_file():
        return extract_to_cache(archive, cache_dir)
    raise ModelReferenceError(f"{name} {str(source)!r} holds neither {MODEL_JSON} nor model.tar.gz")


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{name} {text!r} must be a whole number >= 1")
    return int(text)


def _float_env(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{name} {text!r} is not a number") from None


def plan_container(env: Mapping[str, str], *, cache_dir: Path | None = None) -> ContainerPlan:
    """Read the container's environment into a plan; raises naming any bad variable."""
    cache = cache_dir or Path(tempfile.gettempdir()) / "scones-model"
    model_dir = find_model_dir(env, cache)
    config = build_serve_config(
        model_dir=model_dir,
        endpoint_name=env.get("SCONES_ENDPOINT_NAME", "").strip() or "scones-endpoint",
        variant=env.get("SCONES_VARIANT", "").strip() or "AllTraffic",
        max_batch_size=_int_env(env, "SCONES_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE),
        max_batch_delay_ms=_float_env(env, "SCONES_MAX_BATCH_DELAY_MS", 2.0),
        capture_uri=env.get("SCONES_CAPTURE_URI", "").strip() or None,
        capture_sampling=_float_env(env, "SCONES_CAPTURE_SAMPLING", 100.0),
        s3_endpoint_url=env.get("SCONES_S3_ENDPOINT_URL", "").strip() or None,
    )
    return ContainerPlan(
        config=config,
        host=env.get("SCONES_HOST", "").strip() or CONTAINER_HOST,
        port=resolve_port(None, env),
        workers=_int_env(env, WORKERS_ENV, 1),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``serve`` (SageMaker's argument) or nothing: serve until SIGTERM."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["serve"]):
        print(f"usage: serve  (SageMaker runs the image with 'serve'); got {args}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        plan = plan_container(os.environ)
        from scones.serving.server import check_model_loads, run_server

        check_model_loads(plan.config)
        run_server(plan.config, host=plan.host, port=plan.port, workers=plan.workers)
    except SconesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
