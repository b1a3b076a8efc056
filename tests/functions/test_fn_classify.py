"""classify_image over real HTTP: posts the image, returns probabilities, types each failure."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from fn_http import Reply, ScriptedEndpoint

from conftest import free_port, solid_png
from scones.functions import classify_image
from scones.functions.classify_image import (
    ConfigurationError,
    EndpointRequestError,
    EndpointResponseError,
    EndpointTransientError,
    InvalidEvent,
    InvalidImageData,
    handler,
)

RED = solid_png((200, 30, 30))
INFO = json.dumps({"class_names": ["bicycle", "motorcycle"]}).encode()


def _event(image: bytes = RED) -> dict:
    return {
        "s3_bucket": "scones",
        "s3_key": "test/red.png",
        "image_data": base64.b64encode(image).decode(),
        "inferences": [],
    }


@pytest.fixture(autouse=True)
def _fresh_connections() -> Iterator[None]:
    yield
    classify_image.close_idle_connections()


def _endpoint(monkeypatch: pytest.MonkeyPatch, *replies: Reply, info: bytes | None = INFO):
    endpoint = ScriptedEndpoint(list(replies) or [Reply()], info=info)
    endpoint.__enter__()
    monkeypatch.setenv("SCONES_ENDPOINT_URL", endpoint.url)
    return endpoint


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    started: list[ScriptedEndpoint] = []

    def start(*replies: Reply, info: bytes | None = INFO) -> ScriptedEndpoint:
        endpoint = _endpoint(monkeypatch, *replies, info=info)
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.__exit__(None, None, None)


def test_posts_the_png_and_returns_the_body_with_inferences(scripted) -> None:
    endpoint = scripted(Reply(200, b"[0.97, 0.03]"))
    result = handler(_event(), None)
    assert result["statusCode"] == 200
    body = result["body"]
    assert body["inferences"] == [0.97, 0.03]
    assert body["classes"] == ["bicycle", "motorcycle"]  # from GET /info, for the filter
    assert body["s3_key"] == "test/red.png" and body["image_data"] == _event()["image_data"]
    (method, _path, headers, sent) = endpoint.requests_for("/invocations")[0]
    assert method == "POST" and sent == RED
    assert headers["Content-Type"] == "image/png"
    json.dumps(result)


def test_connections_are_kept_alive_and_info_asked_once(scripted) -> None:
    endpoint = scripted(Reply(200, b"[0.1, 0.9]"))
    for _ in range(3):
        assert handler(_event(), None)["body"]["inferences"] == [0.1, 0.9]
    assert len(endpoint.requests_for("/info")) == 1
    assert len(endpoint.requests_for("/invocations")) == 3


def test_class_names_from_the_environment_win(scripted, monkeypatch) -> None:
    scripted(Reply(200, b"[0.1, 0.9]"), info=None)
    monkeypatch.setenv("CLASS_NAMES", "bike, motorbike")
    assert handler(_event(), None)["body"]["classes"] == ["bike", "motorbike"]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_transient(scripted, status: int) -> None:
    scripted(Reply(status, b'{"error": "overloaded", "message": "try later"}'))
    with pytest.raises(EndpointTransientError, match=f"answered {status}: overloaded: try later"):
        handler(_event(), None)


@pytest.mark.parametrize("status", [400, 413, 415])
def test_4xx_is_a_request_error_with_the_endpoint_message(scripted, status: int) -> None:
    scripted(Reply(status, b'{"error": "bad_image", "message": "cannot decode image"}'))
    with pytest.raises(EndpointRequestError, match="bad_image: cannot decode image"):
        handler(_event(), None)


def test_a_slow_endpoint_times_out_as_transient(scripted, monkeypatch) -> None:
    scripted(Reply(200, b"[0.5, 0.5]", hold=True))
    monkeypatch.setenv("ENDPOINT_TIMEOUT_SECONDS", "0.2")
    monkeypatch.setenv("CLASS_NAMES", "a,b")
    with pytest.raises(EndpointTransientError, match=r"did not answer within 0\.2 s"):
        handler(_event(), None)


def test_a_refused_connection_is_transient(monkeypatch) -> None:
    monkeypatch.setenv("SCONES_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(EndpointTransientError, match="cannot reach endpoint"):
        handler(_event(), None)


@pytest.mark.parametrize("answer", [b"not json", b'{"label": 1}', b"[]", b'["0.5"]', b"[true]"])
def test_an_answer_that_is_not_probabilities_is_a_response_error(scripted, answer) -> None:
    scripted(Reply(200, answer))
    with pytest.raises(EndpointResponseError):
        handler(_event(), None)


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (None, InvalidEvent),
        ({"s3_key": "test/red.png"}, InvalidEvent),
        ({"image_data": ""}, InvalidImageData),
        ({"image_data": "not base64 !!"}, InvalidImageData),
        ({"image_data": "abc"}, InvalidImageData),  # bad padding
        ({"image_data": 42}, InvalidImageData),
    ],
)
def test_bad_events_raise_typed_errors_before_any_request(scripted, event, error) -> None:
    endpoint = scripted()
    with pytest.raises(error):
        handler(event, None)
    assert endpoint.requests == []


def test_a_bad_endpoint_url_is_a_configuration_error(monkeypatch) -> None:
    monkeypatch.setenv("SCONES_ENDPOINT_URL", "ftp://example")
    with pytest.raises(ConfigurationError, match="SCONES_ENDPOINT_URL"):
        handler(_event(), None)


def test_transient_and_request_errors_are_distinct_classes() -> None:
    # The state machine retries by error name: the names must not overlap.
    assert not issubclass(EndpointTransientError, EndpointRequestError)
    assert not issubclass(EndpointRequestError, EndpointTransientError)
    assert EndpointTransientError.__name__ == "EndpointTransientError"


def test_with_endpoint_name_it_calls_sagemaker_runtime(s3_bucket, s3_server, monkeypatch) -> None:
    import urllib.request
    import uuid

    # moto's server answers invoke_endpoint from a queue configured through its own API.
    results = {"results": [{"Body": "[0.96, 0.04]", "ContentType": "application/json"}]}
    request = urllib.request.Request(
        f"{s3_server}/moto-api/static/sagemaker/endpoint-results",
        data=json.dumps(results).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()
    monkeypatch.setenv("ENDPOINT_NAME", f"scones-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("CLASS_NAMES", "bicycle,motorcycle")
    # moto's server decodes request bodies as UTF-8, so the bytes sent here are text.
    body = handler(_event(b"image bytes stand-in"), None)["body"]
    assert body["inferences"] == [0.96, 0.04]
    assert body["classes"] == ["bicycle", "motorcycle"]
    # moto's default answer for any other body is not a probability list
    with pytest.raises(EndpointResponseError):
        handler(_event(b"another image"), None)
