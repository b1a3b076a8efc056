"""scones.asl: an Amazon States Language runtime.

machine = load(definition)                      # validates; raises DefinitionError
resources = Resources().register_lambda("serializeImageData", handler)
execution = execute(machine, {"x": 1}, resources, clock=FakeClock())
execution.status, execution.output, execution.history
"""

from __future__ import annotations

import asyncio
from typing import Any

from .clock import Clock, FakeClock, SystemClock
from .definition import compile_machine
from .encoding import PAYLOAD_LIMIT
from .errors import (
    DefinitionError,
    ExecutionAborted,
    MissingResourceError,
    StatesError,
    TaskError,
)
from .execution import ABORTED, FAILED, SUCCEEDED, TIMED_OUT, Execution, ExecutionConfig
from .interpreter import run_execution
from .resources import LambdaContext, Resources, TaskRequest
from .states import Machine, iter_states

__all__ = [
    "ABORTED",
    "FAILED",
    "PAYLOAD_LIMIT",
    "SUCCEEDED",
    "TIMED_OUT",
    "Clock",
    "DefinitionError",
    "Execution",
    "ExecutionAborted",
    "ExecutionConfig",
    "FakeClock",
    "LambdaContext",
    "MissingResourceError",
    "Resources",
    "StateMachine",
    "StatesError",
    "SystemClock",
    "TaskError",
    "TaskRequest",
    "execute",
    "execute_async",
    "load",
]


class StateMachine:
    """A validated, compiled definition. Reusable and safe to execute concurrently."""

    def __init__(self, compiled: Machine) -> None:
        self._machine = compiled

    @property
    def definition(self) -> dict[str, Any]:
        return self._machine.definition

    @property
    def compiled(self) -> Machine:
        return self._machine

    def task_resources(self) -> list[tuple[str, str, Any]]:
        """(location, Resource, static FunctionName or None) for every Task state."""
        out = []
        for state in iter_states(self._machine):
            if state.type == "Task" and state.resource:
                params = state.spec.get("Parameters") or state.spec.get("Arguments")
                fn = params.get("FunctionName") if isinstance(params, dict) else None
                out.append((f"/States/{state.name}", state.resource, fn))
        return out

    def check_resources(self, resources: Resources) -> None:
        """Raise MissingResourceError naming every Resource that has no handler."""
        problems = resources.missing(self.task_resources())
        if problems:
            raise MissingResourceError(problems)

    def execute(
        self, input: Any = None, resources: Resources | None = None, **kw: Any
    ) -> Execution:
        return execute(self, input, resources, **kw)


def load(definition: Any, resources: Resources | None = None) -> StateMachine:
    """Validate and compile a definition (dict or JSON text).

    With `resources`, also refuse Task Resources that have no handler.
    """
    machine = StateMachine(compile_machine(definition))
    if resources is not None:
        machine.check_resources(resources)
    return machine


def execute(
    machine: StateMachine | dict[str, Any] | str,
    input: Any = None,
    resources: Resources | None = None,
    *,
    name: str | None = None,
    clock: Clock | None = None,
    config: ExecutionConfig | None = None,
    check_resources: bool = True,
) -> Execution:
    """Run one execution to completion and return it (status, output, error, cause, history)."""
    if not isinstance(machine, StateMachine):
        machine = load(machine)
    resources = resources if resources is not None else Resources()
    if check_resources:
        machine.check_resources(resources)
    return run_execution(
        machine.compiled,
        {} if input is None else input,
        resources,
        name=name,
        clock=clock,
        config=config,
    )


async def execute_async(
    machine: StateMachine | dict[str, Any] | str,
    input: Any = None,
    resources: Resources | None = None,
    **kw: Any,
) -> Execution:
    """execute() on a worker thread, so handlers may block without stalling the event loop."""
    return await asyncio.to_thread(execute, machine, input, resources, **kw)
