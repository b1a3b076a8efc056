"""Any S3 API (AWS, MinIO, moto's server) as an object store, through boto3."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from scones.store.base import (
    STREAM_CHUNK_BYTES,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    StoreError,
)
from scones.store.keys import join_key, validate_key, validate_prefix

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``; keys are relative to the prefix."""

    def __init__(
        self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        if not bucket:
            raise StoreError("an s3:// store URI needs a bucket name, e.g. s3://my-bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_prefix(self.prefix)
        self.endpoint_url = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        self._client = client
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    @property
    def client(self) -> S3Client:
        # Created on first use so building a store does no network or credential work.
        if self._client is None:
            try:
                import boto3
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise StoreError("s3:// stores need boto3: pip install 'scones[aws]'") from exc
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def _full(self, key: str) -> str:
        validate_key(key)
        return join_key(self.prefix, key)

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        with _errors(self, key):
            if content_type:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._full(key), Body=data, ContentType=content_type
                )
            else:
                self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def put_stream(self, key: str, stream: BinaryIO, *, content_type: str | None = None) -> None:
        # upload_fileobj streams in parts; S3 makes the object visible only when complete.
        extra_args = {"ContentType": content_type} if content_type else None
        with _errors(self, key):
            self.client.upload_fileobj(stream, self.bucket, self._full(key), ExtraArgs=extra_args)

    def get(self, key: str) -> bytes:
        with _errors(self, key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return response["Body"].read()

    def open(self, key: str) -> BinaryIO:
        with _errors(self, key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        return io.BufferedReader(_StreamingBody(response["Body"]), STREAM_CHUNK_BYTES)

    def head(self, key: str) -> ObjectInfo:
        with _errors(self, key):
            response = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        return ObjectInfo(
            key,
            response["ContentLength"],
            response["LastModified"],
            response.get("ETag", "").strip('"') or None,
        )

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        full_prefix = join_key(self.prefix, prefix) if self.prefix else prefix
        if self.prefix and prefix == "":
            full_prefix = self.prefix + "/"
        elif self.prefix and prefix.endswith("/"):
            full_prefix += "/"
        paginator = self.client.get_paginator("list_objects_v2")
        with _errors(self, prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        self._relative(item["Key"]),
                        item["Size"],
                        item["LastModified"],
                        item.get("ETag", "").strip('"') or None,
                    )

    def delete(self, key: str) -> None:
        with _errors(self, key):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def copy(self, source_key: str, dest_key: str) -> None:
        with _errors(self, source_key):
            self.client.copy(
                {"Bucket": self.bucket, "Key": self._full(source_key)},
                self.bucket,
                self._full(dest_key),
            )


class _errors:
    """Map botocore's errors to the store's, naming the key and the store."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store = store
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        # Never swallows: maps botocore's errors, lets every other exception through.
        if exc is None:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise ObjectNotFoundError(self.store.uri, self.key) from None
            if code == "NoSuchBucket":
                raise StoreError(
                    f"bucket {self.store.bucket!r} does not exist ({self.store.uri})"
                ) from None
            raise StoreError(f"S3 error on {self.key!r} in {self.store.uri}: {code} {exc}") from exc
        if isinstance(exc, BotoCoreError):
            raise StoreError(f"S3 error on {self.key!r} in {self.store.uri}: {exc}") from exc


class _StreamingBody(io.RawIOBase):
    """botocore's StreamingBody as a raw stream, for io.BufferedReader (a real BinaryIO)."""

    def __init__(self, body: StreamingBody) -> None:
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self._body.read()  # one read, not a loop of buffer-sized ones

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
