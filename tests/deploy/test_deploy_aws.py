"""`scones deploy aws` against moto's server: what it creates, read back through AWS's APIs;
its plan; idempotency; a failure half-way; destroy."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace

import pytest
from botocore.stub import Stubber
from deploy_helpers import (  # noqa: F401
    EVERY_KIND,
    REGION,
    aws_account_fixture,
    deploy_now,
    deployed_fixture,
    names,
    register_tiny_model,
)

from scones.deploy import apply as applying
from scones.deploy.aws import Aws
from scones.deploy.destroy import DestroyOptions, destroy
from scones.deploy.errors import DeployError
from scones.deploy.options import TAG_KEY
from scones.functions.packaging import FUNCTIONS, package_functions
from scones.model.registry import artifact_key
from scones.store import open_store


def manifest_of(account) -> dict:
    body = account.client("s3").get_object(
        Bucket=account.bucket, Key=f"scones/deploy/{account.name}/deployment.json"
    )["Body"]
    return json.loads(body.read())


def tagged_arns(account) -> list[str]:
    tagging = account.client("resourcegroupstaggingapi")
    found = tagging.get_resources(TagFilters=[{"Key": TAG_KEY, "Values": [account.name]}])
    return [item["ResourceARN"] for item in found["ResourceTagMappingList"]]


def test_plan_on_a_fresh_account_lists_every_resource_and_changes_nothing(aws_account):
    result = deploy_now(aws_account, plan_only=True)
    assert not result.applied
    kinds = [change.resource.kind for change in result.plan.changes]
    assert set(kinds) == EVERY_KIND
    assert kinds.count("lambda-function") == 3 and kinds.count("iam-role") == 4
    assert kinds.count("s3-object") == 4  # the model tarball and three zips
    assert all(change.action == "create" for change in result.plan.changes)
    # Nothing was created: no object in the bucket, no function, no role, no manifest.
    listing = aws_account.client("s3").list_objects_v2(Bucket=aws_account.bucket)
    assert listing.get("KeyCount", 0) == 0
    assert names(aws_account, "lambda", "list_functions", "Functions", "FunctionName") == []
    assert tagged_arns(aws_account) == []


def test_deployed_resources_read_back_through_the_aws_apis(deployed):
    account, result = deployed
    assert result.applied
    sagemaker = account.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=f"{account.name}-endpoint")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == 100
    assert capture["DestinationS3Uri"] == f"s3://{account.bucket}/scones/data_capture"
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}

    # The model data object has the registry tarball's checksum.
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.m5.large" and variant["VariantName"] == "AllTraffic"
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Image"] == account.image_uri
    url = model["PrimaryContainer"]["ModelDataUrl"]
    assert url == f"s3://{account.bucket}/scones/models/vehicle-classifier/1/model.tar.gz"
    key = url.removeprefix(f"s3://{account.bucket}/")
    deployed_bytes = account.client("s3").get_object(Bucket=account.bucket, Key=key)["Body"]
    registry = open_store(str(account.store_dir)).get(artifact_key("vehicle-classifier", 1))
    assert hashlib.sha256(deployed_bytes.read()).digest() == hashlib.sha256(registry).digest()

    # Each function's CodeSha256 is the local zip's; environment from the card and settings.
    local = {p.module: p.path.read_bytes() for p in package_functions(account.cache_dir / "zips")}
    lam = account.client("lambda")
    for module in FUNCTIONS:
        name = f"{account.name}-{module.replace('_', '-')}"
        configuration = lam.get_function(FunctionName=name)["Configuration"]
        digest = base64.b64encode(hashlib.sha256(local[module]).digest()).decode()
        assert configuration["CodeSha256"] == digest, module
        assert configuration["Handler"] == f"{module}.handler"
    classify = lam.get_function_configuration(FunctionName=f"{account.name}-classify-image")
    assert classify["Environment"]["Variables"] == {
        "ENDPOINT_NAME": f"{account.name}-endpoint",
        "CLASS_NAMES": "bicycle,motorcycle",
    }
    flt = lam.get_function_configuration(FunctionName=f"{account.name}-filter-inferences")
    assert flt["Environment"]["Variables"] == {"THRESHOLD": "0.93"}

    # The state machine: the local definition, every placeholder filled with a deployed ARN.
    sfn = account.client("stepfunctions")
    arn = f"arn:aws:states:{REGION}:123456789012:stateMachine:{account.name}-classify-image"
    definition_text = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    assert "${" not in definition_text
    definition = json.loads(definition_text)
    functions = {
        state["Parameters"]["FunctionName"]
        for state in definition["States"].values()
        if state["Type"] == "Task"
    }
    assert functions == {
        f"arn:aws:lambda:{REGION}:123456789012:function:{account.name}-{m.replace('_', '-')}"
        for m in FUNCTIONS
    }

    # The trigger: Object Created under the prefix, to the state machine, serializer input.
    events = account.client("events")
    rule = events.describe_rule(Name=f"{account.name}-trigger")
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [account.bucket]},
            "object": {"key": [{"prefix": "scones/incoming/"}]},
        },
    }
    (target,) = events.list_targets_by_rule(Rule=f"{account.name}-trigger")["Targets"]
    assert target["Arn"] == arn
    assert target["RoleArn"].endswith(f":role/{account.name}-events")

    # Everything is tagged and recorded in the manifest.
    manifest = manifest_of(account)
    assert manifest["status"] == "deployed"
    assert {r["kind"] for r in manifest["resources"]} == EVERY_KIND
    tagged = tagged_arns(account)
    for recorded in manifest["resources"]:
        if recorded["kind"] in {"lambda-function", "state-machine", "sagemaker-endpoint"}:
            assert recorded["arn"] in tagged, recorded
    # moto's tagging API lists no EventBridge rules: ask EventBridge itself.
    rule_tags = events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]
    assert {"Key": TAG_KEY, "Value": account.name} in rule_tags
    roles = account.client("iam").list_role_tags(RoleName=f"{account.name}-lambda")["Tags"]
    assert {"Key": TAG_KEY, "Value": account.name} in roles


def test_inline_policies_are_scoped_to_the_deployment(deployed):
    account, _ = deployed
    iam = account.client("iam")
    document = iam.get_role_policy(
        RoleName=f"{account.name}-states", PolicyName="scones-deployment"
    )
    policy = document["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    (statement,) = policy["Statement"]
    assert statement["Action"] == ["lambda:InvokeFunction"]
    assert all(account.name in resource for resource in statement["Resource"])
    events = iam.get_role_policy(RoleName=f"{account.name}-events", PolicyName="scones-deployment")
    text = json.dumps(events["PolicyDocument"])
    assert "states:StartExecution" in text and f"{account.name}-classify-image" in text


def test_a_second_deploy_plans_nothing(deployed):
    account, _ = deployed
    again = deploy_now(account, plan_only=True)
    assert again.plan.empty, again.plan.lines()
    assert again.plan.lines() == ["no changes: everything is as planned"]


def test_a_new_threshold_updates_only_the_filter_configuration(deployed):
    account, _ = deployed
    plan = deploy_now(account, plan_only=True, threshold=0.5).plan
    (change,) = plan.changes
    assert change.action == "update"
    assert change.resource.name == f"{account.name}-filter-inferences"
    assert [call.operation for call in change.calls] == ["update_function_configuration"]
    assert change.calls[0].params["Environment"] == {"Variables": {"THRESHOLD": "0.5"}}
    assert "THRESHOLD '0.93' -> '0.5'" in change.reason


def test_a_new_model_version_replaces_model_and_config_and_updates_the_endpoint(deployed):
    account, _ = deployed
    # Version 2, promoted: later tests of this module name version 1 explicitly.
    register_tiny_model(account.store_dir, account.cache_dir / "v2")
    result = deploy_now(account, plan_only=True)
    changes = [(c.action, c.resource.kind) for c in result.plan.changes]
    assert changes == [
        ("create", "s3-object"),
        ("create", "sagemaker-model"),
        ("create", "sagemaker-endpoint-config"),
        ("update", "sagemaker-endpoint"),
    ]
    assert result.summary["model"]["version"] == "2"
    # moto has no UpdateEndpoint: assert the SageMaker calls apply makes with a Stubber.
    aws = Aws(REGION, account.endpoint_url)
    stubber = Stubber(aws.client("sagemaker"))
    for change in result.plan.changes[1:]:
        (call,) = change.calls
        answers = {
            "create_model": {"ModelArn": change.resource.arn},
            "create_endpoint_config": {"EndpointConfigArn": change.resource.arn},
            "update_endpoint": {"EndpointArn": change.resource.arn},
        }
        stubber.add_response(call.operation, answers[call.operation], call.params)
    update = result.plan.changes[-1].calls[0]
    assert update.params == {
        "EndpointName": f"{account.name}-endpoint",
        "EndpointConfigName": result.plan.changes[2].resource.name,
    }
    with stubber:
        applying.apply_plan(
            aws, replace(result.plan, changes=result.plan.changes[1:]), lambda _c: None
        )
    stubber.assert_no_pending_responses()


def test_a_deploy_that_fails_half_way_is_recorded_and_converges(aws_account, monkeypatch):
    real_invoke = applying.invoke

    def failing(aws, call, sleep=None):
        if call.operation == "create_state_machine":
            raise DeployError("create_state_machine failed: simulated outage")
        return real_invoke(aws, call)

    monkeypatch.setattr(applying, "invoke", failing)
    with pytest.raises(DeployError, match="simulated outage"):
        deploy_now(aws_account)
    manifest = manifest_of(aws_account)
    assert manifest["status"] == "deploying"
    recorded = {r["kind"] for r in manifest["resources"]}
    assert "lambda-function" in recorded and "sagemaker-endpoint" in recorded
    assert "state-machine" not in recorded and "events-rule" not in recorded

    monkeypatch.setattr(applying, "invoke", real_invoke)
    resumed = deploy_now(aws_account)
    assert [c.resource.kind for c in resumed.plan.changes] == [
        "state-machine",
        "s3-eventbridge",
        "events-rule",
    ]
    assert manifest_of(aws_account)["status"] == "deployed"
    assert deploy_now(aws_account, plan_only=True).plan.empty


def test_destroy_removes_everything_tagged_and_a_second_destroy_is_a_no_op(aws_account):
    deploy_now(aws_account)
    options = DestroyOptions(
        bucket=aws_account.bucket,
        region=REGION,
        name=aws_account.name,
        endpoint_url=aws_account.endpoint_url,
    )
    planned = destroy(options, plan_only=True)
    assert not planned.applied
    assert {c.resource.kind for c in planned.plan.changes} == EVERY_KIND - {"s3-object"}
    assert tagged_arns(aws_account)  # the plan changed nothing

    done = destroy(options)
    assert done.applied
    assert tagged_arns(aws_account) == []
    rules = aws_account.client("events").list_rules(NamePrefix=aws_account.name)["Rules"]
    assert rules == []
    assert names(aws_account, "iam", "list_roles", "Roles", "RoleName") == []
    assert names(aws_account, "lambda", "list_functions", "Functions", "FunctionName") == []
    for operation, items, field in [
        ("list_endpoints", "Endpoints", "EndpointName"),
        ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"),
        ("list_models", "Models", "ModelName"),
    ]:
        assert names(aws_account, "sagemaker", operation, items, field) == [], operation
    machines = names(aws_account, "stepfunctions", "list_state_machines", "stateMachines", "name")
    assert machines == []
    # Artifacts and data stay (without --purge-artifacts); the manifest still lists them.
    s3 = aws_account.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=aws_account.bucket)["Contents"]]
    assert "scones/models/vehicle-classifier/1/model.tar.gz" in keys
    assert manifest_of(aws_account)["status"] == "destroyed"

    again = destroy(options)
    assert not again.applied and again.plan.empty

    purged = destroy(replace(options, purge_artifacts=True))
    assert {c.resource.kind for c in purged.plan.changes} == {"s3-object"}
    assert s3.list_objects_v2(Bucket=aws_account.bucket).get("KeyCount", 0) == 0


def test_no_capture_plans_a_config_without_capture_and_an_endpoint_update(deployed):
    account, _ = deployed
    plan = deploy_now(account, plan_only=True, capture=False, model="1").plan
    assert [(c.action, c.resource.kind) for c in plan.changes] == [
        ("create", "sagemaker-endpoint-config"),
        ("update", "sagemaker-endpoint"),
    ]
    (create,) = plan.changes[0].calls
    assert "DataCaptureConfig" not in create.params
    assert plan.changes[0].reason == "without data capture"


def test_a_destroy_that_fails_half_way_finishes_when_run_again(aws_account, monkeypatch):
    deploy_now(aws_account)
    options = DestroyOptions(
        bucket=aws_account.bucket,
        region=REGION,
        name=aws_account.name,
        endpoint_url=aws_account.endpoint_url,
    )
    real_invoke = applying.invoke

    def failing(aws, call, sleep=None):
        if call.operation == "delete_endpoint":
            raise DeployError("delete_endpoint failed: simulated outage")
        return real_invoke(aws, call)

    monkeypatch.setattr(applying, "invoke", failing)
    with pytest.raises(DeployError, match="simulated outage"):
        destroy(options)
    left = {r["kind"] for r in manifest_of(aws_account)["resources"]}
    assert "sagemaker-endpoint" in left and "iam-role" in left
    assert "lambda-function" not in left and "state-machine" not in left

    monkeypatch.setattr(applying, "invoke", real_invoke)
    finished = destroy(options)
    assert finished.plan.changes[0].resource.kind == "sagemaker-endpoint"
    assert tagged_arns(aws_account) == []
    assert names(aws_account, "iam", "list_roles", "Roles", "RoleName") == []
