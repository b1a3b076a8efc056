"""The local resources registry: the definitions' function ARNs -> the Python handlers.

``lambda:invoke`` Tasks name a FunctionName; locally the placeholders are filled with
:func:`scones.workflow.definitions.local_function_arns`, and each of those names is served by
the handler of the same module in :mod:`scones.functions`, with Lambda's error reporting
(a raised exception becomes the task error named after its class, with Lambda's JSON cause).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from scones.workflow.definitions import (
    LOCAL_ACCOUNT_ID,
    LOCAL_REGION,
    PLACEHOLDERS,
    STATE_MACHINE_NAMES,
    load_definition,
    local_function_name,
)

Handler = Callable[[Any, Any], Any]


def local_resources(overrides: dict[str, Handler] | None = None) -> Any:
    """The ASL runtime's resources registry with the three functions registered.

    ``overrides`` (module name -> handler) replaces a handler, e.g. to wrap one for timing.
    """
    from scones.asl import Resources

    resources = Resources(account_id=LOCAL_ACCOUNT_ID, region=LOCAL_REGION)
    for module in PLACEHOLDERS.values():
        handler = (overrides or {}).get(module) or importlib.import_module(
            f"scones.functions.{module}"
        ).handler
        resources.register_lambda(local_function_name(module), handler)
    return resources


def local_runner(
    store: Any,
    definition: str = "single",
    *,
    max_concurrency: int = 16,
    clock: Any = None,
    overrides: dict[str, Handler] | None = None,
) -> Any:
    """An ExecutionRunner of one of our definitions, wired to the local handlers."""
    from scones.workflow.executions import ExecutionRunner

    return ExecutionRunner(
        store,
        load_definition(definition),
        local_resources(overrides),
        state_machine=STATE_MACHINE_NAMES[definition],
        max_concurrency=max_concurrency,
        clock=clock,
    )
