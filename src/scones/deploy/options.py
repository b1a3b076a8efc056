"""What a deployment is asked for, and the checks that need no AWS call.

Every check names the flag and the value it refused, and runs before anything is created.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from scones.deploy.errors import DeployInputError
from scones.store import InvalidKeyError, validate_prefix

DEFAULT_NAME = "scones"
DEFAULT_PREFIX = "scones/"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_TRIGGER_PREFIX = "incoming/"
DEFAULT_MODEL_REF = "production"
DEFAULT_CAPTURE_SAMPLING = 100
VARIANT_NAME = "AllTraffic"  # as the local endpoint names its one variant
TAG_KEY = "scones:deployment"
# SageMaker names: letters, digits, hyphens; no leading/trailing hyphen. Lambda allows more,
# so a deployment name that suits SageMaker suits every service. Derived names add up to 24
# characters ("-serialize-image-data", "-config-<12 hex>"), and SageMaker stops at 63.
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_NAME_CHARS = 32
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>(:<tag>|@sha256:<digest>)
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))$"
)
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


@dataclass(frozen=True)
class EcrImage:
    uri: str
    account: str
    region: str
    repository: str
    tag: str | None
    digest: str | None


@dataclass(frozen=True)
class DeployOptions:
    """Everything ``scones deploy aws`` was asked for; see its --help for each field."""

    bucket: str
    image_uri: str
    region: str
    prefix: str = DEFAULT_PREFIX
    model: str = DEFAULT_MODEL_REF
    name: str = DEFAULT_NAME
    endpoint_name: str | None = None
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    capture: bool = True
    capture_sampling: int = DEFAULT_CAPTURE_SAMPLING
    threshold: float = 0.93
    trigger: bool = True
    trigger_prefix: str = DEFAULT_TRIGGER_PREFIX
    # role kind ("sagemaker", "lambda", "states", "events") -> an existing role's ARN
    role_arns: dict[str, str] = field(default_factory=dict)
    endpoint_url: str | None = None  # every AWS service (moto, LocalStack)
    s3_endpoint_url: str | None = None  # S3 alone (MinIO)

    @property
    def key_prefix(self) -> str:
        """The prefix without its trailing slash ('' for the bucket's root)."""
        return self.prefix.strip("/")

    @property
    def endpoint(self) -> str:
        return self.endpoint_name or f"{self.name}-endpoint"


def check_name(flag: str, value: str) -> str:
    if not SAGEMAKER_NAME.match(value) or len(value) > MAX_NAME_CHARS:
        raise DeployInputError(
            f"{flag} {value!r} is not a valid name: 1-{MAX_NAME_CHARS} letters, digits or "
            "hyphens, starting and ending with a letter or digit (SageMaker and Lambda rules)"
        )
    return value


def check_threshold(value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 1):
        raise DeployInputError(f"--threshold {value!r} is outside (0, 1]")
    return float(value)


def parse_ecr_image(uri: str) -> EcrImage:
    match = ECR_IMAGE.match(uri or "")
    if not match:
        raise DeployInputError(
            f"--image-uri {uri!r} is not an ECR image URI: "
            "<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> (or @sha256:<digest>)"
        )
    return EcrImage(
        uri,
        match["account"],
        match["region"],
        match["repository"],
        match["tag"],
        match["digest"],
    )


def _check_prefix(flag: str, value: str) -> None:
    try:
        validate_prefix(value.strip("/") + "/" if value.strip("/") else "")
    except InvalidKeyError as exc:
        raise DeployInputError(f"{flag} {value!r}: {exc}") from None


def check_options(options: DeployOptions) -> EcrImage:
    """Every check that needs no AWS call; returns the parsed image URI."""
    check_name("--name", options.name)
    if options.endpoint_name is not None and not SAGEMAKER_NAME.match(options.endpoint_name):
        raise DeployInputError(
            f"--endpoint-name {options.endpoint_name!r} is not a valid SageMaker name: 1-63 "
            "letters, digits or hyphens, starting and ending with a letter or digit"
        )
    check_threshold(options.threshold)
    if not REGION.match(options.region or ""):
        raise DeployInputError(f"--region {options.region!r} is not an AWS region name")
    if not options.bucket:
        raise DeployInputError("--bucket is empty: name an existing S3 bucket")
    _check_prefix("--prefix", options.prefix)
    _check_prefix("--trigger-prefix", options.trigger_prefix)
    if options.trigger and not options.trigger_prefix.strip("/"):
        raise DeployInputError("--trigger-prefix is empty: give one, or --no-trigger")
    if not INSTANCE_TYPE.match(options.instance_type):
        raise DeployInputError(
            f"--instance-type {options.instance_type!r} is not a SageMaker instance type "
            "(ml.<family>.<size>)"
        )
    if options.instance_count < 1:
        raise DeployInputError(f"--instance-count {options.instance_count} must be at least 1")
    if not 0 <= options.capture_sampling <= 100:
        raise DeployInputError(
            f"--capture-sampling {options.capture_sampling} must be a percentage, 0 to 100"
        )
    for kind, arn in options.role_arns.items():
        if not ROLE_ARN.match(arn):
            raise DeployInputError(f"--{kind}-role-arn {arn!r} is not an IAM role ARN")
    image = parse_ecr_image(options.image_uri)
    if image.region != options.region:
        raise DeployInputError(
            f"--image-uri {options.image_uri!r} is in region {image.region}, not --region "
            f"{options.region}: SageMaker pulls images from its own region"
        )
    return image
