"""A plan: typed changes, each the AWS API calls that make it, computed by reading what exists.

``--plan`` prints the changes; apply makes their calls in order. Because a change holds the
exact calls, a test can assert them (botocore's Stubber) where moto lacks an API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class ApiCall:
    service: str  # boto3 client name: "iam", "lambda", "sagemaker", ...
    operation: str  # the client method: "create_role", "update_endpoint", ...
    params: dict[str, Any]

    def describe(self) -> str:
        return f"{self.service}.{self.operation}"


@dataclass(frozen=True)
class Resource:
    """One resource a deployment owns, as the manifest records it."""

    kind: str  # "iam-role", "lambda-function", "sagemaker-endpoint", ...
    name: str
    arn: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "arn": self.arn}


@dataclass(frozen=True)
class Change:
    action: Action
    resource: Resource
    reason: str
    calls: tuple[ApiCall, ...]
    # Lambda functions must settle (State Active, no update in progress) before the next call.
    wait_for_function: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.resource.kind,
            "name": self.resource.name,
            "arn": self.resource.arn,
            "reason": self.reason,
            "calls": [call.describe() for call in self.calls],
        }

    def line(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        return f"{sign} {self.action} {self.resource.kind} {self.resource.name}: {self.reason}"


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    # What exists already and stays (recorded in the manifest too).
    unchanged: list[Resource] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes

    def add(self, change: Change | None) -> None:
        if change is not None:
            self.changes.append(change)

    def keep(self, resource: Resource) -> None:
        self.unchanged.append(resource)

    def calls(self) -> list[ApiCall]:
        return [call for change in self.changes for call in change.calls]

    def lines(self) -> list[str]:
        if self.empty:
            return ["no changes: everything is as planned"]
        return [change.line() for change in self.changes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": [change.as_dict() for change in self.changes],
            "unchanged": [resource.as_dict() for resource in self.unchanged],
        }
