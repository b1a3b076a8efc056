"""Every command and option of `scones` has help text; `--help` and `version` work."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from scones import __version__
from scones.cli import app

SCONES = Path(sys.executable).parent / "scones"


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every command under ``command``, sub-groups included, with its full name."""
    yield " ".join(path) or "scones", command
    # Duck-typed: typer bundles its own click, so isinstance(click.Group) does not hold.
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


def missing_help() -> list[str]:
    root = typer.main.get_command(app)
    problems = []
    for name, command in walk(root):
        if not (command.help or command.short_help or "").strip():
            problems.append(f"command {name!r} has no help text")
        for param in command.params:
            if param.name == "help":
                continue
            if not (getattr(param, "help", None) or "").strip():
                problems.append(f"{name}: parameter {param.opts or param.name} has no help")
    return problems


def test_every_command_and_option_has_help() -> None:
    assert missing_help() == []


def test_walk_finds_commands_and_the_check_catches_a_missing_help() -> None:
    names = {name for name, _ in walk(typer.main.get_command(app))}
    assert {"version", "stage"} <= names

    # A command added without docstring or option help must be reported.
    @app.command("undocumented-probe")
    def probe(flag: bool = typer.Option(False, "--flag")) -> None:
        pass

    group = typer.Typer()

    @group.command("inner")
    def inner() -> None:
        pass

    app.add_typer(group, name="probe-group", help="A group for this test.")
    try:
        problems = missing_help()
    finally:
        app.registered_commands[:] = [
            c for c in app.registered_commands if c.name != "undocumented-probe"
        ]
        app.registered_groups[:] = [g for g in app.registered_groups if g.name != "probe-group"]
    assert "command 'undocumented-probe' has no help text" in problems
    assert "undocumented-probe: parameter ['--flag'] has no help" in problems
    assert "command 'probe-group inner' has no help text" in problems
    assert missing_help() == []


def test_scones_help_lists_the_commands() -> None:
    result = subprocess.run([str(SCONES), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    for command in ("stage", "version"):
        assert command in result.stdout


def test_scones_version_prints_the_version() -> None:
    result = subprocess.run([str(SCONES), "version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__
