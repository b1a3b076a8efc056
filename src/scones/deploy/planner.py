"""Compare the desired deployment with what exists, resource by resource: the plan.

Only reads (describe/get/head). Each resource yields a create, an update of just what
differs, or nothing (it is kept, and recorded in the manifest).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote

from scones.deploy.aws import Aws, aws_errors, find
from scones.deploy.desired import INLINE_POLICY_NAME, Deployment
from scones.deploy.errors import DeployError
from scones.deploy.options import TAG_KEY
from scones.deploy.plan import ApiCall, Change, Plan, Resource
from scones.functions.packaging import FUNCTIONS

SHA_METADATA = "sha256"


def plan_deploy(aws: Aws, d: Deployment, recorded: Sequence[Resource] = ()) -> Plan:
    """Every change that makes the account match ``d``, in the order they must be made.

    ``recorded``: the manifest's resources (moto's GetBucketNotificationConfiguration omits
    EventBridgeConfiguration, so a recorded switch-on also counts as switched on).
    """
    plan = Plan()
    _plan_object(aws, d, plan, d.model_key, d.model.path, d.model.sha256, "model tarball")
    for module in FUNCTIONS:
        zip_ = d.zips[module]
        _plan_object(aws, d, plan, d.zip_key(module), zip_.path, zip_.sha256_hex, "function zip")
    for kind in d.created_roles:
        _plan_role(aws, d, plan, kind)
    _plan_sagemaker(aws, d, plan)
    for module in FUNCTIONS:
        _plan_function(aws, d, plan, module)
    _plan_state_machine(aws, d, plan)
    _plan_trigger(aws, d, plan, recorded)
    return plan


# --- S3 objects ---------------------------------------------------------------------------


def _object_sha256(aws: Aws, bucket: str, key: str, head: dict[str, Any]) -> str:
    recorded = head.get("Metadata", {}).get(SHA_METADATA)
    if recorded:
        return str(recorded)
    # Put there by someone else (e.g. the registry itself lives in this bucket): hash it.
    digest = hashlib.sha256()
    with aws_errors(f"reading s3://{bucket}/{key}"):
        body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plan_object(
    aws: Aws, d: Deployment, plan: Plan, key: str, path: Any, sha256: str, what: str
) -> None:
    resource = Resource("s3-object", key, f"arn:{d.partition}:s3:::{d.bucket}/{key}")
    head = find(aws.client("s3").head_object, Bucket=d.bucket, Key=key)
    if head is not None:
        if _object_sha256(aws, d.bucket, key, head) != sha256:
            raise DeployError(
                f"s3://{d.bucket}/{key} exists with other content than the {what} being "
                "deployed; refusing to overwrite it (registry versions never change)"
            )
        return  # present: not ours to record, unless an earlier deploy recorded it
    upload = ApiCall(
        "s3",
        "upload_file",
        {
            "Filename": str(path),
            "Bucket": d.bucket,
            "Key": key,
            "ExtraArgs": {
                "Metadata": {SHA_METADATA: sha256},
                "Tagging": f"{quote(TAG_KEY, safe='')}={quote(d.name, safe='')}",
            },
        },
    )
    plan.add(Change("create", resource, f"upload the {what}", (upload,)))


# --- IAM --------------------------------------------------------------------------------


def _policy(value: Any) -> Any:
    """A policy document as boto3 returns it (a dict, or URL-encoded JSON text)."""
    if isinstance(value, str):
        return json.loads(unquote(value))
    return value


def _plan_role(aws: Aws, d: Deployment, plan: Plan, kind: str) -> None:
    name = d.role_name(kind)
    resource = Resource("iam-role", name, d.role_arn(kind))
    iam = aws.client("iam")
    trust, inline = d.trust_policy(kind), d.role_policy(kind)
    put_policy = ApiCall(
        "iam",
        "put_role_policy",
        {"RoleName": name, "PolicyName": INLINE_POLICY_NAME, "PolicyDocument": json.dumps(inline)},
    )
    existing = find(iam.get_role, RoleName=name)
    if existing is None:
        create = ApiCall(
            "iam",
            "create_role",
            {
                "RoleName": name,
                "AssumeRolePolicyDocument": json.dumps(trust),
                "Description": f"scones deployment {d.name}: {kind}",
                "Tags": [{"Key": TAG_KEY, "Value": d.name}],
            },
        )
        plan.add(Change("create", resource, f"role for {kind}", (create, put_policy)))
        return
    calls = []
    if _policy(existing["Role"].get("AssumeRolePolicyDocument")) != trust:
        calls.append(
            ApiCall(
                "iam",
                "update_assume_role_policy",
                {"RoleName": name, "PolicyDocument": json.dumps(trust)},
            )
        )
    current = find(iam.get_role_policy, RoleName=name, PolicyName=INLINE_POLICY_NAME)
    if current is None or _policy(current.get("PolicyDocument")) != inline:
        calls.append(put_policy)
    if calls:
        plan.add(Change("update", resource, "policy differs", tuple(calls)))
    else:
        plan.keep(resource)


# --- SageMaker ---------------------------------------------------------------------------


def _tags(d: Deployment) -> list[dict[str, str]]:
    return [{"Key": TAG_KEY, "Value": d.name}]


def _plan_sagemaker(aws: Aws, d: Deployment, plan: Plan) -> None:
    sagemaker = aws.client("sagemaker")
    model_name = d.sagemaker_model_name
    model = Resource("sagemaker-model", model_name, d.arn("sagemaker", f"model/{model_name}"))
    if find(sagemaker.describe_model, ModelName=model_name) is None:
        params = {"ModelName": model_name, **d.model_spec(), "Tags": _tags(d)}
        call = ApiCall("sagemaker", "create_model", params)
        reason = f"model {d.model.model_name} version {d.model.version}"
        plan.add(Change("create", model, reason, (call,)))
    else:
        plan.keep(model)

    config_name = d.endpoint_config_name
    config = Resource(
        "sagemaker-endpoint-config",
        config_name,
        d.arn("sagemaker", f"endpoint-config/{config_name}"),
    )
    if find(sagemaker.describe_endpoint_config, EndpointConfigName=config_name) is None:
        spec = d.endpoint_config_spec()
        call = ApiCall(
            "sagemaker",
            "create_endpoint_config",
            {"EndpointConfigName": config_name, **spec, "Tags": _tags(d)},
        )
        capture = "with data capture" if "DataCaptureConfig" in spec else "without data capture"
        plan.add(Change("create", config, capture, (call,)))
    else:
        plan.keep(config)

    endpoint = Resource("sagemaker-endpoint", d.endpoint_name, d.endpoint_arn)
    existing = find(sagemaker.describe_endpoint, EndpointName=d.endpoint_name)
    if existing is None:
        call = ApiCall(
            "sagemaker",
            "create_endpoint",
            {"EndpointName": d.endpoint_name, "EndpointConfigName": config_name, "Tags": _tags(d)},
        )
        plan.add(Change("create", endpoint, f"serving {config_name}", (call,)))
    elif existing.get("EndpointConfigName") != config_name:
        call = ApiCall(
            "sagemaker",
            "update_endpoint",
            {"EndpointName": d.endpoint_name, "EndpointConfigName": config_name},
        )
        reason = f"in place: {existing.get('EndpointConfigName')} -> {config_name}"
        plan.add(Change("update", endpoint, reason, (call,)))
    else:
        plan.keep(endpoint)


# --- Lambda ----------------------------------------------------------------------------


def _config_differences(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    differences = []
    for field, value in wanted.items():
        have = current.get(field)
        if field == "Environment":
            have_vars = (have or {}).get("Variables", {}) or {}
            want_vars = value["Variables"]
            for name in sorted(set(have_vars) | set(want_vars)):
                if have_vars.get(name) != want_vars.get(name):
                    differences.append(f"{name} {have_vars.get(name)!r} -> {want_vars.get(name)!r}")
        elif have != value:
            differences.append(f"{field} {have!r} -> {value!r}")
    return differences


def _plan_function(aws: Aws, d: Deployment, plan: Plan, module: str) -> None:
    name = d.function_name(module)
    resource = Resource("lambda-function", name, d.function_arn(module))
    wanted = d.function_config(module)
    code = {"S3Bucket": d.bucket, "S3Key": d.zip_key(module)}
    existing = find(aws.client("lambda").get_function, FunctionName=name)
    if existing is None:
        call = ApiCall(
            "lambda",
            "create_function",
            {"FunctionName": name, "Code": code, **wanted, "Tags": d.tags},
        )
        plan.add(Change("create", resource, module, (call,), wait_for_function=name))
        return
    current = existing["Configuration"]
    calls, reasons = [], []
    if current.get("CodeSha256") != d.zips[module].code_sha256:
        calls.append(ApiCall("lambda", "update_function_code", {"FunctionName": name, **code}))
        reasons.append("CodeSha256 differs")
    differences = _config_differences(current, wanted)
    if differences:
        calls.append(
            ApiCall("lambda", "update_function_configuration", {"FunctionName": name, **wanted})
        )
        reasons.extend(differences)
    if calls:
        plan.add(Change("update", resource, "; ".join(reasons), tuple(calls), name))
    else:
        plan.keep(resource)


# --- Step Functions -----------------------------------------------------------------------


def _plan_state_machine(aws: Aws, d: Deployment, plan: Plan) -> None:
    arn = d.state_machine_arn
    resource = Resource("state-machine", d.state_machine_name, arn)
    definition = d.definition()
    role = d.role_arn("states")
    existing = find(aws.client("stepfunctions").describe_state_machine, stateMachineArn=arn)
    if existing is None:
        call = ApiCall(
            "stepfunctions",
            "create_state_machine",
            {
                "name": d.state_machine_name,
                "definition": definition,
                "roleArn": role,
                "type": "STANDARD",
                "tags": [{"key": TAG_KEY, "value": d.name}],
            },
        )
        plan.add(Change("create", resource, "from statemachine.asl.json", (call,)))
        return
    reasons = []
    if json.loads(existing["definition"]) != json.loads(definition):
        reasons.append("definition differs")
    if existing.get("roleArn") != role:
        reasons.append("role differs")
    if reasons:
        call = ApiCall(
            "stepfunctions",
            "update_state_machine",
            {"stateMachineArn": arn, "definition": definition, "roleArn": role},
        )
        plan.add(Change("update", resource, ", ".join(reasons), (call,)))
    else:
        plan.keep(resource)


# --- the trigger: S3 -> EventBridge -> Step Functions -------------------------------------


def bucket_notifications(aws: Aws, bucket: str) -> dict[str, Any]:
    with aws_errors(f"reading the notification configuration of bucket {bucket!r}"):
        current = aws.client("s3").get_bucket_notification_configuration(Bucket=bucket)
    return {key: value for key, value in current.items() if key != "ResponseMetadata"}


def _plan_trigger(aws: Aws, d: Deployment, plan: Plan, recorded: Sequence[Resource]) -> None:
    events = aws.client("events")
    rule = Resource("events-rule", d.rule_name, d.rule_arn)
    existing = find(events.describe_rule, Name=d.rule_name)
    if not d.options.trigger:
        if existing is not None:
            plan.add(delete_rule_change(aws, rule, "--no-trigger"))
        return
    notifications = bucket_notifications(aws, d.bucket)
    switch = Resource("s3-eventbridge", d.bucket, f"arn:{d.partition}:s3:::{d.bucket}")
    if switch in recorded:
        plan.keep(switch)
    elif "EventBridgeConfiguration" not in notifications:
        # Keep every existing notification (queues, topics, functions); add EventBridge.
        call = ApiCall(
            "s3",
            "put_bucket_notification_configuration",
            {
                "Bucket": d.bucket,
                "NotificationConfiguration": {**notifications, "EventBridgeConfiguration": {}},
            },
        )
        plan.add(Change("create", switch, "send the bucket's events to EventBridge", (call,)))
    pattern = d.event_pattern()
    put_rule = ApiCall(
        "events",
        "put_rule",
        {
            "Name": d.rule_name,
            "EventPattern": json.dumps(pattern),
            "State": "ENABLED",
            "Description": f"scones deployment {d.name}: start the state machine",
            "Tags": _tags(d),
        },
    )
    target = d.rule_target()
    put_targets = ApiCall("events", "put_targets", {"Rule": d.rule_name, "Targets": [target]})
    if existing is None:
        reason = f"Object Created under s3://{d.bucket}/{d.trigger_key_prefix}"
        plan.add(Change("create", rule, reason, (put_rule, put_targets)))
        return
    calls = []
    if (
        json.loads(existing.get("EventPattern") or "{}") != pattern
        or existing.get("State") != "ENABLED"
    ):
        calls.append(
            ApiCall("events", "put_rule", {k: v for k, v in put_rule.params.items() if k != "Tags"})
        )
    with aws_errors(f"listing the targets of rule {d.rule_name}"):
        targets = events.list_targets_by_rule(Rule=d.rule_name).get("Targets", [])
    if targets != [target]:
        stale = [t["Id"] for t in targets if t.get("Id") != target["Id"]]
        if stale:
            calls.append(ApiCall("events", "remove_targets", {"Rule": d.rule_name, "Ids": stale}))
        calls.append(put_targets)
    if calls:
        plan.add(Change("update", rule, "pattern or target differs", tuple(calls)))
    else:
        plan.keep(rule)


def delete_rule_change(aws: Aws, rule: Resource, reason: str) -> Change:
    with aws_errors(f"listing the targets of rule {rule.name}"):
        targets = aws.client("events").list_targets_by_rule(Rule=rule.name).get("Targets", [])
    calls = []
    if targets:
        ids = [target["Id"] for target in targets]
        calls.append(ApiCall("events", "remove_targets", {"Rule": rule.name, "Ids": ids}))
    calls.append(ApiCall("events", "delete_rule", {"Name": rule.name}))
    return Change("delete", rule, reason, tuple(calls))
