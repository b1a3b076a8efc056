"""The inference endpoint: SageMaker's container contract on FastAPI.

Shape (as LitServe's): set up once (load the model in the background; ``/ping`` is 503 until
it is ready), then per request decode -> predict -> encode. Small images (camera thumbnails,
CIFAR-sized) are decoded on the event loop, larger ones in a thread pool; inference runs in the
micro-batching worker thread, never on the loop. POST /invocations bypasses FastAPI's routing
(``InvocationsFastPath``), as does SageMaker Runtime's
``POST /endpoints/{endpoint-name}/invocations``, so boto3's ``invoke_endpoint`` works against
it by ``endpoint_url``. Every bad input is a 4xx with ``{"error": code, "message": text}``,
never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scones.images import IMAGE_CONTENT_TYPES, ImageDecodeError, declared_pixels
from scones.model.artifact import ModelCard, OnnxClassifier, read_card
from scones.model.preprocess import preprocess_bytes
from scones.serving.batcher import BatchClock, BatcherClosedError, MicroBatcher
from scones.serving.capture import CaptureConfig, CaptureWriter
from scones.serving.config import ServeConfig
from scones.serving.metrics import PROMETHEUS_CONTENT_TYPE, ServingMetrics

logger = logging.getLogger(__name__)

CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
INFERENCE_ID_QUERY = "inferenceId"
# SageMaker's limits on these two headers.
MAX_CUSTOM_ATTRIBUTES_CHARS = 1024
MAX_INFERENCE_ID_CHARS = 64
# A request refused before its body was read (413, 415, ...) still has its body on the way:
# most clients (urllib, requests, boto3) send all of it before reading the answer, and a
# server that closes with unread bytes makes the kernel send a reset, so they would see
# "connection reset" instead of our answer. We read and discard up to this many times the
# body limit, for at most DRAIN_TIMEOUT_S, before answering (a client that sent
# Expect: 100-continue waits for our go-ahead instead, so nothing is read for it).
DRAIN_FACTOR = 4
DRAIN_TIMEOUT_S = 10.0
# Decoding a PNG/JPEG mostly releases the GIL, so a few threads decode in parallel.
DECODE_THREADS = max(2, min(8, os.cpu_count() or 2))
# Images up to this size are decoded on the event loop (well under a millisecond, cheaper than
# a thread hop); larger ones in the decode pool, so a big photo never stalls other requests.
INLINE_DECODE_MAX_PIXELS = 128 * 128
INLINE_DECODE_MAX_BYTES = 256 * 1024
# How long a request that arrives during model loading waits for it before a 503.
MODEL_LOAD_WAIT_S = 30.0
# Route labels for metrics; anything else counts as "other" (no unbounded label values).
_KNOWN_PATHS = frozenset(
    {"/ping", "/invocations", "/info", "/metrics", "/docs", "/openapi.json", "/redoc"}
)


class RequestProblem(Exception):
    """A bad request: becomes a 4xx JSON answer (never a 5xx)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


# Decode failures -> HTTP status. A pixel bomb is too large a payload (413); a format we do
# not read is an unsupported media type (415); everything else is a bad request (400).
_DECODE_STATUS = {"image_too_large": 413, "unsupported_image_format": 415}


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_intra_op_threads(requested: int) -> int:
    """0 (auto): one ONNX Runtime thread per available CPU. On 2 cores two threads served
    1.5x the requests/s of one at concurrency 32 (from-scratch and transfer models alike), the
    event loop's share notwithstanding (benchmarks/serve_peers.py, docs/benchmarks.md)."""
    return requested if requested > 0 else available_cpus()


class EndpointState:
    """What the app holds between requests: model, batcher, capture writer, metrics."""

    def __init__(self, config: ServeConfig, *, batch_clock: BatchClock | None = None) -> None:
        self.config = config
        self._batch_clock = batch_clock
        self.card: ModelCard = read_card(config.model_dir)
        version = "" if self.card.version is None else str(self.card.version)
        self.metrics = ServingMetrics(self.card.name, version, config.endpoint_name)
        self.classifier: OnnxClassifier | None = None
        self.batcher: MicroBatcher | None = None
        self.capture: CaptureWriter | None = None
        self.load_error: str | None = None
        self.in_flight = 0
        # Requests read or decoded now, not yet handed to the batcher: the company it waits for.
        self.arriving = 0
        self.decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="scones-decode")
        self._ready = threading.Event()
        self._loader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settled: asyncio.Event | None = None  # set when loading succeeded or failed

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        """Open the capture store now; load the model in the background."""
        self._loop = asyncio.get_running_loop()
        self._settled = asyncio.Event()
        if self.config.capture_uri:
            from scones.store import open_store

            store = open_store(self.config.capture_uri, s3_endpoint_url=self.config.s3_endpoint_url)
            self.capture = CaptureWriter(
                store,
                CaptureConfig(
                    endpoint_name=self.config.endpoint_name,
                    variant=self.config.variant,
                    sampling_percentage=self.config.capture_sampling,
                    options=frozenset(self.config.capture_options),
                    flush_interval_s=self.config.capture_flush_interval_s,
                ),
                on_written=self.metrics.count_capture_written,
                on_dropped=self.metrics.count_capture_dropped,
            )
        self._loader = threading.Thread(target=self._load, name="scones-model-load", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            classifier = OnnxClassifier(
                self.config.model_dir,
                intra_op_threads=resolve_intra_op_threads(self.config.intra_op_threads),
            )
            # One call of each shape warms ONNX Runtime's allocator before real traffic.
            channels, height, width = classifier.card.input_shape
            classifier.predict(np.zeros((1, channels, height, width), np.float32))
        except Exception as exc:  # reported by /ping (503) and the log; the server keeps up
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.error("model %s failed to load: %s", self.config.model_dir, self.load_error)
            self._signal_settled()
            return
        self.classifier = classifier
        self.batcher = MicroBatcher(
            classifier.predict,
            max_batch_size=self.config.max_batch_size,
            max_batch_delay_s=self.config.max_batch_delay_ms / 1000.0,
            on_batch=self.metrics.observe_batch,
            clock=self._batch_clock,
            arriving=lambda: self.arriving,
        )
        self._ready.set()
        self.metrics.set_loaded(True)
        self._signal_settled()
        logger.info(
            "model %s version %s loaded from %s",
            self.card.name,
            self.card.version,
            self.config.model_dir,
        )

    def _signal_settled(self) -> None:
        if self._loop is not None and self._settled is not None:
            self._loop.call_soon_threadsafe(self._settled.set)

    async def wait_loaded(self, timeout_s: float) -> MicroBatcher | None:
        """Wait (without blocking the loop) until the model loaded: its batcher, or None if
        it failed to load or is still loading after ``timeout_s``."""
        if self.batcher is None and self._settled is not None and not self.load_error:
            try:
                await asyncio.wait_for(self._settled.wait(), timeout_s)
            except TimeoutError:
                return None
        return self.batcher

    def stop(self) -> None:
        """Graceful shutdown: finish queued inferences, then flush every capture record."""
        if self._loader is not None:
            self._loader.join(timeout=60)
        if self.batcher is not None:
            self.batcher.close()
        self.decoder.shutdown(wait=True)
        if self.capture is not None:
            self.capture.close()
            logger.info(
                "data capture: %d records written, %d dropped",
                self.capture.written,
                self.capture.dropped,
            )


class MetricsMiddleware:
    """Counts every answer by path and status, and times /invocations (pure ASGI, cheap)."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        label = path if path in _KNOWN_PATHS else "other"
        if label == "other" and runtime_endpoint_name(path) is not None:
            label = "/invocations"  # the same handler, by SageMaker Runtime's path
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if label == "/invocations":
                    self.metrics.observe_latency(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(label, status)


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _check_header_text(name: str, value: str, limit: int) -> str:
    if not 1 <= len(value) <= limit:
        raise RequestProblem(
            400, "malformed_header", f"{name} must be 1 to {limit} characters, got {len(value)}"
        )
    if not all(" " <= char <= "~" for char in value):
        raise RequestProblem(
            400, "malformed_header", f"{name} {value!r} has characters that are not printable ASCII"
        )
    return value


def _accepts_json(accept: str) -> bool:
    for item in accept.split(","):
        media = _media_type(item)
        if media in ("", "*/*", "application/*", "application/json"):
            return True
    return False


def _check_request_headers(
    request: Request, max_body_bytes: int
) -> tuple[str, str | None, str | None]:
    """Content type, custom attributes and inference id, or a RequestProblem."""
    headers = request.headers
    content_type = headers.get("content-type")
    if content_type is None:
        raise RequestProblem(
            415,
            "unsupported_media_type",
            f"Content-Type is missing; send one of {', '.join(IMAGE_CONTENT_TYPES)}",
        )
    if _media_type(content_type) not in IMAGE_CONTENT_TYPES:
        raise RequestProblem(
            415,
            "unsupported_media_type",
            f"Content-Type {content_type!r} is not supported; send one of "
            f"{', '.join(IMAGE_CONTENT_TYPES)}",
        )
    accept = headers.get("accept")
    if accept is not None and not _accepts_json(accept):
        raise RequestProblem(
            406, "unsupported_accept", f"Accept {accept!r}: this endpoint answers application/json"
        )
    length = headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise RequestProblem(
                400, "malformed_header", f"Content-Length {length!r} is not a number"
            )
        if int(length) > max_body_bytes:
            raise RequestProblem(
                413,
                "payload_too_large",
                f"Content-Length {int(length)} bytes is over the limit of {max_body_bytes} bytes",
            )
    custom = headers.get(CUSTOM_ATTRIBUTES_HEADER)
    if custom is not None:
        _check_header_text(CUSTOM_ATTRIBUTES_HEADER, custom, MAX_CUSTOM_ATTRIBUTES_CHARS)
    inference_id = headers.get(INFERENCE_ID_HEADER) or request.query_params.get(INFERENCE_ID_QUERY)
    if inference_id is not None:
        _check_header_text(INFERENCE_ID_HEADER, inference_id, MAX_INFERENCE_ID_CHARS)
        if inference_id[0] == " ":
            raise RequestProblem(
                400,
                "malformed_header",
                f"{INFERENCE_ID_HEADER} {inference_id!r} starts with a space",
            )
    return content_type, custom, inference_id


async def _discard(stream: AsyncIterator[bytes], read: int, limit: int) -> int:
    """Read and drop the rest of a refused body (bounded in bytes and time); bytes read."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for chunk in stream:
                read += len(chunk)
                if read > DRAIN_FACTOR * limit:
                    break
    except (TimeoutError, ClientDisconnect):
        pass  # answer anyway: this client may see a reset, the server is not held up
    return read


async def _discard_unread_body(request: Request, limit: int) -> None:
    """Before refusing a request whose body was not read: let the client finish sending."""
    if request.headers.get("expect", "").strip().lower() == "100-continue":
        return  # the client sends nothing until we ask (and we do not)
    length = request.headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > DRAIN_FACTOR * limit:
        return  # too much to read for nothing: answer at once
    await _discard(request.stream(), 0, limit)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, counting streamed bytes (Content-Length may be absent or wrong)."""
    chunks: list[bytes] = []
    total = 0
    stream = request.stream()
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            total = await _discard(stream, total, limit)
            raise RequestProblem(
                413,
                "payload_too_large",
                f"the body is over the limit of {limit} bytes (read {total} bytes so far)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _is_small_image(body: bytes) -> bool:
    """Whether the image's header declares few enough pixels to decode on the event loop."""
    if len(body) > INLINE_DECODE_MAX_BYTES:
        return False
    pixels = declared_pixels(body)
    return pixels is not None and pixels <= INLINE_DECODE_MAX_PIXELS


def _encode_probabilities(probabilities: np.ndarray) -> bytes:
    return json.dumps([float(p) for p in probabilities]).encode()


async def handle_invocation(state: EndpointState, request: Request) -> Response:
    """POST /invocations: decode -> batch-predict -> encode; every bad input a 4xx."""
    config = state.config
    echo: dict[str, str] = {}
    if state.in_flight >= config.max_concurrency:
        return error_response(
            503,
            "overloaded",
            f"{state.in_flight} requests in flight, the limit is {config.max_concurrency}",
            **{"Retry-After": "1"},
        )
    state.in_flight += 1
    state.arriving += 1
    submitted = False
    try:
        try:
            content_type, custom, inference_id = _check_request_headers(
                request, config.max_body_bytes
            )
        except RequestProblem:
            await _discard_unread_body(request, config.max_body_bytes)
            raise
        if custom is not None:
            echo[CUSTOM_ATTRIBUTES_HEADER] = custom
        body = await _read_body(request, config.max_body_bytes)
        if not body:
            raise RequestProblem(400, "empty_body", "the request body is empty (0 bytes)")
        # A request that arrives while the model loads (another worker answered /ping)
        # waits for it rather than failing.
        batcher = await state.wait_loaded(MODEL_LOAD_WAIT_S)
        if batcher is None:
            reason = state.load_error or "the model is still loading"
            return error_response(503, "model_not_loaded", reason, **echo)
        prep = state.card.preprocessing
        try:
            if _is_small_image(body):
                # Cheaper than a hop to the decode pool (a camera-thumbnail-sized image).
                array = preprocess_bytes(body, prep)
            else:
                loop = asyncio.get_running_loop()
                array = await loop.run_in_executor(state.decoder, preprocess_bytes, body, prep)
        except ImageDecodeError as exc:
            raise RequestProblem(_DECODE_STATUS.get(exc.code, 400), exc.code, str(exc)) from None
        state.arriving -= 1
        submitted = True
        try:
            probabilities = await asyncio.wrap_future(batcher.submit(array))
        except BatcherClosedError as exc:
            return error_response(503, "shutting_down", str(exc), **echo)
        except Exception as exc:  # the model failed: a server error, not the client's
            logger.exception("inference failed")
            return error_response(500, "inference_failed", f"{type(exc).__name__}: {exc}", **echo)
        payload = _encode_probabilities(probabilities)
        capture = state.capture
        if capture is not None and capture.should_sample():
            capture.record(
                input_data=body,
                input_content_type=content_type,
                output_data=payload,
                inference_time=datetime.now(UTC),
                inference_id=inference_id,
                custom_attributes=custom,
            )
        return Response(payload, media_type="application/json", headers=echo)
    except RequestProblem as problem:
        return error_response(problem.status, problem.code, problem.message, **echo)
    except ClientDisconnect:
        return error_response(400, "client_disconnected", "the client went away mid-request")
    finally:
        state.in_flight -= 1
        if not submitted:
            state.arriving -= 1
            if state.batcher is not None:
                state.batcher.wake()  # it may be waiting for this request


class InvocationsFastPath:
    """POST /invocations straight to its handler, skipping FastAPI's routing and dependency
    machinery (about a fifth of the per-request CPU on a 32x32 image); all else passes on."""

    def __init__(self, app: ASGIApp, state: EndpointState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == "/invocations":
                response = await handle_invocation(self.state, Request(scope, receive))
                await response(scope, receive, send)
                return
            name = runtime_endpoint_name(path)
            if name is not None:  # SageMaker Runtime's InvokeEndpoint path (boto3, the CLI)
                if name == self.state.config.endpoint_name:
                    response = await handle_invocation(self.state, Request(scope, receive))
                else:
                    response = error_response(
                        404,
                        "endpoint_not_found",
                        f"endpoint {name!r} is not served here; this is "
                        f"{self.state.config.endpoint_name!r}",
                    )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def runtime_endpoint_name(path: str) -> str | None:
    """The name in ``/endpoints/{name}/invocations``, else None."""
    prefix, suffix = "/endpoints/", "/invocations"
    if path.startswith(prefix) and path.endswith(suffix):
        name = path[len(prefix) : -len(suffix)]
        if name and "/" not in name:
            return name
    return None


def create_app(config: ServeConfig, *, batch_clock: BatchClock | None = None) -> FastAPI:
    """The endpoint app for one process (its own model, batcher, capture writer, metrics).

    ``batch_clock`` times the batch delay (real time by default; tests move it by hand)."""
    state = EndpointState(config, batch_clock=batch_clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await asyncio.to_thread(state.stop)

    app = FastAPI(
        title="scones endpoint",
        summary="Bicycle or motorcycle? SageMaker's inference container contract.",
        version="unversioned" if state.card.version is None else str(state.card.version),
        lifespan=lifespan,
    )
    app.state.endpoint = state
    app.add_middleware(InvocationsFastPath, state=state)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)  # outermost: sees everything

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "invalid_request", str(exc.errors()))

    @app.get("/ping", summary="Health check: 200 with an empty body once the model is loaded.")
    async def ping() -> Response:
        if state.ready:
            return Response(status_code=200)
        if state.load_error:
            return error_response(503, "model_load_failed", state.load_error)
        return error_response(503, "model_not_loaded", "the model is still loading")

    @app.get("/info", summary="The served model: name, version, classes, preprocessing.")
    async def info() -> dict[str, Any]:
        card = state.card
        return {
            "model_name": card.name,
            "model_version": card.version,
            "class_names": card.class_names,
            "preprocessing": card.preprocessing.model_dump(mode="json"),
            "input_shape": list(card.input_shape),
            "temperature": card.temperature,
            "model_metrics": card.metrics,
            "endpoint_name": config.endpoint_name,
            "variant": config.variant,
            "ready": state.ready,
            "content_types": list(IMAGE_CONTENT_TYPES),
            "max_body_bytes": config.max_body_bytes,
            "max_batch_size": config.max_batch_size,
            "max_batch_delay_ms": config.max_batch_delay_ms,
            "capture": {
                "enabled": state.capture is not None,
                "uri": config.capture_uri,
                "sampling_percentage": config.capture_sampling,
                "options": [str(option) for option in config.capture_options],
            },
        }

    @app.get("/metrics", summary="Prometheus metrics of this process.")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)

    @app.post(
        "/invocations",
        summary="Classify one image: the list of class probabilities, in the model's order.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    media: {"schema": {"type": "string", "format": "binary"}}
                    for media in IMAGE_CONTENT_TYPES
                },
            },
            "responses": {
                "200": {
                    "description": "Probabilities, e.g. [0.97, 0.03]",
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": {"type": "number"}}
                        }
                    },
                },
                "400": {"description": "Empty, not an image, truncated, malformed headers"},
                "413": {"description": "Body over 6 MB or too many pixels"},
                "415": {"description": "Unsupported Content-Type"},
                "503": {"description": "Model not loaded yet, or overloaded"},
            },
        },
    )
    async def invocations(request: Request) -> Response:
        # Only documents POST /invocations in /docs and /openapi.json: InvocationsFastPath
        # answers every such request before routing, so this body is not reached while the
        # middleware is installed; it delegates to the same handler rather than diverge.
        return await handle_invocation(state, request)

    return app
