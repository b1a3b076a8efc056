"""Bad input never crashes the endpoint and never gets a 5xx: a corpus, interleaved with
good requests whose answers must stay right, while /ping stays 200."""

from __future__ import annotations

import io
import json
import socket
import struct
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator

import httpx
import pytest
from endpoint_fixtures import endpoint_fixture, make_endpoint_fixture  # noqa: F401 - fixtures
from PIL import Image

from conftest import noise_png, solid_png
from scones.serving import app as app_module

RED = (200, 30, 30)
SIX_MB = 6 * 1024 * 1024


def png_with_declared_size(width: int, height: int) -> bytes:
    """A small real PNG whose IHDR claims ``width`` x ``height`` (a decompression bomb)."""
    data = bytearray(solid_png(RED, size=(8, 8)))
    # IHDR chunk: length(4) type(4) at offset 8; data starts at 16; CRC after 13 data bytes.
    struct.pack_into(">II", data, 16, width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    struct.pack_into(">I", data, 29, crc)
    return bytes(data)


def encoded(fmt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(noise_png(5, size=size))).save(buffer, format=fmt)
    return buffer.getvalue()


def raw_request(
    url: str, head: bytes, body: bytes = b"", timeout: float = 10.0
) -> tuple[int, bytes]:
    """Send raw bytes on a fresh socket; the status code and body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head + body)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    response = b"".join(chunks)
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), response[:200]
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def post_head(content_type: str = "image/png", length: int | None = None, extra: str = "") -> bytes:
    lines = ["POST /invocations HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunks_of(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        step = min(size, total - sent)
        sent += step
        yield b"\x00" * step


# (name, request function(url) -> (status, body bytes), expected status, expected error code)
# error code None: refused by the HTTP parser itself (a plain 400) before the app sees it.
def http_post(data: bytes, content_type: str | None = "image/png", **headers: str):
    def send(url: str) -> tuple[int, bytes]:
        all_headers = dict(headers)
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        response = httpx.post(f"{url}/invocations", content=data, headers=all_headers, timeout=30)
        return response.status_code, response.content

    return send


def http_stream(total: int):
    def send(url: str) -> tuple[int, bytes]:
        response = httpx.post(
            f"{url}/invocations",
            content=chunks_of(total),
            headers={"Content-Type": "image/png"},
            timeout=30,
        )
        assert "content-length" not in response.request.headers  # chunked: counted as streamed
        return response.status_code, response.content

    return send


def raw(head: bytes, body: bytes = b""):
    return lambda url: raw_request(url, head, body)


PNG = solid_png(RED, size=(64, 64))
CORPUS = [
    ("empty body", http_post(b""), 400, "empty_body"),
    ("text, not an image", http_post(b"hello, I am not a picture"), 400, "not_an_image"),
    ("random bytes", http_post(bytes(range(256)) * 8), 400, "not_an_image"),
    ("truncated PNG", http_post(encoded("PNG")[:300]), 400, "corrupt_image"),
    (
        "truncated JPEG",
        http_post(encoded("JPEG", (256, 256))[:600], "image/jpeg"),
        400,
        ("corrupt_image", "not_an_image"),
    ),
    (
        "truncated JPEG data",
        http_post(encoded("JPEG", (256, 256))[:-2000], "image/jpeg"),
        400,
        "corrupt_image",
    ),
    ("PNG header only", http_post(PNG[:33]), 400, ("corrupt_image", "not_an_image")),
    ("GIF is not PNG or JPEG", http_post(encoded("GIF")), 415, "unsupported_image_format"),
    (
        "BMP as x-image",
        http_post(encoded("BMP"), "application/x-image"),
        415,
        "unsupported_image_format",
    ),
    ("text/plain content type", http_post(PNG, "text/plain"), 415, "unsupported_media_type"),
    ("JSON content type", http_post(b"[1, 2]", "application/json"), 415, "unsupported_media_type"),
    ("no content type", http_post(PNG, None), 415, "unsupported_media_type"),
    ("accept csv only", http_post(PNG, Accept="text/csv"), 406, "unsupported_accept"),
    (
        "decompression bomb 100k x 100k",
        http_post(png_with_declared_size(100_000, 100_000)),
        413,
        "image_too_large",
    ),
    ("40 MP + 1 pixel", http_post(png_with_declared_size(40_000_001, 1)), 413, "image_too_large"),
    (
        "body over 6 MB (Content-Length, Expect: 100-continue: no body sent)",
        raw(post_head(length=SIX_MB + 1, extra="Expect: 100-continue")),
        413,
        "payload_too_large",
    ),
    (
        "body over 6 MB (uploaded)",
        http_post(b"\x89PNG" + b"\x00" * SIX_MB),
        413,
        "payload_too_large",
    ),
    ("body over 6 MB (chunked)", http_stream(SIX_MB + 100_000), 413, "payload_too_large"),
    (
        "custom attributes too long",
        http_post(PNG, **{"X-Amzn-SageMaker-Custom-Attributes": "a" * 1025}),
        400,
        "malformed_header",
    ),
    (
        "custom attributes not ASCII",
        raw(post_head(length=len(PNG), extra="X-Amzn-SageMaker-Custom-Attributes: caf\xe9"), PNG),
        400,
        "malformed_header",
    ),
    (
        "inference id too long",
        http_post(PNG, **{"X-Amzn-SageMaker-Inference-Id": "x" * 65}),
        400,
        "malformed_header",
    ),
    (
        "inference id control char",
        raw(post_head(length=len(PNG), extra="X-Amzn-SageMaker-Inference-Id: a\x01b"), PNG),
        400,
        None,
    ),
    (
        "Content-Length not a number",
        raw(post_head(length=None, extra="Content-Length: ten")),
        400,
        None,
    ),
    (
        "two Content-Lengths",
        raw(post_head(length=5, extra="Content-Length: 7"), b"12345"),
        400,
        None,
    ),
    ("header without colon", raw(post_head(extra="this is not a header"), PNG), 400, None),
]


def good_request_still_right(url: str) -> None:
    response = httpx.post(
        f"{url}/invocations", content=solid_png(RED), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200, response.text
    assert response.json()[0] > 0.99  # red -> bicycle
    assert httpx.get(f"{url}/ping").status_code == 200


def test_bad_input_corpus_interleaved_with_good_requests(endpoint):
    failures = []
    for name, send, expected_status, expected_code in CORPUS:
        status, body = send(endpoint.url)
        if status != expected_status:
            failures.append(f"{name}: {status} (expected {expected_status}) {body[:200]!r}")
        elif expected_code is not None:
            answer = json.loads(body)
            codes = (expected_code,) if isinstance(expected_code, str) else expected_code
            if answer.get("error") not in codes or not answer.get("message"):
                failures.append(f"{name}: body {answer} (expected error {expected_code})")
        assert status < 500, f"{name}: a 5xx for bad input: {status} {body[:200]!r}"
        good_request_still_right(endpoint.url)
    assert not failures, "\n".join(failures)
    # Nothing bad was captured: only the good requests (one per corpus entry).
    endpoint.state.capture.flush()
    assert endpoint.state.capture.written == len(CORPUS)


def test_truncated_upload_then_disconnect_does_not_hurt_the_server(endpoint):
    head = post_head(length=10_000)
    host, port = endpoint.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + PNG[:100])  # promises 10000 bytes, sends 100 and hangs up
    good_request_still_right(endpoint.url)


@pytest.mark.parametrize("status_path", ["/invocations"])
def test_bad_input_metrics_count_4xx_not_5xx(endpoint, status_path):
    for _ in range(3):
        httpx.post(
            f"{endpoint.url}{status_path}", content=b"nope", headers={"Content-Type": "image/png"}
        )
    text = httpx.get(f"{endpoint.url}/metrics").text
    assert f'path="{status_path}",status="400"}} 3.0' in text
    assert 'status="5' not in text


OVER_LIMIT = b"\x89PNG" + b"\x00" * (SIX_MB + 1024 * 1024)  # 7 MB: a phone photo, say


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "in_message"),
    [
        (OVER_LIMIT, "image/png", 413, "payload_too_large", str(SIX_MB)),
        (OVER_LIMIT[:SIX_MB], "text/plain", 415, "unsupported_media_type", "text/plain"),
    ],
    ids=["over the limit", "refused content type"],
)
def test_urllib_reads_the_answer_to_a_body_refused_unread(
    endpoint, body, content_type, status, code, in_message
):
    """urllib sends the whole body before reading (no Expect: 100-continue): it must get the
    4xx and its JSON message, not a connection reset."""
    request = urllib.request.Request(
        f"{endpoint.url}/invocations",
        data=body,
        headers={"Content-Type": content_type},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == status
    answer = json.loads(caught.value.read())
    assert answer["error"] == code
    assert in_message in answer["message"]
    good_request_still_right(endpoint.url)


def test_a_raw_client_sending_the_whole_over_limit_body_reads_the_413(endpoint):
    host, port = endpoint.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(post_head(length=len(OVER_LIMIT)) + OVER_LIMIT)  # all of it, unread
        sock.shutdown(socket.SHUT_WR)
        response = b""
        while chunk := sock.recv(65536):  # a reset raises here and fails the test
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), response[:300]
    assert json.loads(body)["error"] == "payload_too_large"
    good_request_still_right(endpoint.url)


def test_a_declared_body_that_never_comes_gets_its_413_after_the_drain_timeout(
    endpoint, monkeypatch
):
    monkeypatch.setattr(app_module, "DRAIN_TIMEOUT_S", 0.2)
    status, body = raw_request(endpoint.url, post_head(length=SIX_MB + 1), timeout=20)
    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"


def test_a_body_too_large_to_drain_is_refused_without_reading_it(endpoint, monkeypatch):
    monkeypatch.setattr(app_module, "DRAIN_TIMEOUT_S", 600.0)  # a wait would time out below
    length = app_module.DRAIN_FACTOR * SIX_MB + 1
    status, body = raw_request(endpoint.url, post_head(length=length), timeout=20)
    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"
