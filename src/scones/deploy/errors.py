"""Errors of a deployment: the CLI prints the message and exits non-zero."""

from __future__ import annotations

from scones.errors import SconesError, UsageError


class DeployError(SconesError):
    """AWS refused a call or a resource is in a state the deploy cannot change."""


class DeployInputError(UsageError):
    """A flag names something that cannot work (checked before anything is created)."""
