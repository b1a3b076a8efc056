"""A client of the endpoint (and of any SageMaker-style image classifier endpoint).

Used by ``scones invoke`` and by the classify function: post image bytes to
``<endpoint>/invocations``, get the class probabilities back, and typed errors otherwise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import httpx

from scones.errors import SconesError
from scones.images import sniff_content_type

DEFAULT_TIMEOUT_S = 60.0  # SageMaker's own invocation timeout
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"


class EndpointError(SconesError):
    """The endpoint answered with an error (``status`` and its ``code``)."""

    def __init__(self, url: str, status: int, code: str, message: str) -> None:
        super().__init__(f"endpoint {url} answered {status} {code}: {message}")
        self.url = url
        self.status = status
        self.code = code
        self.detail = message


class EndpointUnavailableError(SconesError):
    """The endpoint could not be reached (refused, timed out, DNS)."""


class EndpointResponseError(SconesError):
    """The endpoint answered 200 with something that is not a list of probabilities."""


def parse_probabilities(url: str, body: bytes) -> list[float]:
    """The JSON list of probabilities, checked: finite numbers in [0, 1] summing to ~1."""
    try:
        value = json.loads(body)
    except ValueError:
        raise EndpointResponseError(f"endpoint {url} answered non-JSON: {body[:200]!r}") from None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(p, int | float) and not isinstance(p, bool) for p in value)
    ):
        raise EndpointResponseError(
            f"endpoint {url} answered {str(value)[:200]}, not a list of probabilities"
        )
    probabilities = [float(p) for p in value]
    if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probabilities) or not math.isclose(
        sum(probabilities), 1.0, abs_tol=1e-3
    ):
        raise EndpointResponseError(
            f"endpoint {url} answered {probabilities}: not probabilities summing to 1"
        )
    return probabilities


@dataclass(frozen=True)
class Invocation:
    """One answer: probabilities in the model's class order, and the echoed attributes."""

    probabilities: list[float]
    custom_attributes: str | None = None

    def top(self, class_names: list[str]) -> tuple[str, float]:
        index = max(range(len(self.probabilities)), key=self.probabilities.__getitem__)
        name = class_names[index] if index < len(class_names) else str(index)
        return name, self.probabilities[index]


class EndpointClient:
    """Synchronous client over one keep-alive connection pool; use as a context manager."""

    def __init__(self, endpoint_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self._http = httpx.Client(base_url=self.endpoint_url, timeout=timeout_s)

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.endpoint_url}{path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise EndpointUnavailableError(f"endpoint {url} timed out: {exc}") from None
        except httpx.TransportError as exc:
            raise EndpointUnavailableError(f"endpoint {url} is unreachable: {exc}") from None
        if response.status_code >= 400:
            code, message = "http_error", response.text[:500]
            try:
                body = response.json()
                code, message = str(body.get("error", code)), str(body.get("message", message))
            except (ValueError, AttributeError):
                pass
            raise EndpointError(url, response.status_code, code, message)
        return response

    def invoke(
        self,
        image: bytes,
        *,
        content_type: str | None = None,
        custom_attributes: str | None = None,
        inference_id: str | None = None,
    ) -> Invocation:
        """POST one image to ``/invocations``; its class probabilities."""
        headers = {
            "Content-Type": content_type or sniff_content_type(image),
            "Accept": "application/json",
        }
        if custom_attributes is not None:
            headers[CUSTOM_ATTRIBUTES_HEADER] = custom_attributes
        if inference_id is not None:
            headers[INFERENCE_ID_HEADER] = inference_id
        response = self._request("POST", "/invocations", content=image, headers=headers)
        return Invocation(
            probabilities=parse_probabilities(f"{self.endpoint_url}/invocations", response.content),
            custom_attributes=response.headers.get(CUSTOM_ATTRIBUTES_HEADER),
        )

    def info(self) -> dict[str, Any]:
        """``GET /info``: model name, version, class names, preprocessing."""
        return self._request("GET", "/info").json()

    def recorded_threshold(self) -> float | None:
        """The routing threshold the served model records (``model.json``
        ``metrics.recommended_threshold``), or None when it records none."""
        metrics = self.info().get("model_metrics") or {}
        value = metrics.get("recommended_threshold") if isinstance(metrics, dict) else None
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise EndpointResponseError(
                f"endpoint {self.endpoint_url}/info: the model's recommended_threshold is "
                f"{value!r}, not a number in (0, 1]"
            )
        return float(value)

    def ping(self) -> bool:
        try:
            self._request("GET", "/ping")
        except (EndpointError, EndpointUnavailableError):
            return False
        return True


def model_routing_threshold(endpoint_url: str, default: float) -> float:
    """The threshold the endpoint's model records (SCONES_THRESHOLD=model), or ``default``
    when it records none; an unreachable endpoint or a bad value is an error, never a
    silent fallback (routing with the wrong threshold sends unsure photos on)."""
    try:
        with EndpointClient(endpoint_url, timeout_s=10.0) as client:
            recorded = client.recorded_threshold()
    except (EndpointError, EndpointUnavailableError, EndpointResponseError) as exc:
        raise EndpointUnavailableError(
            f"SCONES_THRESHOLD=model needs the served model's threshold: {exc}"
        ) from None
    return default if recorded is None else recorded
