"""serialize_image_data: bucket + key -> base64 text, from the configured store or S3."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import pytest

from conftest import solid_png
from scones.functions.serialize_image_data import (
    ImageNotFound,
    ImageTooLarge,
    InvalidEvent,
    InvalidImageKey,
    handler,
)
from scones.settings import get_settings
from scones.store import open_store

RED = solid_png((200, 30, 30))


def _event(key: str, bucket: str = "scones") -> dict:
    return {"s3_bucket": bucket, "s3_key": key, "image_data": ""}


@pytest.fixture
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "store"
    monkeypatch.setenv("SCONES_STORE", str(root))
    get_settings.cache_clear()
    store = open_store(str(root))
    store.put("test/red.png", RED)
    return store


def test_reads_the_image_from_the_configured_store_as_base64_text(local_store) -> None:
    result = handler(_event("test/red.png", bucket="any-name"), None)
    assert result["statusCode"] == 200
    body = result["body"]
    assert isinstance(body["image_data"], str)  # text, not bytes: it must serialise as JSON
    assert base64.b64decode(body["image_data"]) == RED
    assert body["s3_bucket"] == "any-name" and body["s3_key"] == "test/red.png"
    assert body["inferences"] == []
    json.dumps(result)


def test_missing_key_raises_image_not_found_naming_it(local_store) -> None:
    with pytest.raises(ImageNotFound, match=r"test/missing\.png"):
        handler(_event("test/missing.png"), None)


@pytest.mark.parametrize("key", ["../secrets.png", "/etc/passwd", "test/../../x.png", "a//b.png"])
def test_keys_that_could_escape_are_refused(local_store, key: str) -> None:
    with pytest.raises(InvalidImageKey, match="invalid s3_key"):
        handler(_event(key), None)


@pytest.mark.parametrize(
    "event",
    [
        None,
        "test/red.png",
        {"s3_key": "test/red.png"},
        {"s3_bucket": "b"},
        {"s3_bucket": "b", "s3_key": ""},
        {"s3_bucket": 3, "s3_key": "test/red.png"},
    ],
)
def test_bad_events_raise_invalid_event(local_store, event: object) -> None:
    with pytest.raises(InvalidEvent):
        handler(event, None)


def test_images_over_the_payload_limit_are_refused(local_store, monkeypatch) -> None:
    monkeypatch.setenv("MAX_IMAGE_BYTES", str(len(RED) - 1))
    with pytest.raises(ImageTooLarge, match="256 KiB"):
        handler(_event("test/red.png"), None)
    monkeypatch.setenv("MAX_IMAGE_BYTES", str(len(RED)))
    assert handler(_event("test/red.png"), None)["statusCode"] == 200


def test_bucket_variable_maps_a_bucket_to_another_store(local_store, tmp_path, monkeypatch):
    other = open_store(str(tmp_path / "other"))
    other.put("test/blue.png", b"blue bytes")
    monkeypatch.setenv("SCONES_BUCKET_DRIVER_PHOTOS", str(tmp_path / "other"))
    body = handler(_event("test/blue.png", bucket="driver-photos"), None)["body"]
    assert base64.b64decode(body["image_data"]) == b"blue bytes"
    with pytest.raises(ImageNotFound):  # the default store does not have it
        handler(_event("test/blue.png", bucket="scones"), None)


def test_s3_store_bucket_name_means_the_store_with_its_prefix(s3_bucket, monkeypatch) -> None:
    monkeypatch.setenv("SCONES_STORE", f"s3://{s3_bucket}/staged")
    get_settings.cache_clear()
    open_store(f"s3://{s3_bucket}/staged").put("test/red.png", RED)
    body = handler(_event("test/red.png", bucket=s3_bucket), None)["body"]
    assert base64.b64decode(body["image_data"]) == RED
    with pytest.raises(ImageNotFound):
        handler(_event("staged/test/missing.png", bucket=s3_bucket), None)


def test_on_aws_it_reads_the_s3_bucket_with_boto3(s3_bucket, monkeypatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "serializeImageData")
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="test/red.png", Body=RED)
    body = handler(_event("test/red.png", bucket=s3_bucket), None)["body"]
    assert base64.b64decode(body["image_data"]) == RED
    with pytest.raises(ImageNotFound, match=f"s3://{s3_bucket}/test/missing.png"):
        handler(_event("test/missing.png", bucket=s3_bucket), None)
    with pytest.raises(ImageNotFound, match="no bucket"):
        handler(_event("test/red.png", bucket=s3_bucket + "-absent"), None)
    monkeypatch.setenv("MAX_IMAGE_BYTES", "10")
    with pytest.raises(ImageTooLarge):
        handler(_event("test/red.png", bucket=s3_bucket), None)
