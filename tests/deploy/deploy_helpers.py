"""Helpers for the deploy tests: an AWS account on moto's server, an image in its ECR, a
registered model, and deploy options pointing at them.

Test modules import these by name (a second conftest.py would shadow the shared one).
moto's backends are process-wide, so every test uses its own bucket and deployment name.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from conftest import build_tiny_model
from scones.deploy.deploy import DeployResult
from scones.deploy.options import DeployOptions

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
# Distinctive values, so a test can prove they never appear in output or logs.
ACCESS_KEY_ID = "AKIASCONESTESTKEY123"
SECRET_ACCESS_KEY = "scones/TEST+secret+never+printed+0123456789"


@dataclass
class AwsAccount:
    endpoint_url: str
    bucket: str
    name: str
    image_uri: str
    store_dir: Path
    cache_dir: Path

    def options(self, **overrides: object) -> DeployOptions:
        options = DeployOptions(
            bucket=self.bucket,
            image_uri=self.image_uri,
            region=REGION,
            name=self.name,
            endpoint_url=self.endpoint_url,
        )
        return replace(options, **overrides)  # type: ignore[arg-type]

    def client(self, service: str, region: str = REGION):
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=self.endpoint_url)


def push_image(endpoint_url: str, repository: str, tag: str = "latest") -> str:
    """A repository and an image manifest in moto's ECR; returns the image URI."""
    import boto3

    ecr = boto3.client("ecr", region_name=REGION, endpoint_url=endpoint_url)
    ecr.create_repository(repositoryName=repository)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 7023,
            "digest": "sha256:" + "a" * 64,
        },
        "layers": [],
    }
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
    return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}:{tag}"


def register_tiny_model(store_dir: Path, tmp: Path, *, versions: int = 1) -> None:
    """Register the tiny colour model (``versions`` times) and promote the last."""
    from scones.model.registry import promote, register
    from scones.store import open_store

    store = open_store(str(store_dir))
    model_dir = build_tiny_model(tmp / "tiny-model" / "model", name="vehicle-classifier")
    last = None
    for _ in range(versions):
        last = register(store, model_dir, "vehicle-classifier")
    assert last is not None
    promote(store, "vehicle-classifier", last.version)


def open_account(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp: Path) -> AwsAccount:
    """A fresh bucket, deployment name and ECR image on moto's server; a registered model in
    a local store; AWS variables with distinctive fake credentials."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    suffix = uuid.uuid4().hex[:8]
    bucket = f"scones-deploy-{suffix}"
    boto3.client("s3", region_name=REGION, endpoint_url=s3_server).create_bucket(Bucket=bucket)
    store_dir = tmp / "store"
    register_tiny_model(store_dir, tmp)
    image = push_image(s3_server, f"scones-endpoint-{suffix}")
    return AwsAccount(s3_server, bucket, f"t{suffix}", image, store_dir, tmp / "cache")


@pytest.fixture(name="aws_account")
def aws_account_fixture(
    s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AwsAccount:
    """A fresh account for a test that changes things."""
    return open_account(s3_server, monkeypatch, tmp_path)


@pytest.fixture(scope="module", name="deployed")
def deployed_fixture(
    s3_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AwsAccount, DeployResult]]:
    """One deployment shared by the tests that only read it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        account = open_account(s3_server, monkeypatch, tmp_path_factory.mktemp("deployed"))
        yield account, deploy_now(account)


def names(account: AwsAccount, service: str, operation: str, items: str, field: str) -> list[str]:
    """Every name a list operation returns (all pages), that starts with the account's name."""
    paginator = account.client(service).get_paginator(operation)
    found = [item[field] for page in paginator.paginate() for item in page[items]]
    return [name for name in found if name.startswith(account.name)]


def deploy_now(
    account: AwsAccount, *, plan_only: bool = False, **overrides: object
) -> DeployResult:
    from scones.deploy.deploy import deploy
    from scones.store import open_store

    return deploy(
        account.options(**overrides),
        store=open_store(str(account.store_dir)),
        cache_dir=account.cache_dir,
        plan_only=plan_only,
    )


# Every kind of resource a deployment creates (what a fresh --plan must list).
EVERY_KIND = {
    "s3-object",
    "iam-role",
    "sagemaker-model",
    "sagemaker-endpoint-config",
    "sagemaker-endpoint",
    "lambda-function",
    "state-machine",
    "s3-eventbridge",
    "events-rule",
}
