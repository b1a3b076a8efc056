"""The state machine definitions, with their function ARN placeholders filled in.

The ASL files hold ``${SerializeImageDataFunctionArn}``-style placeholders, as a SAM or
CloudFormation ``DefinitionSubstitutions`` deployment fills them in. Locally they are filled
with local Lambda ARNs that :mod:`scones.workflow.local` maps to the Python handlers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from scones.errors import SconesError

# definition name -> file in this package
DEFINITION_FILES: dict[str, str] = {
    "single": "statemachine.asl.json",
    "map": "statemachine_map.asl.json",
}
# state machine names as they appear in execution ids
STATE_MACHINE_NAMES: dict[str, str] = {
    "single": "scones-classify-image",
    "map": "scones-classify-images-map",
}
# placeholder -> function module in scones.functions
PLACEHOLDERS: dict[str, str] = {
    "SerializeImageDataFunctionArn": "serialize_image_data",
    "ClassifyImageFunctionArn": "classify_image",
    "FilterInferencesFunctionArn": "filter_inferences",
}
LOCAL_ACCOUNT_ID = "000000000000"
LOCAL_REGION = "us-east-1"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


class DefinitionNotFoundError(SconesError):
    """No definition of that name."""


class PlaceholderError(SconesError):
    """A placeholder has no value, or a value names no placeholder."""


def local_function_name(module: str) -> str:
    return "scones-" + module.replace("_", "-")


def local_function_arns() -> dict[str, str]:
    """Placeholder -> the local ARN that the local resources registry serves."""
    return {
        placeholder: f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:"
        + local_function_name(module)
        for placeholder, module in PLACEHOLDERS.items()
    }


def definition_text(name: str = "single") -> str:
    """The raw ASL text of a definition, placeholders unfilled."""
    if name not in DEFINITION_FILES:
        raise DefinitionNotFoundError(
            f"unknown state machine definition {name!r}; known: {sorted(DEFINITION_FILES)}"
        )
    return resources.files("scones.workflow").joinpath(DEFINITION_FILES[name]).read_text("utf-8")


def placeholders_in(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Substitute every ``${Name}``; a missing value is an error naming it."""
    missing = sorted(placeholders_in(text) - set(values))
    if missing:
        raise PlaceholderError(f"no value for placeholder(s) {missing} in the state machine")
    for name, value in values.items():
        if not isinstance(value, str) or not value or '"' in value or "\\" in value:
            raise PlaceholderError(f"placeholder {name!r} needs a plain ARN string, got {value!r}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def load_definition(name: str = "single", arns: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The definition as a dict, placeholders filled with ``arns`` (default: local ARNs)."""
    text = fill_placeholders(definition_text(name), local_function_arns() if arns is None else arns)
    return json.loads(text)
