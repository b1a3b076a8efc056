"""The `scones deploy aws` / `scones destroy aws` commands on moto's server: the plan of a
fresh account lists every resource; errors are one line and an exit code; credentials never
appear in output or logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from deploy_helpers import (  # noqa: F401
    ACCESS_KEY_ID,
    EVERY_KIND,
    SECRET_ACCESS_KEY,
    aws_account_fixture,
)
from typer.testing import CliRunner

from scones.cli import app
from scones.settings import get_settings


def scones(account, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, in a process of its own (as a user runs it)."""
    env = os.environ | {"SCONES_STORE": str(account.store_dir)}
    return subprocess.run(
        [sys.executable, "-m", "scones", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def deploy_args(account, *extra: str) -> list[str]:
    return [
        "deploy",
        "aws",
        "--bucket",
        account.bucket,
        "--image-uri",
        account.image_uri,
        "--name",
        account.name,
        "--region",
        "us-east-1",
        *extra,
    ]


def assert_no_credentials(*texts: str) -> None:
    for text in texts:
        assert SECRET_ACCESS_KEY not in text
        assert ACCESS_KEY_ID not in text


def test_plan_on_a_fresh_server_lists_every_resource(aws_account):
    result = scones(aws_account, *deploy_args(aws_account, "--plan"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for kind in sorted(EVERY_KIND):
        assert any(f"+ create {kind} " in line for line in lines), kind
    assert "plan only: nothing was changed" in result.stderr
    assert_no_credentials(result.stdout, result.stderr)


def test_a_bad_input_is_one_line_and_exit_2(aws_account):
    result = scones(aws_account, *deploy_args(aws_account, "--threshold", "1.5"))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --threshold 1.5 is outside (0, 1]"
    missing = scones(aws_account, *deploy_args(aws_account, "--bucket", "absent-bucket-x"))
    assert missing.returncode == 2
    assert "--bucket 'absent-bucket-x' does not exist" in missing.stderr
    assert_no_credentials(result.stderr, missing.stderr, missing.stdout)


def test_deploy_and_destroy_never_show_credentials(aws_account, caplog, monkeypatch):
    monkeypatch.setenv("SCONES_STORE", str(aws_account.store_dir))
    get_settings.cache_clear()
    caplog.set_level(logging.DEBUG, logger="scones")
    runner = CliRunner()
    deployed = runner.invoke(app, deploy_args(aws_account, "--json"), catch_exceptions=False)
    assert deployed.exit_code == 0, deployed.output
    summary = json.loads(deployed.stdout)
    assert summary["applied"] is True and summary["name"] == aws_account.name
    again = runner.invoke(app, deploy_args(aws_account), catch_exceptions=False)
    assert again.stdout.strip() == "no changes: everything is as planned"
    destroy_args = ["destroy", "aws", "--bucket", aws_account.bucket, "--name", aws_account.name]
    destroyed = runner.invoke(app, destroy_args, catch_exceptions=False)
    assert destroyed.exit_code == 0
    assert "- delete lambda-function" in destroyed.stdout
    second = runner.invoke(app, destroy_args, catch_exceptions=False)
    assert second.exit_code == 0
    assert f"nothing to destroy: deployment {aws_account.name}" in second.stdout
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert_no_credentials(
        deployed.stdout, deployed.stderr, again.output, destroyed.output, second.output, logged
    )
