"""What an execution is run as (ExecutionConfig) and what it produced (Execution)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
ABORTED = "ABORTED"


@dataclass(frozen=True)
class ExecutionConfig:
    """Identity of the execution: account, region and names that show up in ARNs and $$."""

    account_id: str = "123456789012"
    region: str = "us-east-1"
    partition: str = "aws"
    state_machine_name: str = "StateMachine"
    role_arn: str | None = None
    state_machine_arn: str | None = None
    execution_arn: str | None = None


class Execution:
    """The outcome of one execution: status, output, error, cause and the history."""

    def __init__(self, name: str, arn: str, input: Any) -> None:
        self.name = name
        self.arn = arn
        self.input = input
        self.status = "RUNNING"
        self.output: Any = None
        self.output_json: str | None = None
        self.error: str | None = None
        self.cause: str | None = None
        self.history: list[dict[str, Any]] = []
        self.start_date: float = 0.0
        self.stop_date: float | None = None

    @property
    def event_types(self) -> list[str]:
        return [event["type"] for event in self.history]

    def __repr__(self) -> str:
        return f"<Execution {self.name} {self.status}>"
