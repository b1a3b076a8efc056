"""The project's error base: the CLI turns any of these into one line and a non-zero exit."""


class SconesError(Exception):
    """An error a user can act on; its message names what was wrong."""

    exit_code = 1


class UsageError(SconesError):
    """A flag, argument or setting has a value that cannot work."""

    exit_code = 2
