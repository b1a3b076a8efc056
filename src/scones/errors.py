"""The project's error base: the CLI turns any of these into one line and a non-zero exit."""


class SconesError(Exception):
    """An error a user can act on; its message names what was wrong."""

    exit_code = 1


class UsageError(SconesError):
    """A flag, argument or setting has a value that cannot work."""

    exit_code = 2


class ParameterError(UsageError):
    """A bad value for named parameters of a library function.

    The message says ``{parameter}`` where a parameter's name goes: the library's own text
    names the parameter (``config_file``), and the CLI shows the flag it came from
    (``--config``) through ``naming``.
    """

    def __init__(self, template: str, *parameters: str) -> None:
        self.template = template
        self.parameters = parameters
        super().__init__(self.naming({name: name for name in parameters}))

    def naming(self, names: dict[str, str]) -> str:
        """The message with each parameter called what ``names`` says (default: its name)."""
        text = self.template
        for parameter in self.parameters:
            text = text.replace("{" + parameter + "}", names.get(parameter, parameter))
        return text
