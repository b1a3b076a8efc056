"""Lambda ``serializeImageData``: read an image from a bucket and return it as base64 text.

Event: ``{"s3_bucket": str, "s3_key": str, "image_data": ""}``.
Returns: ``{"statusCode": 200, "body": {"image_data": <base64 text>, "s3_bucket",
"s3_key", "inferences": []}}``.

Self-contained: the standard library at module level (boto3 on AWS, imported when used), so
the module packages as a plain Lambda zip. Which storage a bucket name means:

1. ``SCONES_BUCKET_<NAME>`` (NAME upper-cased, every other character than A-Z/0-9 as ``_``)
   holds a store URI (folder, ``file:///abs``, ``s3://bucket/prefix``): that store.
2. On AWS (``AWS_LAMBDA_FUNCTION_NAME`` set and no ``SCONES_STORE``): the S3 bucket itself,
   read with boto3.
3. Otherwise the configured scones store (``SCONES_STORE``): for an ``s3://B/prefix`` store a
   bucket named ``B`` means that store (prefix included) and any other name the plain S3
   bucket; for a local store every bucket name means the local store.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any

# Step Functions refuses state payloads over 256 KiB (States.DataLimitExceeded); base64 grows
# data by 4/3, so an image over 192 KiB could never travel through the state machine.
DEFAULT_MAX_IMAGE_BYTES = 192 * 1024
MAX_KEY_BYTES = 1024  # S3's limit


class SerializeError(Exception):
    """Base of this function's errors; the class name is the Lambda errorType."""


class InvalidEvent(SerializeError):
    """The event lacks a field or has a field of the wrong type."""


class InvalidImageKey(SerializeError):
    """The key could name something outside its bucket, or S3 would refuse it."""


class ImageNotFound(SerializeError):
    """No object at that bucket and key."""


class ImageTooLarge(SerializeError):
    """The image would not fit into a Step Functions state payload."""


class StorageError(SerializeError):
    """The bucket could not be read (permissions, network, configuration)."""


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Read ``s3_bucket``/``s3_key`` and return the image as base64 text."""
    bucket, key = _parse_event(event)
    data = read_image(bucket, key)
    return {
        "statusCode": 200,
        "body": {
            "image_data": base64.b64encode(data).decode("ascii"),
            "s3_bucket": bucket,
            "s3_key": key,
            "inferences": [],
        },
    }


def _parse_event(event: Any) -> tuple[str, str]:
    if not isinstance(event, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(event).__name__}")
    for field in ("s3_bucket", "s3_key"):
        if field not in event:
            raise InvalidEvent(f"event has no {field!r} field (keys: {sorted(event)})")
        value = event[field]
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"event field {field!r} must be a non-empty string, got {value!r}")
    check_key(event["s3_key"])
    return event["s3_bucket"], event["s3_key"]


def check_key(key: str) -> str:
    """The key unchanged when it cannot escape its bucket, else InvalidImageKey naming it."""
    segments = key.split("/")
    problem = None
    if "\x00" in key or "\\" in key:
        problem = "contains a NUL or backslash"
    elif key.startswith("/"):
        problem = "is absolute (starts with '/')"
    elif len(key.encode("utf-8")) > MAX_KEY_BYTES:
        problem = f"is longer than {MAX_KEY_BYTES} bytes"
    elif any(segment in ("", ".", "..") for segment in segments):
        problem = "has an empty, '.' or '..' segment"
    if problem:
        raise InvalidImageKey(f"invalid s3_key {key!r}: {problem}")
    return key


def max_image_bytes() -> int:
    raw = os.environ.get("MAX_IMAGE_BYTES", "")
    if not raw:
        return DEFAULT_MAX_IMAGE_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise SerializeError(f"MAX_IMAGE_BYTES must be an integer, got {raw!r}") from None
    if value <= 0:
        raise SerializeError(f"MAX_IMAGE_BYTES must be positive, got {raw!r}")
    return value


def bucket_store_uri(bucket: str) -> str | None:
    """The store URI ``SCONES_BUCKET_<NAME>`` assigns to ``bucket``, if any."""
    name = re.sub(r"[^A-Z0-9]", "_", bucket.upper())
    return os.environ.get(f"SCONES_BUCKET_{name}") or None


def on_aws() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("SCONES_STORE")


def read_image(bucket: str, key: str) -> bytes:
    """The object's bytes, from wherever ``bucket`` points (see the module docstring)."""
    limit = max_image_bytes()
    uri = bucket_store_uri(bucket)
    if uri is None and on_aws():
        return _read_s3(bucket, key, limit)
    return _read_scones_store(bucket, key, limit, uri)


def _too_large(bucket: str, key: str, size: int, limit: int) -> ImageTooLarge:
    return ImageTooLarge(
        f"image s3://{bucket}/{key} is {size} bytes, over the {limit}-byte limit "
        "(Step Functions state payloads are at most 256 KiB; set MAX_IMAGE_BYTES to change)"
    )


def _read_s3(bucket: str, key: str, limit: int) -> bytes:
    import boto3  # the Lambda Python runtime ships boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3")
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ImageNotFound(f"no image s3://{bucket}/{key}") from None
        if code == "NoSuchBucket":
            raise ImageNotFound(f"no bucket {bucket!r} (reading key {key!r})") from None
        raise StorageError(f"cannot read s3://{bucket}/{key}: {code or exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"cannot read s3://{bucket}/{key}: {exc}") from None
    body = response["Body"]
    try:
        size = int(response.get("ContentLength", 0))
        if size > limit:
            raise _too_large(bucket, key, size, limit)
        data = body.read(limit + 1)
    finally:
        body.close()
    if len(data) > limit:  # ContentLength may be absent or wrong
        raise _too_large(bucket, key, len(data), limit)
    return data


def _read_scones_store(bucket: str, key: str, limit: int, uri: str | None) -> bytes:
    # Local-only path: scones is importable wherever no real Lambda runs this.
    from scones.settings import get_settings
    from scones.store import InvalidKeyError, ObjectNotFoundError, StoreError, open_store

    settings = get_settings()
    if uri is None:
        uri = settings.store
        if uri.startswith("s3://"):
            store_bucket = uri[len("s3://") :].split("/", 1)[0]
            if bucket != store_bucket:
                uri = f"s3://{bucket}"
    try:
        store = open_store(uri, s3_endpoint_url=settings.s3_endpoint_url)
        with store.open(key) as stream:
            data = stream.read(limit + 1)
    except ObjectNotFoundError:
        raise ImageNotFound(f"no image {key!r} in bucket {bucket!r} (store {uri})") from None
    except InvalidKeyError as exc:
        raise InvalidImageKey(str(exc)) from None
    except StoreError as exc:
        raise StorageError(f"cannot read {key!r} from bucket {bucket!r}: {exc}") from None
    if len(data) > limit:
        raise _too_large(bucket, key, len(data), limit)
    return data
