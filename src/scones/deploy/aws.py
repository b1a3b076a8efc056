"""boto3 clients for one account and region, with the endpoint overrides a test or a local
stack needs (moto, LocalStack, MinIO). Credentials come from boto3's usual chain and never
pass through this module's messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from scones.deploy.errors import DeployError, DeployInputError

# Error codes that mean "no such resource" across the services a deployment uses.
NOT_FOUND_CODES = frozenset(
    {
        "NoSuchEntity",
        "NoSuchKey",
        "NoSuchBucket",
        "404",
        "NotFound",
        "ResourceNotFoundException",
        "ResourceNotFound",
        "StateMachineDoesNotExist",
        "ValidationException",  # SageMaker's answer to Describe* of a missing name
        "ValidationError",
        "RepositoryNotFoundException",
        "ImageNotFoundException",
    }
)
# Anything that looks like an AWS secret or session token is cut out of messages we pass on.
_SECRETISH = re.compile(r"(?i)(secret|token|signature|credential)[^\s,;]*[=:]\s*[^\s,;]+")


def default_region() -> str:
    """The region boto3 would use (AWS_REGION, AWS_DEFAULT_REGION, the config file)."""
    import boto3

    region = boto3.session.Session().region_name
    if not region:
        raise DeployInputError("no --region given and none configured (AWS_DEFAULT_REGION)")
    return str(region)


def partition_for(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def is_not_found(exc: BaseException) -> bool:
    code = error_code(exc)
    if code in ("ValidationException", "ValidationError"):
        # SageMaker says "Could not find ..."; other validation errors are real errors.
        message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
        return "not find" in message.lower() or "not found" in message.lower()
    return code in NOT_FOUND_CODES


def safe_message(exc: BaseException) -> str:
    """An AWS error as one line, with anything credential-like removed."""
    return _SECRETISH.sub(r"\1=<redacted>", str(exc))


@dataclass
class Aws:
    """Clients for one region; created on first use so a plan makes only the calls it needs."""

    region: str
    endpoint_url: str | None = None
    s3_endpoint_url: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)
    _account: str | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            endpoint = self.s3_endpoint_url if service == "s3" else None
            endpoint = endpoint or self.endpoint_url
            self._clients[service] = boto3.client(
                service, region_name=self.region, endpoint_url=endpoint
            )
        return self._clients[service]

    @property
    def partition(self) -> str:
        return partition_for(self.region)

    @property
    def account(self) -> str:
        if self._account is None:
            with aws_errors("looking up the account (sts get-caller-identity)"):
                self._account = str(self.client("sts").get_caller_identity()["Account"])
        return self._account


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """botocore errors become a DeployError naming what was being done."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise DeployError(f"{doing}: {safe_message(exc)}") from None
    except BotoCoreError as exc:
        raise DeployError(f"{doing}: {safe_message(exc)}") from None


def find(call: Any, **params: Any) -> dict[str, Any] | None:
    """``call(**params)``, or None when AWS says the resource does not exist."""
    from botocore.exceptions import ClientError

    try:
        return dict(call(**params))
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise DeployError(f"{call.__name__}: {safe_message(exc)}") from None
