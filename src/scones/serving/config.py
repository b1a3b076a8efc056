"""The endpoint's configuration: one validated object, passed as JSON to worker processes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scones.errors import UsageError
from scones.serving.capture import (
    DEFAULT_FLUSH_INTERVAL_S,
    CaptureOption,
    parse_capture_options,
    validate_sagemaker_name,
)

# SageMaker real-time endpoints refuse payloads over 6 MB; so do we.
MAX_BODY_BYTES = 6 * 1024 * 1024
# Raw ONNX Runtime on 2 cores runs fastest at batches of 4 (the transfer model: 429 images/s,
# 392 at 8, 344 at 32; larger batches fall out of cache), and 4 served the most requests/s at
# concurrency 32 with the lowest p99 at 8 (benchmarks/serve_peers.py, docs/benchmarks.md).
DEFAULT_MAX_BATCH_SIZE = 4
DEFAULT_MAX_BATCH_DELAY_MS = 2.0
# Requests in flight at once before new ones get 503 (backpressure instead of a huge queue).
DEFAULT_MAX_CONCURRENCY = 1024


class ServeConfig(BaseModel):
    """Everything one endpoint process needs; every field has the CLI's default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Path
    endpoint_name: str = "scones-endpoint"
    variant: str = "AllTraffic"
    max_batch_size: int = Field(default=DEFAULT_MAX_BATCH_SIZE, ge=1, le=1024)
    max_batch_delay_ms: float = Field(default=DEFAULT_MAX_BATCH_DELAY_MS, ge=0.0, le=1000.0)
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1)
    max_concurrency: int = Field(default=DEFAULT_MAX_CONCURRENCY, ge=1)
    intra_op_threads: int = Field(default=0, ge=0)
    # None: no data capture.
    capture_uri: str | None = None
    capture_sampling: float = Field(default=100.0, ge=0.0, le=100.0)
    capture_options: tuple[CaptureOption, ...] = (CaptureOption.INPUT, CaptureOption.OUTPUT)
    capture_flush_interval_s: float = Field(default=DEFAULT_FLUSH_INTERVAL_S, gt=0.0)
    s3_endpoint_url: str | None = None

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name(cls, value: str) -> str:
        return validate_sagemaker_name("endpoint_name", value)

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str) -> str:
        return validate_sagemaker_name("variant", value)

    @field_validator("capture_options", mode="before")
    @classmethod
    def _options(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(sorted(parse_capture_options(value)))
        return value


def build_serve_config(**values: object) -> ServeConfig:
    """A :class:`ServeConfig`, with validation problems as one UsageError naming the field."""
    try:
        return ServeConfig(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise UsageError(f"invalid serving configuration: {problems}") from None
