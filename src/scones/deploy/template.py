"""``scones deploy aws --emit-template DIR``: the same deployment as an AWS SAM template.

Writes ``template.yaml`` with the artifacts it names (the three function zips, the raw state
machine definition whose placeholders SAM's ``DefinitionSubstitutions`` fill, the model
tarball). Account, region and partition are CloudFormation pseudo parameters, so the template
suits any account; no AWS call is made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scones.deploy.artifacts import function_zips, model_tarball
from scones.deploy.desired import (
    INLINE_POLICY_NAME,
    LAMBDA_MEMORY_MB,
    LAMBDA_RUNTIME,
    LAMBDA_TIMEOUT_S,
    Deployment,
)
from scones.deploy.errors import DeployInputError
from scones.deploy.options import TAG_KEY, DeployOptions, check_options
from scones.functions.packaging import FUNCTIONS
from scones.store import ObjectStore
from scones.workflow.definitions import PLACEHOLDERS, definition_text

TEMPLATE_FILE = "template.yaml"
DEFINITION_FILE = "statemachine.asl.json"
# CloudFormation pseudo parameters in place of the account, region and partition.
ACCOUNT, REGION, PARTITION = "${AWS::AccountId}", "${AWS::Region}", "${AWS::Partition}"


@dataclass(frozen=True)
class EmittedTemplate:
    directory: Path
    template: Path
    files: list[Path]
    model_key: str


def _logical_id(module: str) -> str:
    return "".join(part.title() for part in module.split("_")) + "Function"


def _sub(value: Any) -> Any:
    """Strings that hold a pseudo parameter become ``Fn::Sub``; everything else as is."""
    if isinstance(value, str) and "${AWS::" in value:
        return {"Fn::Sub": value}
    if isinstance(value, dict):
        return {key: _sub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_sub(item) for item in value]
    return value


def _role(d: Deployment, kind: str) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": d.role_name(kind),
            "AssumeRolePolicyDocument": d.trust_policy(kind),
            "Policies": [{"PolicyName": INLINE_POLICY_NAME, "PolicyDocument": d.role_policy(kind)}],
            "Tags": [{"Key": TAG_KEY, "Value": d.name}],
        },
    }


def _role_arn(d: Deployment, kind: str) -> Any:
    if kind in d.options.role_arns:
        return d.options.role_arns[kind]
    return {"Fn::GetAtt": [f"{kind.title()}Role", "Arn"]}


def build_template(d: Deployment, zip_paths: dict[str, str]) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for kind in d.created_roles:
        resources[f"{kind.title()}Role"] = _role(d, kind)
    tags = [{"Key": TAG_KEY, "Value": d.name}]
    model_spec = d.model_spec()
    model_spec["PrimaryContainer"]["Image"] = {"Ref": "ImageUri"}
    model_spec["PrimaryContainer"]["ModelDataUrl"] = {"Ref": "ModelDataUrl"}
    model_spec["ExecutionRoleArn"] = _role_arn(d, "sagemaker")
    resources["Model"] = {
        "Type": "AWS::SageMaker::Model",
        "Properties": {**model_spec, "Tags": tags},
    }
    config = d.endpoint_config_spec()
    config["ProductionVariants"][0]["ModelName"] = {"Fn::GetAtt": ["Model", "ModelName"]}
    resources["EndpointConfig"] = {
        "Type": "AWS::SageMaker::EndpointConfig",
        "Properties": {**config, "Tags": tags},
    }
    resources["Endpoint"] = {
        "Type": "AWS::SageMaker::Endpoint",
        "Properties": {
            "EndpointName": d.endpoint_name,
            "EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]},
            "Tags": tags,
        },
    }
    for module in FUNCTIONS:
        environment = d.function_environment(module)
        if module == "filter_inferences":
            environment = {"THRESHOLD": {"Ref": "Threshold"}}  # type: ignore[dict-item]
        properties: dict[str, Any] = {
            "FunctionName": d.function_name(module),
            "CodeUri": zip_paths[module],
            "Handler": d.zips[module].handler,
            "Runtime": LAMBDA_RUNTIME,
            "Timeout": LAMBDA_TIMEOUT_S[module],
            "MemorySize": LAMBDA_MEMORY_MB,
            "Role": _role_arn(d, "lambda"),
            "Tags": {TAG_KEY: d.name},
        }
        if environment:
            properties["Environment"] = {"Variables": environment}
        resources[_logical_id(module)] = {
            "Type": "AWS::Serverless::Function",
            "Properties": properties,
        }
    resources["StateMachine"] = {
        "Type": "AWS::Serverless::StateMachine",
        "Properties": {
            "Name": d.state_machine_name,
            "Type": "STANDARD",
            "DefinitionUri": DEFINITION_FILE,
            "DefinitionSubstitutions": {
                placeholder: {"Fn::GetAtt": [_logical_id(module), "Arn"]}
                for placeholder, module in PLACEHOLDERS.items()
            },
            "Role": _role_arn(d, "states"),
            "Tags": {TAG_KEY: d.name},
        },
    }
    if d.options.trigger:
        target = d.rule_target()
        target["Arn"] = {"Ref": "StateMachine"}
        target["RoleArn"] = _role_arn(d, "events")
        resources["TriggerRule"] = {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": d.rule_name,
                "Description": f"scones deployment {d.name}: start the state machine",
                "EventPattern": d.event_pattern(),
                "State": "ENABLED",
                "Targets": [target],
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"scones deployment {d.name}: SageMaker endpoint, three Lambda "
        "functions, the Step Functions state machine and its S3 trigger.",
        "Parameters": {
            "ImageUri": {
                "Type": "String",
                "Default": d.image.uri,
                "Description": "The serving image in ECR (docker/Dockerfile).",
            },
            "ModelDataUrl": {
                "Type": "String",
                "Default": d.model_data_url,
                "Description": "Where model.tar.gz is: copy it there before `sam deploy`.",
            },
            "Threshold": {
                "Type": "String",
                "Default": f"{d.options.threshold:g}",
                "Description": "Confidence a prediction needs to be routed.",
            },
        },
        "Resources": _sub(resources),
        "Outputs": {
            "StateMachineArn": {"Value": {"Ref": "StateMachine"}},
            "EndpointName": {"Value": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}},
        },
    }


def emit_template(
    options: DeployOptions, out_dir: Path, *, store: ObjectStore, cache_dir: Path
) -> EmittedTemplate:
    """Write ``template.yaml`` and its artifacts into ``out_dir`` (created if missing)."""
    import yaml

    image = check_options(options)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DeployInputError(f"--emit-template {str(out_dir)!r} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    from scones.settings import get_settings

    model = model_tarball(
        options.model,
        store=store,
        default_name=get_settings().model_name,
        cache_dir=cache_dir,
        work_dir=out_dir,
        s3_endpoint_url=options.s3_endpoint_url,
    )
    zips = function_zips(out_dir)
    anywhere = replace(options, region=REGION)  # the stack's own region
    d = Deployment(anywhere, image, ACCOUNT, PARTITION, model, zips)
    zip_paths = {module: f"functions/{zips[module].path.name}" for module in FUNCTIONS}
    (out_dir / DEFINITION_FILE).write_text(definition_text("single"), "utf-8")
    template = out_dir / TEMPLATE_FILE
    text = yaml.safe_dump(build_template(d, zip_paths), sort_keys=False, width=100)
    template.write_text(text, "utf-8")
    files = [template, out_dir / DEFINITION_FILE, model.path, *(z.path for z in zips.values())]
    return EmittedTemplate(out_dir, template, files, d.model_key)
