"""``scones destroy aws``: remove what a deployment created, found by manifest and by tag.

Data (images, the registry) is never touched. The uploaded artifacts and the endpoint's
captured traffic stay unless ``purge_artifacts``. Only resources that still exist are
planned, so a second destroy is an empty plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scones.deploy import apply as applying
from scones.deploy.aws import Aws, aws_errors, find
from scones.deploy.desired import ROLE_KINDS, manifest_key
from scones.deploy.manifest import Manifest, read_manifest
from scones.deploy.options import (
    DEFAULT_NAME,
    DEFAULT_PREFIX,
    TAG_KEY,
    check_name,
)
from scones.deploy.plan import ApiCall, Change, Plan, Resource
from scones.deploy.planner import bucket_notifications, delete_rule_change

# Delete in this order: what triggers first, what is used by others last.
ORDER = (
    "events-rule",
    "state-machine",
    "lambda-function",
    "sagemaker-endpoint",
    "sagemaker-endpoint-config",
    "sagemaker-model",
    "iam-role",
    "s3-eventbridge",
    "s3-object",
    "s3-capture",
)


@dataclass(frozen=True)
class DestroyOptions:
    bucket: str
    region: str
    name: str = DEFAULT_NAME
    prefix: str = DEFAULT_PREFIX
    purge_artifacts: bool = False
    endpoint_url: str | None = None
    s3_endpoint_url: str | None = None


@dataclass
class DestroyResult:
    plan: Plan
    applied: bool
    manifest_uri: str

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "manifest": self.manifest_uri, **self.plan.as_dict()}


def _tagged(aws: Aws, name: str) -> list[Resource]:
    """Resources carrying this deployment's tag (the tagging API, and IAM's own)."""
    found: list[Resource] = []
    tagging = aws.client("resourcegroupstaggingapi")
    filters = [{"Key": TAG_KEY, "Values": [name]}]
    with aws_errors("finding the deployment's tagged resources"):
        for page in tagging.get_paginator("get_resources").paginate(TagFilters=filters):
            for item in page.get("ResourceTagMappingList", []):
                resource = _resource_of_arn(item["ResourceARN"])
                if resource is not None:
                    found.append(resource)
    iam = aws.client("iam")
    for kind in ROLE_KINDS:
        role_name = f"{name}-{kind}"
        tags = find(iam.list_role_tags, RoleName=role_name)
        if tags and {"Key": TAG_KEY, "Value": name} in tags.get("Tags", []):
            found.append(Resource("iam-role", role_name, ""))
    return found


def _resource_of_arn(arn: str) -> Resource | None:
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return None
    service, rest = parts[2], parts[5]
    if service == "lambda" and rest.startswith("function:"):
        return Resource("lambda-function", rest.split(":")[1], arn)
    if service == "states" and rest.startswith("stateMachine:"):
        return Resource("state-machine", rest.split(":")[1], arn)
    if service == "events" and rest.startswith("rule/"):
        return Resource("events-rule", rest.split("/", 1)[1], arn)
    if service == "sagemaker":
        kind, _, name = rest.partition("/")
        kinds = {
            "model": "sagemaker-model",
            "endpoint-config": "sagemaker-endpoint-config",
            "endpoint": "sagemaker-endpoint",
        }
        if kind in kinds:
            return Resource(kinds[kind], name, arn)
    return None


def _delete_change(aws: Aws, resource: Resource, bucket: str) -> Change | None:
    """The calls that remove ``resource``, or None when it is already gone."""
    kind, name = resource.kind, resource.name
    reason = "created by this deployment"
    if kind == "events-rule":
        if find(aws.client("events").describe_rule, Name=name) is None:
            return None
        return delete_rule_change(aws, resource, reason)
    if kind == "state-machine":
        sfn = aws.client("stepfunctions")
        if find(sfn.describe_state_machine, stateMachineArn=resource.arn) is None:
            return None
        call = ApiCall("stepfunctions", "delete_state_machine", {"stateMachineArn": resource.arn})
    elif kind == "lambda-function":
        if find(aws.client("lambda").get_function, FunctionName=name) is None:
            return None
        call = ApiCall("lambda", "delete_function", {"FunctionName": name})
    elif kind.startswith("sagemaker-"):
        what = {
            "sagemaker-endpoint": ("endpoint", "EndpointName"),
            "sagemaker-endpoint-config": ("endpoint_config", "EndpointConfigName"),
            "sagemaker-model": ("model", "ModelName"),
        }[kind]
        client = aws.client("sagemaker")
        if find(getattr(client, f"describe_{what[0]}"), **{what[1]: name}) is None:
            return None
        call = ApiCall("sagemaker", f"delete_{what[0]}", {what[1]: name})
    elif kind == "iam-role":
        return _delete_role_change(aws, resource, reason)
    elif kind == "s3-eventbridge":
        # Only the manifest names this; moto does not report EventBridgeConfiguration.
        notifications = bucket_notifications(aws, bucket)
        rest = {k: v for k, v in notifications.items() if k != "EventBridgeConfiguration"}
        call = ApiCall(
            "s3",
            "put_bucket_notification_configuration",
            {"Bucket": bucket, "NotificationConfiguration": rest},
        )
        reason = "switched on by this deployment; other notifications kept"
    elif kind == "s3-object":
        if find(aws.client("s3").head_object, Bucket=bucket, Key=name) is None:
            return None
        call = ApiCall("s3", "delete_object", {"Bucket": bucket, "Key": name})
        reason = "uploaded by this deployment (--purge-artifacts)"
    else:
        return None
    return Change("delete", resource, reason, (call,))


def _delete_role_change(aws: Aws, resource: Resource, reason: str) -> Change | None:
    iam = aws.client("iam")
    if find(iam.get_role, RoleName=resource.name) is None:
        return None
    with aws_errors(f"listing the policies of role {resource.name}"):
        inline = iam.list_role_policies(RoleName=resource.name).get("PolicyNames", [])
        attached = iam.list_attached_role_policies(RoleName=resource.name).get(
            "AttachedPolicies", []
        )
    calls = [
        ApiCall("iam", "delete_role_policy", {"RoleName": resource.name, "PolicyName": policy})
        for policy in inline
    ]
    calls += [
        ApiCall(
            "iam",
            "detach_role_policy",
            {"RoleName": resource.name, "PolicyArn": policy["PolicyArn"]},
        )
        for policy in attached
    ]
    calls.append(ApiCall("iam", "delete_role", {"RoleName": resource.name}))
    return Change("delete", resource, reason, tuple(calls))


def _capture_changes(aws: Aws, bucket: str, prefix: str) -> list[Change]:
    """Delete the captured traffic under ``prefix``, a thousand objects per call."""
    keys: list[str] = []
    with aws_errors(f"listing s3://{bucket}/{prefix}"):
        for page in (
            aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        ):
            keys.extend(item["Key"] for item in page.get("Contents", []))
    changes = []
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        call = ApiCall(
            "s3",
            "delete_objects",
            {"Bucket": bucket, "Delete": {"Objects": [{"Key": k} for k in batch], "Quiet": True}},
        )
        resource = Resource("s3-capture", f"{prefix}({len(batch)} objects)", "")
        changes.append(Change("delete", resource, "captured traffic (--purge-artifacts)", (call,)))
    return changes


def plan_destroy(aws: Aws, options: DestroyOptions, manifest: Manifest | None) -> Plan:
    wanted: dict[tuple[str, str], Resource] = {}
    for resource in [*(manifest.resources if manifest else []), *_tagged(aws, options.name)]:
        key = (resource.kind, resource.name)
        if key not in wanted or (resource.arn and not wanted[key].arn):
            wanted[key] = resource
    plan = Plan()
    for kind in ORDER:
        if kind == "s3-object" and not options.purge_artifacts:
            continue
        for (resource_kind, _), resource in sorted(wanted.items()):
            if resource_kind == kind:
                plan.add(_delete_change(aws, resource, options.bucket))
    if options.purge_artifacts and manifest is not None:
        capture = manifest.data.get("capture_uri")
        endpoint = manifest.data.get("endpoint_name")
        if isinstance(capture, str) and isinstance(endpoint, str):
            prefix = capture.removeprefix(f"s3://{options.bucket}/").rstrip("/")
            plan.changes.extend(_capture_changes(aws, options.bucket, f"{prefix}/{endpoint}/"))
    return plan


def destroy(
    options: DestroyOptions, *, plan_only: bool = False, aws: Aws | None = None
) -> DestroyResult:
    """Remove the deployment's resources; returns what was (or would be) removed."""
    check_name("--name", options.name)
    aws = aws or Aws(options.region, options.endpoint_url, options.s3_endpoint_url)
    key = manifest_key(options.prefix.strip("/"), options.name)
    manifest = read_manifest(aws, options.bucket, key)
    plan = plan_destroy(aws, options, manifest)
    uri = f"s3://{options.bucket}/{key}"
    if plan_only or plan.empty:
        return DestroyResult(plan, False, uri)
    if manifest is not None:
        manifest.update(status="destroying")
        manifest.write(aws)

    def forget(change: Change) -> None:
        if manifest is not None:
            manifest.forget(change.resource)
            manifest.write(aws)

    applying.apply_plan(aws, plan, forget)
    if manifest is not None:
        if not options.purge_artifacts and any(r.kind == "s3-object" for r in manifest.resources):
            # Kept artifacts stay listed, so a later --purge-artifacts still finds them.
            manifest.update(status="destroyed")
            manifest.write(aws)
        else:
            manifest.delete(aws)
    return DestroyResult(plan, True, uri)
