"""What a deployment should look like: names, keys, ARNs, IAM policies, specifications.

Pure functions of the options, the account and the local artifacts: no AWS call here. Names
that change with content carry a hash of it, so "does it exist" is "is it the same".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from scones.deploy.artifacts import FunctionZip, ModelTarball
from scones.deploy.options import TAG_KEY, VARIANT_NAME, DeployOptions, EcrImage
from scones.functions.packaging import FUNCTIONS
from scones.store import join_key
from scones.workflow.definitions import PLACEHOLDERS, definition_text, fill_placeholders

ROLE_KINDS = ("sagemaker", "lambda", "states", "events")
SERVICE_PRINCIPALS = {
    "sagemaker": "sagemaker.amazonaws.com",
    "lambda": "lambda.amazonaws.com",
    "states": "states.amazonaws.com",
    "events": "events.amazonaws.com",
}
INLINE_POLICY_NAME = "scones-deployment"
LAMBDA_RUNTIME = "python3.12"
LAMBDA_MEMORY_MB = 256
LAMBDA_TIMEOUT_S = {"serialize_image_data": 10, "classify_image": 30, "filter_inferences": 10}
MANIFEST_FILE = "deployment.json"


def short_hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Deployment:
    """The deployment's target state, for one account and region."""

    options: DeployOptions
    image: EcrImage
    account: str
    partition: str
    model: ModelTarball
    zips: dict[str, FunctionZip]

    # --- names, keys and ARNs ----------------------------------------------------------

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def region(self) -> str:
        return self.options.region

    @property
    def bucket(self) -> str:
        return self.options.bucket

    def key(self, *parts: str) -> str:
        return join_key(self.options.key_prefix, *parts)

    def s3_arn(self, key_pattern: str) -> str:
        return f"arn:{self.partition}:s3:::{self.bucket}/{key_pattern}"

    def arn(self, service: str, resource: str) -> str:
        region = "" if service == "iam" else self.region
        return f"arn:{self.partition}:{service}:{region}:{self.account}:{resource}"

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.name}

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.options.key_prefix, self.name)

    @property
    def model_key(self) -> str:
        return self.key("models", self.model.model_name, self.model.version, "model.tar.gz")

    @property
    def model_data_url(self) -> str:
        return f"s3://{self.bucket}/{self.model_key}"

    def zip_key(self, module: str) -> str:
        return self.key("functions", module, f"{self.zips[module].sha256_hex}.zip")

    @property
    def capture_prefix(self) -> str:
        return self.key("data_capture")

    def role_name(self, kind: str) -> str:
        return f"{self.name}-{kind}"

    def role_arn(self, kind: str) -> str:
        return self.options.role_arns.get(kind) or self.arn("iam", f"role/{self.role_name(kind)}")

    def function_name(self, module: str) -> str:
        return f"{self.name}-{module.replace('_', '-')}"

    def function_arn(self, module: str) -> str:
        return self.arn("lambda", f"function:{self.function_name(module)}")

    @property
    def state_machine_name(self) -> str:
        return f"{self.name}-classify-image"

    @property
    def state_machine_arn(self) -> str:
        return self.arn("states", f"stateMachine:{self.state_machine_name}")

    @property
    def endpoint_name(self) -> str:
        return self.options.endpoint

    @property
    def endpoint_arn(self) -> str:
        # SageMaker writes names lower-case in ARNs.
        return self.arn("sagemaker", f"endpoint/{self.endpoint_name.lower()}")

    @property
    def rule_name(self) -> str:
        return f"{self.name}-trigger"

    @property
    def rule_arn(self) -> str:
        return self.arn("events", f"rule/{self.rule_name}")

    @property
    def trigger_key_prefix(self) -> str:
        return self.key(self.options.trigger_prefix) + "/"

    # --- IAM --------------------------------------------------------------------------

    @staticmethod
    def trust_policy(kind: str) -> dict[str, Any]:
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": SERVICE_PRINCIPALS[kind]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }

    def role_policy(self, kind: str) -> dict[str, Any]:
        """The inline policy of each role this deployment creates: the least it needs."""
        log_group = "log-group:/aws/{}/" + self.name + "*"
        statements: list[dict[str, Any]]
        if kind == "sagemaker":
            repository = self.arn("ecr", f"repository/{self.image.repository}").replace(
                f":{self.account}:", f":{self.image.account}:"
            )
            statements = [
                _allow(["s3:GetObject"], [self.s3_arn(self.key("models") + "/*")]),
                _allow(["s3:PutObject"], [self.s3_arn(self.capture_prefix + "/*")]),
                _allow(["ecr:GetAuthorizationToken"], ["*"]),
                _allow(
                    [
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                    ],
                    [repository],
                ),
                _allow(
                    ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                    [self.arn("logs", "log-group:/aws/sagemaker/*")],
                ),
                _allow(["cloudwatch:PutMetricData"], ["*"]),
            ]
        elif kind == "lambda":
            statements = [
                _allow(["s3:GetObject"], [self.s3_arn(self.key("*") or "*")]),
                _allow(["sagemaker:InvokeEndpoint"], [self.endpoint_arn]),
                _allow(
                    ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                    [self.arn("logs", log_group.format("lambda") + ":*")],
                ),
            ]
        elif kind == "states":
            arns = [self.function_arn(module) for module in FUNCTIONS]
            statements = [_allow(["lambda:InvokeFunction"], arns + [f"{a}:*" for a in arns])]
        elif kind == "events":
            statements = [_allow(["states:StartExecution"], [self.state_machine_arn])]
        else:  # pragma: no cover - ROLE_KINDS is closed
            raise ValueError(kind)
        return {"Version": "2012-10-17", "Statement": statements}

    @property
    def created_roles(self) -> list[str]:
        """Role kinds this deployment creates (those not given as ARNs)."""
        return [
            kind
            for kind in ROLE_KINDS
            if kind not in self.options.role_arns and (kind != "events" or self.options.trigger)
        ]

    # --- SageMaker --------------------------------------------------------------------

    def model_spec(self) -> dict[str, Any]:
        return {
            "ExecutionRoleArn": self.role_arn("sagemaker"),
            "PrimaryContainer": {
                "Image": self.image.uri,
                "ModelDataUrl": self.model_data_url,
                "Environment": {"SCONES_ENDPOINT_NAME": self.endpoint_name},
            },
        }

    @property
    def sagemaker_model_name(self) -> str:
        return f"{self.name}-model-{short_hash([self.model_spec(), self.model.sha256])}"

    def endpoint_config_spec(self) -> dict[str, Any]:
        options = self.options
        spec: dict[str, Any] = {
            "ProductionVariants": [
                {
                    "VariantName": VARIANT_NAME,
                    "ModelName": self.sagemaker_model_name,
                    "InitialInstanceCount": options.instance_count,
                    "InstanceType": options.instance_type,
                    "InitialVariantWeight": 1.0,
                }
            ]
        }
        if options.capture:
            spec["DataCaptureConfig"] = {
                "EnableCapture": True,
                "InitialSamplingPercentage": options.capture_sampling,
                "DestinationS3Uri": f"s3://{self.bucket}/{self.capture_prefix}",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {
                    "JsonContentTypes": ["application/json"],
                },
            }
        return spec

    @property
    def endpoint_config_name(self) -> str:
        return f"{self.name}-config-{short_hash(self.endpoint_config_spec())}"

    # --- Lambda and Step Functions ----------------------------------------------------

    def function_environment(self, module: str) -> dict[str, str]:
        if module == "classify_image":
            return {
                "ENDPOINT_NAME": self.endpoint_name,
                "CLASS_NAMES": ",".join(self.model.card.class_names),
            }
        if module == "filter_inferences":
            return {"THRESHOLD": f"{self.options.threshold:g}"}
        return {}

    def function_config(self, module: str) -> dict[str, Any]:
        """The configuration UpdateFunctionConfiguration sets (and GetFunction reports)."""
        return {
            "Role": self.role_arn("lambda"),
            "Handler": self.zips[module].handler,
            "Runtime": LAMBDA_RUNTIME,
            "Timeout": LAMBDA_TIMEOUT_S[module],
            "MemorySize": LAMBDA_MEMORY_MB,
            "Environment": {"Variables": self.function_environment(module)},
        }

    def definition(self) -> str:
        arns = {
            placeholder: self.function_arn(module) for placeholder, module in PLACEHOLDERS.items()
        }
        return fill_placeholders(definition_text("single"), arns)

    # --- the trigger ------------------------------------------------------------------

    def event_pattern(self) -> dict[str, Any]:
        return {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": {"name": [self.bucket]},
                "object": {"key": [{"prefix": self.trigger_key_prefix}]},
            },
        }

    def rule_target(self) -> dict[str, Any]:
        # The serializer's event, built from the S3 event's bucket and key.
        return {
            "Id": "state-machine",
            "Arn": self.state_machine_arn,
            "RoleArn": self.role_arn("events"),
            "InputTransformer": {
                "InputPathsMap": {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"},
                "InputTemplate": '{"s3_bucket": <bucket>, "s3_key": <key>, "image_data": ""}',
            },
        }


def manifest_key(key_prefix: str, name: str) -> str:
    return join_key(key_prefix, "deploy", name, MANIFEST_FILE)


def _allow(actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}
