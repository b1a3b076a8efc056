"""The README's configuration reference is generated from the settings object."""

from __future__ import annotations

from pathlib import Path

from scones.settings import configuration_reference

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- configuration-reference:start -->\n"
END = "<!-- configuration-reference:end -->"


def test_readme_configuration_reference_matches_settings() -> None:
    text = README.read_text()
    assert START in text and END in text, "README lacks the configuration-reference markers"
    documented = text.split(START, 1)[1].split(END, 1)[0]
    assert documented == configuration_reference(), (
        "README configuration reference is stale: run "
        "`python -m scones.settings --write-readme` to regenerate it"
    )


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
