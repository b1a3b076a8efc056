"""Library errors name parameters; the `scones` command shows the flags that set them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT


def scones(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCONES_")}
    env["SCONES_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "scones", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO_ROOT,
    )


def test_executions_list_since_takes_weeks_like_monitor(tmp_path: Path) -> None:
    result = scones("executions", "list", "--since", "1w", "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # no executions yet, and no error


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["executions", "list", "--since", "yesterday"], "error: --since 'yesterday' is not", 2),
        (["monitor", "--since", "yesterday"], "error: --since 'yesterday' is not a time", 2),
        (["monitor", "--since", "1w", "--until", "soon"], "error: --until 'soon' is not a time", 2),
        (["train", "--config", "/nonexistent/hp.json"], "error: --config /nonexistent/hp.json", 2),
        (["run"], "error: give --key (one or more) or --random N", 2),
        (["stage", "--md5", "abc"], "error: --md5 'abc' is not an MD5", 1),  # data errors exit 1
        (["stage", "--val-fraction", "1.5"], "error: --val-fraction must be between 0 and 1", 1),
    ],
)
def test_a_bad_value_is_reported_with_its_flag(
    tmp_path: Path, args: list[str], message: str, code: int
) -> None:
    result = scones(*args, home=tmp_path)
    assert result.returncode == code, result.stderr
    assert result.stderr.strip().startswith(message), result.stderr
    assert result.stdout == ""
