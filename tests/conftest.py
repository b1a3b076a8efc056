"""Fixtures shared by every test package: the shared data folder, a real S3 API server."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
SHARED_VEHICLES = SHARED_DIR / "data" / "cifar100-vehicles"


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own SCONES_HOME, so no test reads or writes ./.scones."""
    from scones.settings import get_settings

    home = tmp_path_factory.mktemp("scones-home")
    for name in list(os.environ):
        if name.startswith("SCONES_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SCONES_HOME", str(home))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def shared_vehicles() -> Path:
    """The 1000 real CIFAR-100 training images of the two classes, in the staged layout."""
    if not (SHARED_VEHICLES / "train.lst").is_file():
        pytest.fail(f"shared data missing: {SHARED_VEHICLES} (it sits beside the repo root)")
    return SHARED_VEHICLES


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 API server on 127.0.0.1, over real HTTP; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server; AWS variables point boto3 at it."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("SCONES_S3_ENDPOINT_URL", s3_server)
    bucket = f"scones-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return bucket
