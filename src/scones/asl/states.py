"""The compiled form of a state machine: Machine, State, retriers, catchers, choice rules.

A State carries the fields of its own query language and the strategy (`queries`) that
evaluates them; the strategy is chosen once, when the state is compiled.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

from .jsonata_expressions import ExpressionTree
from .paths import JsonPath
from .resources import ResourceKind
from .templates import Evaluator, Scope, Template

JSONPATH = "JSONPath"
JSONATA = "JSONata"


class _Missing:
    """A field the definition leaves out (distinct from a field set to null)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()

# A JSONPath I/O path: absent (the default "$"), null (discard: {}), or a path.
OptionalPath = JsonPath | None | _Missing
Predicate = Callable[[Scope], bool]
# Variables a state assigns, by name; None when the state has no Assign.
Assigned = dict[str, Any] | None


class Retrier:
    __slots__ = ("backoff", "errors", "interval", "jitter", "max_attempts", "max_delay")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.errors: tuple[str, ...] = tuple(spec["ErrorEquals"])
        self.interval: int = spec.get("IntervalSeconds", 1)
        self.max_attempts: int = spec.get("MaxAttempts", 3)
        self.backoff: float = spec.get("BackoffRate", 2.0)
        self.max_delay: int | None = spec.get("MaxDelaySeconds")
        self.jitter: str = spec.get("JitterStrategy", "NONE")


class Catcher:
    __slots__ = ("assign", "errors", "jsonata_assign", "jsonata_output", "next", "result_path")

    def __init__(
        self,
        spec: dict[str, Any],
        result_path: JsonPath | None,
        assign: Template | None = None,
        jsonata_assign: ExpressionTree | None = None,
        jsonata_output: ExpressionTree | None = None,
    ) -> None:
        self.errors: tuple[str, ...] = tuple(spec["ErrorEquals"])
        self.next: str = spec["Next"]
        self.result_path = result_path  # None means ResultPath: null (discard the error)
        self.assign = assign
        self.jsonata_assign = jsonata_assign
        self.jsonata_output = jsonata_output


class ChoiceRule(NamedTuple):
    """A JSONPath choice rule: its compiled predicate, target and Assign."""

    predicate: Predicate | None
    next: str | None
    assign: Template | None


class JsonataChoiceRule(NamedTuple):
    """A JSONata choice rule: its Condition, target, Assign and Output."""

    condition: ExpressionTree | None
    next: str | None
    assign: ExpressionTree | None
    output: ExpressionTree | None


class TaskInput(NamedTuple):
    """What a Task attempt sends: its evaluated parameters, limits and credentials."""

    parameters: Any
    timeout_seconds: int | None
    heartbeat_seconds: int | None
    credentials: Any


class MapInput(NamedTuple):
    """A Map state's evaluated items (after ItemSelector) and its concurrency limits."""

    item_inputs: list[Any]
    max_concurrency: int
    tolerated_failure_count: int | None
    tolerated_failure_percentage: float | None


class QueryLanguage(Protocol):
    """How a state's fields are evaluated: JSONPath or JSONata.

    Every method gets a Scope whose input is the state's raw input; the runtime emits the
    events and runs tasks, branches and iterations around these calls.
    """

    def pass_output(self, state: State, scope: Scope) -> tuple[Any, Assigned]: ...

    def succeed_output(self, state: State, scope: Scope) -> Any: ...

    def fail_fields(self, state: State, scope: Scope) -> tuple[str | None, str | None]: ...

    def choose(self, state: State, scope: Scope) -> tuple[Any, str | None, Assigned]:
        """(output, next state or None when no rule matched and there is no Default, assigned)."""
        ...

    def wait(self, state: State, scope: Scope, now: float) -> tuple[float, Any, Assigned]:
        """(seconds to wait, output, assigned)."""
        ...

    def task_input(self, state: State, scope: Scope) -> TaskInput: ...

    def branch_input(self, state: State, scope: Scope) -> Any: ...

    def map_input(self, state: State, scope: Scope) -> MapInput: ...

    def result_output(self, state: State, scope: Scope, result: Any) -> tuple[Any, Assigned]:
        """Output and assigned variables of a Task, Parallel or Map from its result."""
        ...

    def catch_output(
        self, state: State, scope: Scope, catcher: Catcher, error_output: dict[str, Any]
    ) -> tuple[Any, Assigned]: ...


class Machine:
    """A compiled (sub-)machine: the top level, a Parallel branch or a Map processor."""

    __slots__ = ("definition", "query_language", "start_at", "states", "timeout_seconds")

    def __init__(self) -> None:
        self.start_at = ""
        self.states: dict[str, State] = {}
        self.query_language = JSONPATH
        self.timeout_seconds: int | None = None
        self.definition: dict[str, Any] = {}


class State:
    """Compiled state. Attributes not relevant to a type stay at their defaults."""

    queries: QueryLanguage  # set by the compiler from the state's query language

    def __init__(self, name: str, spec: dict[str, Any], query_language: str) -> None:
        self.name = name
        self.type: str = spec.get("Type", "")
        self.spec = spec
        self.query_language = query_language
        self.next: str | None = spec.get("Next")
        self.retriers: list[Retrier] = []
        self.catchers: list[Catcher] = []
        # JSONPath fields.
        self.input_path: OptionalPath = MISSING
        self.output_path: OptionalPath = MISSING
        self.result_path: OptionalPath = MISSING
        self.parameters: Template | None = None
        self.result_selector: Template | None = None
        self.item_selector: Template | None = None
        self.assign: Template | None = None
        self.result: Any = spec.get("Result", MISSING)
        self.credentials: Template | None = None
        self.choices: list[ChoiceRule] = []
        # JSONata fields: field name -> compiled tree, and the state's Assign.
        self.jsonata_fields: dict[str, ExpressionTree] = {}
        self.jsonata_assign: ExpressionTree | None = None
        self.jsonata_choices: list[JsonataChoiceRule] = []
        # Task.
        self.resource: str = spec.get("Resource", "")
        self.resource_kind = ResourceKind(False, "unknown", self.resource, None)
        self.timeout_seconds: int | None = None
        self.timeout_seconds_path: JsonPath | None = None
        self.heartbeat_seconds: int | None = None
        self.heartbeat_seconds_path: JsonPath | None = None
        # Choice.
        self.default: str | None = spec.get("Default")
        # Wait.
        self.wait_seconds: int | None = None
        self.wait_timestamp: _dt.datetime | None = None
        self.seconds_path: JsonPath | None = None
        self.timestamp_path: JsonPath | None = None
        # Fail.
        self.error: str | None = None
        self.cause: str | None = None
        self.error_path: Evaluator | None = None
        self.cause_path: Evaluator | None = None
        # Parallel and Map.
        self.branches: list[Machine] = []
        self.processor: Machine | None = None
        self.distributed = False
        self.items_path: OptionalPath = MISSING
        self.max_concurrency: int = 0
        self.max_concurrency_path: JsonPath | None = None
        self.tolerated_failure_count: int | None = None
        self.tolerated_failure_count_path: JsonPath | None = None
        self.tolerated_failure_percentage: float | None = None
        self.tolerated_failure_percentage_path: JsonPath | None = None

    def __repr__(self) -> str:
        return f"<{self.type} state {self.name!r}>"


def iter_states(machine: Machine) -> Iterator[State]:
    """Every state, nested ones included."""
    for state in machine.states.values():
        yield state
        for branch in state.branches:
            yield from iter_states(branch)
        if state.processor is not None:
            yield from iter_states(state.processor)
