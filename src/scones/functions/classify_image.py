"""Lambda ``classifyImage``: send the base64 image to the endpoint, add its probabilities.

Event: the serializer's body, ``{"image_data": <base64>, "s3_bucket", "s3_key", ...}``.
Returns: ``{"statusCode": 200, "body": {<the event>, "inferences": [p0, p1, ...]}}``.

Where the endpoint is:

- ``ENDPOINT_NAME`` set (as on AWS): SageMaker runtime ``invoke_endpoint`` through boto3.
- otherwise ``SCONES_ENDPOINT_URL`` (default ``http://127.0.0.1:8080``) + ``/invocations``
  over HTTP with the standard library, keeping one connection per thread alive.

Transient failures (HTTP 5xx or 429, throttling, timeouts, refused connections) raise
``EndpointTransientError``, which the state machine retries; a request the endpoint refuses
(4xx) raises ``EndpointRequestError``, which retrying cannot fix.

``CLASS_NAMES`` (comma-separated) adds ``classes`` to the body, so the filter can name the
top class; without it, the local path asks the endpoint's ``GET /info`` once per URL.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import math
import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

DEFAULT_ENDPOINT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_SECONDS = 10.0
# Endpoint answers are a short list of probabilities; anything far larger is not one.
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_IMAGE_DATA_CHARS = 256 * 1024


class ClassifyError(Exception):
    """Base of this function's errors; the class name is the Lambda errorType."""


class InvalidEvent(ClassifyError):
    """The event lacks a field or has a field of the wrong type."""


class InvalidImageData(ClassifyError):
    """``image_data`` is not base64 text of an image."""


class EndpointTransientError(ClassifyError):
    """The endpoint was unavailable, overloaded or too slow; retrying may succeed."""


class EndpointRequestError(ClassifyError):
    """The endpoint refused the request (4xx); retrying the same request cannot succeed."""


class EndpointResponseError(ClassifyError):
    """The endpoint answered 2xx with something that is not a list of probabilities."""


class ConfigurationError(ClassifyError):
    """An environment variable has a value that cannot work."""


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Classify ``event["image_data"]`` and return the event with ``inferences`` filled in."""
    image = _decode_event(event)
    content_type = sniff_content_type(image)
    endpoint_name = os.environ.get("ENDPOINT_NAME", "")
    if endpoint_name:
        raw = _invoke_sagemaker(endpoint_name, image, content_type)
        classes = _configured_classes()
    else:
        url = endpoint_url()
        raw = _post_http(url, image, content_type)
        classes = _configured_classes() or _endpoint_classes(url)
    inferences = parse_inferences(raw)
    body = dict(event)
    body["inferences"] = inferences
    body.pop("classes", None)  # never pass on class names from an earlier classification
    if classes and len(classes) == len(inferences):
        body["classes"] = classes
    return {"statusCode": 200, "body": body}


def _decode_event(event: Any) -> bytes:
    if not isinstance(event, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(event).__name__}")
    if "image_data" not in event:
        raise InvalidEvent(f"event has no 'image_data' field (keys: {sorted(event)})")
    data = event["image_data"]
    key = event.get("s3_key", "?")
    if not isinstance(data, str) or not data:
        raise InvalidImageData(
            f"image_data of {key!r} must be non-empty base64 text, got {type(data).__name__} "
            f"of length {len(data) if isinstance(data, str | bytes | list) else '?'}"
        )
    if len(data) > MAX_IMAGE_DATA_CHARS:
        raise InvalidImageData(
            f"image_data of {key!r} is {len(data)} characters, over {MAX_IMAGE_DATA_CHARS}"
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImageData(f"image_data of {key!r} is not valid base64: {exc}") from None


def sniff_content_type(image: bytes) -> str:
    if image.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if image.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/x-image"


def endpoint_url() -> str:
    url = os.environ.get("SCONES_ENDPOINT_URL", "") or DEFAULT_ENDPOINT_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"SCONES_ENDPOINT_URL must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def timeout_seconds() -> float:
    raw = os.environ.get("ENDPOINT_TIMEOUT_SECONDS", "")
    if not raw:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):
        raise ConfigurationError(f"ENDPOINT_TIMEOUT_SECONDS must be a positive number, got {raw!r}")
    return value


def parse_inferences(raw: bytes) -> list[float]:
    """The endpoint's JSON list of probabilities, checked."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise EndpointResponseError(
            f"endpoint answered with something that is not JSON: {raw[:200]!r}"
        ) from None
    if isinstance(value, dict) and isinstance(value.get("predictions"), list):
        value = value["predictions"]  # some SageMaker containers wrap the list
    if (
        not isinstance(value, list)
        or not value
        or not all(
            isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p)
            for p in value
        )
    ):
        raise EndpointResponseError(
            f"endpoint answered {str(value)[:200]!r}, not a list of probabilities"
        )
    return [float(p) for p in value]


def _configured_classes() -> list[str] | None:
    raw = os.environ.get("CLASS_NAMES", "")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return names or None


# --- local HTTP endpoint ------------------------------------------------------------------

# Kept-alive connections, shared by the threads of this process (and, on AWS, by warm
# invocations): no TCP handshake per image. A connection is used by one request at a time.
_MAX_IDLE_PER_ENDPOINT = 32
_idle: dict[tuple[str, float], list[http.client.HTTPConnection]] = {}
_idle_lock = threading.Lock()
_classes_by_url: dict[str, list[str] | None] = {}


class _NoDelayHTTPConnection(http.client.HTTPConnection):
    """http.client sends headers and body in two writes; without TCP_NODELAY, Nagle's
    algorithm holds the body back until the headers are acknowledged (delayed ACK)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _NoDelayHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _checkout(url: str, timeout: float) -> http.client.HTTPConnection:
    with _idle_lock:
        pool = _idle.get((url, timeout))
        if pool:
            return pool.pop()
    parts = urlsplit(url)
    if not parts.hostname:  # endpoint_url() checked it; this tells the type checker
        raise ConfigurationError(f"SCONES_ENDPOINT_URL must be an http(s) URL, got {url!r}")
    factory = _NoDelayHTTPSConnection if parts.scheme == "https" else _NoDelayHTTPConnection
    return factory(parts.hostname, parts.port, timeout=timeout)


def _checkin(url: str, timeout: float, connection: http.client.HTTPConnection) -> None:
    with _idle_lock:
        pool = _idle.setdefault((url, timeout), [])
        if len(pool) < _MAX_IDLE_PER_ENDPOINT:
            pool.append(connection)
            return
    connection.close()


def close_idle_connections() -> None:
    """Close every kept-alive connection (tests, and a clean shutdown)."""
    with _idle_lock:
        pools = list(_idle.values())
        _idle.clear()
    for pool in pools:
        for connection in pool:
            connection.close()


def _request(
    url: str, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    """(status, body) of one request; a kept-alive connection the server closed is redone."""
    timeout = timeout_seconds()
    base_path = urlsplit(url).path.rstrip("/")
    for attempt in (1, 2):
        connection = _checkout(url, timeout)
        reused = connection.sock is not None
        try:
            connection.request(method, base_path + path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
            if response.will_close or not response.isclosed():
                connection.close()  # closing, or an answer we did not read to its end
            else:
                _checkin(url, timeout, connection)
            return response.status, data
        except TimeoutError:
            connection.close()
            raise EndpointTransientError(
                f"endpoint {url}{path} did not answer within {timeout:g} s"
            ) from None
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            connection.close()
            if reused and attempt == 1:
                continue  # the server closed an idle kept-alive connection: one fresh try
            raise EndpointTransientError(
                f"endpoint {url}{path} dropped the connection: {exc}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise EndpointTransientError(f"cannot reach endpoint {url}{path}: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _post_http(url: str, image: bytes, content_type: str) -> bytes:
    status, data = _request(
        url,
        "POST",
        "/invocations",
        image,
        {"Content-Type": content_type, "Accept": "application/json"},
    )
    if status == 200:
        if len(data) > MAX_RESPONSE_BYTES:
            raise EndpointResponseError(f"endpoint answer is over {MAX_RESPONSE_BYTES} bytes")
        return data
    detail = _error_detail(data)
    if status == 429 or status >= 500:
        raise EndpointTransientError(f"endpoint {url}/invocations answered {status}: {detail}")
    raise EndpointRequestError(f"endpoint {url}/invocations answered {status}: {detail}")


def _error_detail(data: bytes) -> str:
    try:
        value = json.loads(data)
        if isinstance(value, dict) and "message" in value:
            return f"{value.get('error', 'error')}: {value['message']}"
    except (UnicodeDecodeError, ValueError):
        pass
    return data[:200].decode("utf-8", "replace") or "(empty body)"


def _endpoint_classes(url: str) -> list[str] | None:
    """The endpoint's class names from ``GET /info``, asked once per URL; None if unknown."""
    if url in _classes_by_url:
        return _classes_by_url[url]
    names: list[str] | None = None
    try:
        status, data = _request(url, "GET", "/info", None, {"Accept": "application/json"})
        if status == 200:
            value = json.loads(data).get("class_names")
            if isinstance(value, list) and all(isinstance(name, str) for name in value):
                names = value
    except (ClassifyError, ValueError, AttributeError):
        return None  # class names are a nicety; do not cache a transient failure
    _classes_by_url[url] = names  # a plain dict store is atomic; a race only asks twice
    return names


# --- SageMaker runtime ------------------------------------------------------------------------


def _invoke_sagemaker(endpoint_name: str, image: bytes, content_type: str) -> bytes:
    import boto3  # the Lambda Python runtime ships boto3
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ReadTimeoutError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    timeout = timeout_seconds()
    client = boto3.client(
        "sagemaker-runtime",
        config=Config(read_timeout=timeout, connect_timeout=timeout, retries={"max_attempts": 1}),
    )
    try:
        response = client.invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType=content_type,
            Accept="application/json",
            Body=image,
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = (
            f"endpoint {endpoint_name!r} refused the image: {code}: {error.get('Message', '')}"
        )
        if code == "ModelError":
            # The container's own answer: its status says whether a retry could help.
            original = int(exc.response.get("OriginalStatusCode", 0) or 0)
            status = original or status
        if code in ("ThrottlingException", "ServiceUnavailable", "InternalFailure") or (
            status == 429 or status >= 500
        ):
            raise EndpointTransientError(message) from None
        raise EndpointRequestError(message) from None
    except (ReadTimeoutError, BotoConnectionError) as exc:
        raise EndpointTransientError(f"endpoint {endpoint_name!r} unreachable: {exc}") from None
    except BotoCoreError as exc:
        raise EndpointTransientError(f"endpoint {endpoint_name!r} call failed: {exc}") from None
    body = response["Body"]
    try:
        return body.read(MAX_RESPONSE_BYTES + 1)
    finally:
        body.close()
