"""The SageMaker contract over real HTTP: /ping, /invocations, /info, /metrics, capture."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from batch_clock import HANG_S, HandClock
from endpoint_fixtures import (  # noqa: F401 - fixtures
    endpoint_fixture,
    make_endpoint_fixture,
    read_capture_records,
    wait_for_ping,
)
from PIL import Image

from conftest import noise_png, solid_png

RED = (200, 30, 30)
BLUE = (30, 30, 200)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def invoke(
    url: str, data: bytes, content_type: str = "image/png", timeout: float = 5.0, **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{url}/invocations",
        content=data,
        headers={"Content-Type": content_type, **headers},
        timeout=timeout,
    )


def test_ping_is_200_with_an_empty_body(endpoint):
    response = httpx.get(f"{endpoint.url}/ping")
    assert response.status_code == 200
    assert response.content == b""


def test_invocations_answers_probabilities_in_class_order(endpoint):
    red = invoke(endpoint.url, solid_png(RED))
    blue = invoke(endpoint.url, solid_png(BLUE))
    assert red.status_code == 200 and red.headers["content-type"] == "application/json"
    p_red, p_blue = red.json(), blue.json()
    assert len(p_red) == 2 and sum(p_red) == pytest.approx(1.0, abs=1e-6)
    assert p_red[0] > 0.99  # bicycle
    assert p_blue[1] > 0.99  # motorcycle
    grey = invoke(endpoint.url, noise_png(1)).json()
    assert max(grey) < 0.9  # unsure


def test_probabilities_match_the_model_run_directly(endpoint, tiny_model_dir: Path):
    from scones.model.artifact import OnnxClassifier
    from scones.model.preprocess import preprocess_bytes

    classifier = OnnxClassifier(tiny_model_dir)
    image = noise_png(7, size=(45, 29))
    expected = classifier.predict(preprocess_bytes(image, classifier.preprocessing)[None])[0]
    served = invoke(endpoint.url, image).json()
    assert served == pytest.approx(expected.tolist(), abs=1e-6)


@pytest.mark.parametrize(
    ("mode", "fmt", "content_type"),
    [
        ("RGB", "PNG", "image/png"),
        ("RGBA", "PNG", "image/png"),
        ("P", "PNG", "application/x-image"),
        ("L", "PNG", "image/png"),
        ("RGB", "JPEG", "image/jpeg"),
        ("L", "JPEG", "application/x-image"),
    ],
)
def test_any_real_image_mode_and_size_is_classified(endpoint, mode, fmt, content_type):
    # A large red photo (not 32x32) in every mode: the shared preprocessing resizes it.
    image = Image.new("RGB", (640, 480), RED)
    converted = image.convert(mode) if mode != "P" else image.quantize(colors=16)
    response = invoke(endpoint.url, encode(converted, fmt), content_type)
    assert response.status_code == 200, response.text
    probabilities = response.json()
    if mode == "L":  # greyscale has no colour: the colour model is unsure, not failing
        assert max(probabilities) < 0.9
    else:
        assert probabilities[0] > 0.99


def test_custom_attributes_are_echoed_and_captured_with_the_inference_id(endpoint):
    response = invoke(
        endpoint.url,
        solid_png(RED),
        **{
            "X-Amzn-SageMaker-Custom-Attributes": "trace=abc-123,driver=42",
            "X-Amzn-SageMaker-Inference-Id": "req-0001",
        },
    )
    assert response.status_code == 200
    assert response.headers["x-amzn-sagemaker-custom-attributes"] == "trace=abc-123,driver=42"
    by_query = httpx.post(
        f"{endpoint.url}/invocations?inferenceId=from-query",
        content=solid_png(BLUE),
        headers={"Content-Type": "image/png"},
    )
    assert by_query.status_code == 200
    endpoint.state.capture.flush()
    records = read_capture_records(endpoint.capture_dir)
    by_id = {r["eventMetadata"].get("inferenceId"): r for r in records}
    assert by_id["req-0001"]["eventMetadata"]["customAttributes"] == "trace=abc-123,driver=42"
    assert "customAttributes" not in by_id["from-query"]["eventMetadata"]


def test_capture_records_follow_sagemakers_schema_and_layout(endpoint):
    image = solid_png(RED)
    answer = invoke(endpoint.url, image)
    endpoint.state.capture.flush()
    files = list(endpoint.capture_dir.rglob("*.jsonl"))
    assert len(files) == 1
    relative = files[0].relative_to(endpoint.capture_dir).parts
    assert relative[:2] == ("scones-endpoint", "AllTraffic")
    year, month, day, hour, name = relative[2:]
    assert (len(year), len(month), len(day), len(hour)) == (4, 2, 2, 2)
    assert re.fullmatch(r"\d{2}-\d{2}-\d{3}-[0-9a-f]{32}\.jsonl", name), name
    (record,) = read_capture_records(endpoint.capture_dir)
    assert set(record) == {"captureData", "eventMetadata", "eventVersion"}
    assert record["eventVersion"] == "0"
    data_in = record["captureData"]["endpointInput"]
    data_out = record["captureData"]["endpointOutput"]
    assert data_in == {
        "observedContentType": "image/png",
        "mode": "INPUT",
        "data": base64.b64encode(image).decode(),
        "encoding": "BASE64",
    }
    assert data_out["mode"] == "OUTPUT" and data_out["encoding"] == "JSON"
    assert data_out["observedContentType"] == "application/json"
    assert json.loads(data_out["data"]) == answer.json()
    inference_time = record["eventMetadata"]["inferenceTime"]
    assert inference_time.endswith("Z") and f"{year}-{month}-{day}T{hour}:" in inference_time
    assert len(record["eventMetadata"]["eventId"]) == 36


def test_capture_sampling_and_options(make_endpoint, tiny_model_dir):
    none = make_endpoint(tiny_model_dir, capture_sampling=0.0)
    output_only = make_endpoint(tiny_model_dir, capture_options="Output")
    for _ in range(5):
        assert invoke(none.url, solid_png(RED)).status_code == 200
    assert invoke(output_only.url, solid_png(RED)).status_code == 200
    none.state.capture.flush()
    output_only.state.capture.flush()
    assert read_capture_records(none.capture_dir) == []
    (record,) = read_capture_records(output_only.capture_dir)
    assert set(record["captureData"]) == {"endpointOutput"}


def test_no_capture_writes_nothing(make_endpoint, tiny_model_dir):
    endpoint = make_endpoint(tiny_model_dir, capture_uri=None)
    assert invoke(endpoint.url, solid_png(RED)).status_code == 200
    assert endpoint.state.capture is None
    assert httpx.get(f"{endpoint.url}/info").json()["capture"]["enabled"] is False


def test_capture_to_s3_on_moto(make_endpoint, tiny_model_dir, s3_bucket, s3_server):
    import boto3

    endpoint = make_endpoint(
        tiny_model_dir, capture_uri=f"s3://{s3_bucket}/data_capture", s3_endpoint_url=s3_server
    )
    for _ in range(3):
        assert invoke(endpoint.url, solid_png(BLUE)).status_code == 200
    endpoint.stop()  # graceful: flushes
    s3 = boto3.client("s3", endpoint_url=s3_server)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys and all(k.startswith("data_capture/scones-endpoint/AllTraffic/") for k in keys)
    lines = b"".join(s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read() for k in keys)
    assert len(lines.splitlines()) == 3


def test_store_failure_never_fails_requests_and_counts_the_loss(
    make_endpoint, tiny_model_dir, tmp_path
):
    # The capture "folder" is a file: every write fails.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    endpoint = make_endpoint(
        tiny_model_dir, capture_uri=str(blocker), capture_flush_interval_s=0.05
    )
    for _ in range(4):
        assert invoke(endpoint.url, solid_png(RED)).status_code == 200
    endpoint.stop()
    assert endpoint.state.capture.dropped == 4
    assert endpoint.state.capture.written == 0
    text = endpoint.state.metrics.render().decode()
    assert 'scones_capture_records_dropped_total{model_name="tiny",model_version="1"} 4.0' in text


def test_concurrent_requests_are_each_answered_with_their_own_row(make_endpoint, tiny_model_dir):
    # How requests group is the batcher's (tests/serving/test_batcher.py, on a hand clock);
    # here: under real concurrency every image goes through once and gets its own answer.
    endpoint = make_endpoint(tiny_model_dir, max_batch_delay_ms=50.0, max_batch_size=16)
    images = [solid_png(RED if i % 2 == 0 else BLUE) for i in range(32)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda data: invoke(endpoint.url, data, timeout=60), images))
    for index, answer in enumerate(answers):
        assert answer.status_code == 200
        assert answer.json()[index % 2] > 0.99  # each answer belongs to its own image
    text = httpx.get(f"{endpoint.url}/metrics").text
    assert _metric(text, "scones_batch_size_sum") == 32  # every image went through once
    assert 1 <= _metric(text, "scones_batch_size_count") <= 32


def test_a_lone_request_does_not_wait_for_company_that_is_not_coming(make_endpoint, tiny_model_dir):
    clock = HandClock()  # never advanced: the delay never runs out
    endpoint = make_endpoint(
        tiny_model_dir, batch_clock=clock, max_batch_delay_ms=1000.0, max_batch_size=64
    )
    for _ in range(3):  # one after another, as one keep-alive client sends them
        response = invoke(endpoint.url, solid_png(RED), timeout=HANG_S)
        assert response.status_code == 200 and response.json()[0] > 0.99
    assert endpoint.state.arriving == 0
    text = httpx.get(f"{endpoint.url}/metrics").text
    assert _metric(text, "scones_batch_size_count") == 3


def test_a_request_that_fails_to_decode_is_no_longer_awaited(make_endpoint, tiny_model_dir):
    endpoint = make_endpoint(tiny_model_dir, batch_clock=HandClock(), max_batch_delay_ms=1000.0)
    assert invoke(endpoint.url, b"not an image", "image/png").status_code == 400
    assert endpoint.state.arriving == 0 and endpoint.state.in_flight == 0
    assert invoke(endpoint.url, solid_png(BLUE), timeout=HANG_S).json()[1] > 0.99


def test_info_metrics_and_openapi(endpoint):
    info = httpx.get(f"{endpoint.url}/info").json()
    assert info["model_name"] == "tiny" and info["model_version"] == 1
    assert info["class_names"] == ["bicycle", "motorcycle"]
    assert info["preprocessing"]["input_size"] == [32, 32]
    assert invoke(endpoint.url, solid_png(RED)).status_code == 200
    assert invoke(endpoint.url, b"", "image/png").status_code == 400
    metrics = httpx.get(f"{endpoint.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    labels = 'model_name="tiny",model_version="1"'
    assert f'scones_requests_total{{{labels},path="/invocations",status="200"}} 1.0' in text
    assert f'scones_requests_total{{{labels},path="/invocations",status="400"}} 1.0' in text
    assert _metric(text, "scones_invocation_latency_seconds_count") == 2
    assert f"scones_model_loaded{{{labels}}} 1.0" in text
    schema = httpx.get(f"{endpoint.url}/openapi.json").json()
    assert {"/ping", "/invocations", "/info", "/metrics"} <= set(schema["paths"])
    assert "image/png" in schema["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert httpx.get(f"{endpoint.url}/docs").status_code == 200


def test_unknown_path_is_a_json_404(endpoint):
    response = httpx.get(f"{endpoint.url}/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    wrong_method = httpx.get(f"{endpoint.url}/invocations")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"


def test_ping_is_503_until_the_model_loads(tmp_path, tiny_model_dir):
    # A model whose ONNX file is broken never loads: /ping stays 503 and says why.
    import shutil

    from endpoint_fixtures import start_endpoint

    from scones.serving.config import ServeConfig

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.onnx").write_bytes(b"not onnx")
    endpoint, stop = start_endpoint(ServeConfig(model_dir=broken), wait=False)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = httpx.get(f"{endpoint.url}/ping")
            assert response.status_code == 503
            if response.json()["error"] == "model_load_failed":
                break
            assert response.json()["error"] == "model_not_loaded"
            time.sleep(0.05)
        assert "model.onnx" in response.json()["message"]
        refused = invoke(endpoint.url, solid_png(RED))
        assert refused.status_code == 503 and refused.json()["error"] == "model_not_loaded"
    finally:
        stop()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_batcher_never_mixes_answers_under_load(make_endpoint, tiny_model_dir):
    # Noise images, each with its own answer: each answer must be the model's own
    # probabilities for that very image (not merely the same winning class), however the
    # requests were batched.
    from scones.model.artifact import OnnxClassifier
    from scones.model.preprocess import preprocess_bytes

    endpoint = make_endpoint(tiny_model_dir, max_batch_delay_ms=20.0)
    images = [noise_png(seed) for seed in range(24)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda image: invoke(endpoint.url, image).json(), images))
    classifier = OnnxClassifier(tiny_model_dir)
    batch = np.stack([preprocess_bytes(image, classifier.preprocessing) for image in images])
    expected = classifier.predict(batch)
    assert len({round(float(row[0]), 4) for row in expected}) == 24  # a mix-up would show
    for served, own in zip(answers, expected, strict=True):
        assert served == pytest.approx(own.tolist(), abs=1e-5)


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}), ("JPEG", {"exif": b"Exif\0\0"})],
)
def test_header_size_read_from_bytes_matches_pillow(fmt, options):
    from scones.images import declared_pixels

    data = encode(Image.new("RGB", (123, 45), RED), fmt, **options)
    assert declared_pixels(data) == 123 * 45
    assert declared_pixels(b"GIF89a....") is None
    assert declared_pixels(data[:10]) is None
