"""The local endpoint answers SageMaker Runtime's InvokeEndpoint, so boto3 and the classify
function's AWS code path work against a real ``scones serve`` by ``endpoint_url``."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import noise_png, solid_png
from scones.functions import classify_image
from serving.endpoint_fixtures import make_endpoint_fixture  # noqa: F401

ENDPOINT = "scones-replay-endpoint"


@pytest.fixture
def runtime_endpoint(make_endpoint, tiny_model_dir, monkeypatch):
    endpoint = make_endpoint(tiny_model_dir, endpoint_name=ENDPOINT)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint.url)
    return endpoint


def runtime(url: str):
    return boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=url)


def test_invoke_endpoint_by_boto3_answers_probabilities(runtime_endpoint):
    response = runtime(runtime_endpoint.url).invoke_endpoint(
        EndpointName=ENDPOINT,
        ContentType="image/png",
        Accept="application/json",
        Body=solid_png((200, 30, 30)),
    )
    probabilities = json.loads(response["Body"].read())
    assert response["ContentType"] == "application/json"
    assert len(probabilities) == 2 and probabilities[0] > 0.9  # red is a confident bicycle


def test_invoke_endpoint_of_another_name_is_a_404_json_error(runtime_endpoint):
    with pytest.raises(ClientError) as caught:
        runtime(runtime_endpoint.url).invoke_endpoint(
            EndpointName="some-other-endpoint", ContentType="image/png", Body=solid_png((1, 2, 3))
        )
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "some-other-endpoint" in error["Error"]["Message"]
    assert ENDPOINT in error["Error"]["Message"]


def test_bad_input_on_the_runtime_path_is_the_same_4xx(runtime_endpoint):
    with pytest.raises(ClientError) as caught:
        runtime(runtime_endpoint.url).invoke_endpoint(
            EndpointName=ENDPOINT, ContentType="image/png", Body=b"not an image"
        )
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_classify_function_aws_path_against_the_local_endpoint(runtime_endpoint, monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("CLASS_NAMES", "bicycle,motorcycle")
    event = {
        "image_data": base64.b64encode(solid_png((30, 30, 200))).decode(),
        "s3_bucket": "b",
        "s3_key": "incoming/blue.png",
    }
    body = classify_image.handler(event)["body"]
    assert body["classes"] == ["bicycle", "motorcycle"]
    assert body["inferences"][1] > 0.9  # blue is a confident motorcycle
    unsure = classify_image.handler(event | {"image_data": base64.b64encode(noise_png()).decode()})
    assert max(unsure["body"]["inferences"]) < 0.93

    monkeypatch.setenv("ENDPOINT_NAME", "not-this-one")
    with pytest.raises(classify_image.EndpointRequestError, match="not-this-one"):
        classify_image.handler(event)
