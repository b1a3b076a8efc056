"""The endpoint client: answers parsed and checked, typed errors."""

from __future__ import annotations

import pytest
from endpoint_fixtures import endpoint_fixture, make_endpoint_fixture  # noqa: F401 - fixtures

from conftest import free_port, solid_png
from scones.serving.client import (
    EndpointClient,
    EndpointError,
    EndpointResponseError,
    EndpointUnavailableError,
    parse_probabilities,
    sniff_content_type,
)


def test_invoke_and_info(endpoint):
    with EndpointClient(endpoint.url) as client:
        result = client.invoke(solid_png((200, 30, 30)), custom_attributes="k=v")
        assert result.top(client.info()["class_names"])[0] == "bicycle"
        assert result.custom_attributes == "k=v"
        assert client.ping()


def test_errors_are_typed(endpoint):
    with EndpointClient(endpoint.url) as client, pytest.raises(EndpointError) as caught:
        client.invoke(b"not an image")
    assert caught.value.status == 400 and caught.value.code == "not_an_image"
    with EndpointClient(f"http://127.0.0.1:{free_port()}", timeout_s=2) as client:
        with pytest.raises(EndpointUnavailableError, match="unreachable"):
            client.invoke(solid_png((1, 2, 3)))
        assert not client.ping()


@pytest.mark.parametrize(
    "body", [b"nope", b"{}", b"[]", b'["a"]', b"[0.5, 0.6]", b"[1.5, -0.5]", b"[true, false]"]
)
def test_answers_that_are_not_probabilities_are_refused(body):
    with pytest.raises(EndpointResponseError):
        parse_probabilities("http://x", body)


def test_content_type_sniffing():
    assert sniff_content_type(solid_png((1, 2, 3))) == "image/png"
    assert sniff_content_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_content_type(b"GIF89a") == "application/x-image"
