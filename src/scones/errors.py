"""The project's error base: the CLI turns any of these into one line and a non-zero exit.

A message names the library's parameters, not command-line flags: it says ``{parameter}``
where a parameter's name goes and lists those parameters. ``str(error)`` shows the names
(``config_file``); the CLI shows the flags that set them (``--config``).
"""

from __future__ import annotations

from collections.abc import Mapping


class SconesError(Exception):
    """An error a user can act on; its message names what was wrong."""

    exit_code = 1

    def __init__(self, message: str = "", *parameters: str) -> None:
        self.template = message
        self.parameters = parameters
        super().__init__(self.naming({}))

    def naming(self, names: Mapping[str, str]) -> str:
        """The message with each parameter called what ``names`` says (default: its name)."""
        text = self.template
        for parameter in self.parameters:
            text = text.replace("{" + parameter + "}", names.get(parameter, parameter))
        return text


class UsageError(SconesError):
    """A flag, argument or setting has a value that cannot work."""

    exit_code = 2


class ParameterError(UsageError):
    """A parameter of a library call has a value that cannot work (the message names it)."""
