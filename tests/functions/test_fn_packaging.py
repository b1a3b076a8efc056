"""`scones functions package`: one self-contained Lambda zip per function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3

from conftest import REPO_ROOT, free_port, solid_png
from scones.functions.packaging import (
    FUNCTIONS,
    foreign_imports,
    module_level_foreign_imports,
    package_functions,
)

# Runs in a fresh interpreter where importing scones fails, as in the Lambda runtime.
ZIP_CHECK = r"""
import base64, importlib.abc, json, os, sys, zipimport

class NoScones(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "scones" or name.startswith("scones."):
            raise ImportError(f"{name} is not in a Lambda zip")
        return None

sys.meta_path.insert(0, NoScones())
zips = json.loads(sys.argv[1])
sys.path[:0] = zips
import classify_image, filter_inferences, serialize_image_data
modules = [classify_image, filter_inferences, serialize_image_data]
report = {"loaders": [type(m.__loader__).__name__ for m in modules]}
event = {"s3_bucket": os.environ["BUCKET"], "s3_key": "test/red.png", "image_data": ""}
body = serialize_image_data.handler(event, None)["body"]
report["image_bytes"] = len(base64.b64decode(body["image_data"]))
try:
    classify_image.handler(body, None)
except Exception as exc:
    report["classify_error"] = type(exc).__name__
body["inferences"] = [0.99, 0.01]
report["filter_status"] = filter_inferences.handler(body, None)["statusCode"]
body["inferences"] = [0.5, 0.5]
try:
    filter_inferences.handler(body, None)
except Exception as exc:
    report["filter_error"] = type(exc).__name__
print(json.dumps(report))
"""


def test_writes_one_zip_per_function_with_the_handler_at_the_root(tmp_path: Path) -> None:
    packages = package_functions(tmp_path / "dist")
    assert sorted(p.module for p in packages) == sorted(FUNCTIONS)
    for package in packages:
        with zipfile.ZipFile(package.path) as archive:
            assert archive.namelist() == [f"{package.module}.py"]
        assert package.handler == f"{package.module}.handler"


def test_zips_are_reproducible(tmp_path: Path) -> None:
    first = {p.module: p.path.read_bytes() for p in package_functions(tmp_path / "a")}
    second = {p.module: p.path.read_bytes() for p in package_functions(tmp_path / "b")}
    assert first == second


def test_zipped_handlers_run_without_scones(tmp_path: Path, s3_bucket: str) -> None:
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="test/red.png", Body=solid_png((200, 0, 0)))
    zips = [str(p.path) for p in package_functions(tmp_path / "dist")]
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCONES_")} | {
        "BUCKET": s3_bucket,
        "AWS_LAMBDA_FUNCTION_NAME": "serializeImageData",
        "SCONES_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens
        "PYTHONNOUSERSITE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", ZIP_CHECK, json.dumps(zips)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaders"] == ["zipimporter"] * 3
    assert report["image_bytes"] == len(solid_png((200, 0, 0)))
    assert report["classify_error"] == "EndpointTransientError"
    assert report["filter_status"] == 200
    assert report["filter_error"] == "ThresholdConfidenceNotMet"


def test_module_level_imports_outside_the_lambda_runtime_are_found() -> None:
    source = "import json\nimport numpy as np\nfrom scones.store import open_store\n"
    assert foreign_imports(source) == ["numpy", "scones"]
    lazy = "import os\n\ndef f():\n    import scones\n"
    assert module_level_foreign_imports(lazy) == []
    assert foreign_imports(lazy) == ["scones"]


def test_cli_package_writes_the_zips(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/scones"), "functions", "package", "--out", str(tmp_path / "z")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "z").iterdir()) == sorted(
        f"{m}.zip" for m in FUNCTIONS
    )
    assert "serializeImageData" in result.stdout


def test_cli_package_refuses_a_file_as_out(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/scones"), "functions", "package", "--out", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "not a folder" in result.stderr
    assert target.read_text() == "x"
