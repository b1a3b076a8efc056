"""The deployment manifest, ``<prefix>/deploy/<name>/deployment.json`` in the bucket.

Written as resources are created, so a deploy that fails half-way still says what exists;
destroy reads it (with the deployment's tags) to know what to remove.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from scones.deploy.aws import Aws, aws_errors, find
from scones.deploy.errors import DeployError
from scones.deploy.plan import Resource

FORMAT_VERSION = 1


class Manifest:
    def __init__(self, bucket: str, key: str, data: dict[str, Any] | None = None) -> None:
        self.bucket = bucket
        self.key = key
        self.data: dict[str, Any] = data or {"format_version": FORMAT_VERSION, "resources": []}

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def resources(self) -> list[Resource]:
        return [
            Resource(str(item["kind"]), str(item["name"]), str(item.get("arn", "")))
            for item in self.data.get("resources", [])
        ]

    def record(self, resource: Resource) -> None:
        kept = [r for r in self.resources if (r.kind, r.name) != (resource.kind, resource.name)]
        self.data["resources"] = [r.as_dict() for r in [*kept, resource]]

    def forget(self, resource: Resource) -> None:
        key = (resource.kind, resource.name)
        self.data["resources"] = [r.as_dict() for r in self.resources if (r.kind, r.name) != key]

    def update(self, **fields: Any) -> None:
        self.data.update(fields)

    def write(self, aws: Aws) -> None:
        self.data["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        body = json.dumps(self.data, indent=2, sort_keys=True).encode()
        with aws_errors(f"writing the manifest {self.uri}"):
            aws.client("s3").put_object(
                Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json"
            )

    def delete(self, aws: Aws) -> None:
        with aws_errors(f"deleting the manifest {self.uri}"):
            aws.client("s3").delete_object(Bucket=self.bucket, Key=self.key)


def read_manifest(aws: Aws, bucket: str, key: str) -> Manifest | None:
    """The manifest, or None when this deployment has none."""
    found = find(aws.client("s3").get_object, Bucket=bucket, Key=key)
    if found is None:
        return None
    raw = found["Body"].read(16 * 1024 * 1024)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise DeployError(f"s3://{bucket}/{key} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("resources"), list):
        raise DeployError(f"s3://{bucket}/{key} is not a scones deployment manifest")
    return Manifest(bucket, key, data)
