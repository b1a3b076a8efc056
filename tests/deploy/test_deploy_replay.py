"""Replay what was deployed: its definition and handlers (imported from the deployed zips,
with the deployed environment) on scones.asl, classify calling a real local endpoint of the
deployed model through the SageMaker Runtime path; the same definition on moto's own Step
Functions interpreter; and the trigger's pattern and input on moto's EventBridge."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import os
import tarfile
import time
import zipimport
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from deploy_helpers import ACCOUNT, REGION, aws_account_fixture, deploy_now, deployed_fixture  # noqa: F401
from typer.testing import CliRunner

from conftest import noise_png, solid_png
from scones.asl import Resources, execute
from scones.cli import app
from scones.deploy.run import AwsRunOptions, run_on_aws
from scones.functions.filter_inferences import DEFAULT_THRESHOLD
from serving.endpoint_fixtures import make_endpoint_fixture  # noqa: F401


@contextmanager
def environment(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def apply_input_transformer(transformer: dict[str, Any], event: dict[str, Any]) -> Any:
    """EventBridge's input transformer for a JSON template: each ``<name>`` becomes the JSON
    value at its path (strings quoted), per the EventBridge user guide."""
    text = transformer["InputTemplate"]
    for name, path in transformer["InputPathsMap"].items():
        value: Any = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        text = text.replace(f"<{name}>", json.dumps(value))
    return json.loads(text)


def deployed_handler(account, function_name: str, tmp: Path) -> Callable[[Any, Any], Any]:
    """The handler from the zip Lambda holds, run with the function's deployed environment."""
    lam = account.client("lambda")
    function = lam.get_function(FunctionName=function_name)
    configuration = function["Configuration"]
    key = urlsplit(function["Code"]["Location"]).path.lstrip("/")
    code = account.client("s3").get_object(Bucket=account.bucket, Key=key)["Body"].read()
    assert base64.b64encode(hashlib.sha256(code).digest()).decode() == configuration["CodeSha256"]
    path = tmp / f"{function_name}.zip"
    path.write_bytes(code)
    module_name = configuration["Handler"].rsplit(".", 1)[0]
    spec = zipimport.zipimporter(str(path)).find_spec(module_name)
    assert spec is not None and spec.loader is not None, f"{module_name} is not in {path}"
    module = importlib.util.module_from_spec(spec)  # not in sys.modules: this copy only
    spec.loader.exec_module(module)
    handler = module.handler
    env = dict(configuration.get("Environment", {}).get("Variables", {}))
    env["AWS_LAMBDA_FUNCTION_NAME"] = function_name  # as the Lambda runtime sets it

    def run(event: Any, context: Any) -> Any:
        with environment(env):
            return handler(event, context)

    return run


def test_replay_the_deployment_on_scones_asl_against_the_deployed_model(
    deployed, make_endpoint, tmp_path, monkeypatch
):
    account, result = deployed
    summary = result.summary
    # Serve the model downloaded from the deployed model data URL, under the endpoint's name.
    sagemaker = account.client("sagemaker")
    endpoint_name = summary["endpoint_name"]
    config_name = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    url = urlsplit(model["PrimaryContainer"]["ModelDataUrl"])
    tarball = account.client("s3").get_object(Bucket=url.netloc, Key=url.path.lstrip("/"))
    model_dir = tmp_path / "model"
    with tarfile.open(fileobj=io.BytesIO(tarball["Body"].read()), mode="r:gz") as archive:
        archive.extractall(model_dir, filter="data")
    # The local endpoint captures where the deployed DataCaptureConfig says SageMaker would.
    capture_uri = config["DataCaptureConfig"]["DestinationS3Uri"]
    endpoint = make_endpoint(model_dir, endpoint_name=endpoint_name, capture_uri=capture_uri)
    assert httpx.get(f"{endpoint.url}/info").json()["model_version"] == 1
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint.url)

    arn = summary["state_machine_arn"]
    definition = account.client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    resources = Resources(account_id=ACCOUNT, region=REGION)
    for function_arn in summary["function_arns"].values():
        name = function_arn.rsplit(":", 1)[1]
        resources.register_lambda(name, deployed_handler(account, name, tmp_path))

    s3 = account.client("s3")
    red, noise = "scones/test/red-bicycle.png", "scones/test/noise.png"
    s3.put_object(Bucket=account.bucket, Key=red, Body=solid_png((200, 30, 30)))
    s3.put_object(Bucket=account.bucket, Key=noise, Body=noise_png(3))

    routed = execute(
        json.loads(definition["definition"]),
        {"s3_bucket": account.bucket, "s3_key": red, "image_data": ""},
        resources,
    )
    assert routed.status == "SUCCEEDED", (routed.error, routed.cause)
    assert routed.output["s3_key"] == red
    assert routed.output["classes"] == ["bicycle", "motorcycle"]
    assert routed.output["inferences"][0] >= DEFAULT_THRESHOLD

    unsure = execute(
        json.loads(definition["definition"]),
        {"s3_bucket": account.bucket, "s3_key": noise, "image_data": ""},
        resources,
    )
    assert unsure.status == "FAILED"
    assert unsure.error == "ThresholdConfidenceNotMet"
    assert noise in unsure.cause

    # `scones monitor` reads that capture straight from s3://B/P/data_capture.
    endpoint.stop()  # flushes the capture
    report = CliRunner().invoke(
        app,
        [
            "monitor",
            "--capture-uri",
            capture_uri,
            "--endpoint-name",
            endpoint_name,
            "--out",
            str(tmp_path / "report"),
        ],
        catch_exceptions=False,
    )
    assert report.exit_code == 0, report.output
    assert "2 records, 2 predictions, 1 under 0.93" in report.stdout


@pytest.fixture
def moto_executes_state_machines(s3_server: str, monkeypatch: pytest.MonkeyPatch):
    """moto's Step Functions interpreter on, its Lambda without Docker (queued results).
    moto's configuration is process-wide: restored afterwards."""
    monkeypatch.setenv("MOTO_PORT", s3_server.rsplit(":", 1)[1])  # where the interpreter calls
    config_url = f"{s3_server}/moto-api/config"
    httpx.post(
        config_url,
        json={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}},
    ).raise_for_status()
    try:
        yield
    finally:
        httpx.post(
            config_url,
            json={
                "stepfunctions": {"execute_state_machine": False},
                "lambda": {"use_docker": True},
            },
        ).raise_for_status()


def test_the_deployed_definition_runs_on_motos_own_interpreter(
    moto_executes_state_machines, aws_account
):
    result = deploy_now(aws_account)  # created while moto executes (its other backend)
    key = "scones/incoming/red.png"
    image = base64.b64encode(solid_png((200, 30, 30))).decode()
    body = {"image_data": image, "s3_bucket": aws_account.bucket, "s3_key": key, "inferences": []}
    classified = body | {"inferences": [0.97, 0.03], "classes": ["bicycle", "motorcycle"]}
    results = [
        {"statusCode": 200, "body": body},  # serializeImageData
        {"statusCode": 200, "body": classified},  # classifyImage
        {"statusCode": 200, "body": classified},  # filterInferences
    ]
    httpx.post(
        f"{aws_account.endpoint_url}/moto-api/static/lambda-simple/response",
        json={"results": [json.dumps(r) for r in results], "region": REGION},
    ).raise_for_status()
    sfn = aws_account.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=result.summary["state_machine_arn"],
        name="moto-interprets",
        input=json.dumps({"s3_bucket": aws_account.bucket, "s3_key": key, "image_data": ""}),
    )["executionArn"]
    deadline = time.monotonic() + 60
    while (status := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "moto's execution never finished"
        time.sleep(0.05)
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["output"]) == classified
    history = sfn.get_execution_history(executionArn=execution)["events"]
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in history if "StateEntered" in e["type"]
    ]
    assert entered == ["SerializeImageData", "ClassifyImage", "FilterInferences"]
    scheduled = [
        json.loads(e["taskScheduledEventDetails"]["parameters"])["FunctionName"]
        for e in history
        if e["type"] == "TaskScheduled"
    ]
    assert scheduled == list(result.summary["function_arns"].values())

    # `scones run --on aws` starts the deployed state machine and reports as a local run.
    httpx.post(
        f"{aws_account.endpoint_url}/moto-api/static/lambda-simple/response",
        json={"results": [json.dumps(r) for r in results], "region": REGION},
    ).raise_for_status()
    options = AwsRunOptions(
        bucket=aws_account.bucket,
        region=REGION,
        keys=("incoming/red.png",),
        name=aws_account.name,
        endpoint_url=aws_account.endpoint_url,
    )
    run = run_on_aws(options, sleep=lambda _s: time.sleep(0.05))
    assert run.all_routed and run.threshold == 0.93
    (outcome,) = run.outcomes
    assert outcome.routed and outcome.status == "ROUTED"
    assert (outcome.s3_key, outcome.top_class, outcome.confidence) == (key, "bicycle", 0.97)
    assert outcome.execution_id.startswith("arn:aws:states:")

    # The command prints the same outcome line as a local run.
    httpx.post(
        f"{aws_account.endpoint_url}/moto-api/static/lambda-simple/response",
        json={"results": [json.dumps(r) for r in results], "region": REGION},
    ).raise_for_status()
    args = ["run", "--on", "aws", "--bucket", aws_account.bucket, "--key", "incoming/red.png"]
    args += ["--deployment", aws_account.name, "--region", REGION]
    printed = CliRunner().invoke(app, args, catch_exceptions=False)
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.split() == [key, "SUCCEEDED", "bicycle", "0.9700"]  # rich: tabs


def test_the_trigger_matches_objects_under_its_prefix_with_the_serializers_input(deployed):
    account, result = deployed
    sqs, events = account.client("sqs"), account.client("events")
    queue_url = sqs.create_queue(QueueName=f"{account.name}-probe")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule = f"{account.name}-trigger"
    (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
    # A probe in the state machine's place with its input transformer: moto delivers to
    # SQS, and stops at a Step Functions target (NotImplementedError) before other targets.
    probe = {"Id": "probe", "Arn": queue_arn, "InputTransformer": target["InputTransformer"]}
    events.remove_targets(Rule=rule, Ids=[target["Id"]])
    events.put_targets(Rule=rule, Targets=[probe])
    try:
        s3 = account.client("s3")
        inside = "scones/incoming/driver-42.png"
        s3.put_object(Bucket=account.bucket, Key="scones/elsewhere/x.png", Body=b"no")
        s3.put_object(Bucket=account.bucket, Key="incoming/not-under-prefix.png", Body=b"no")
        s3.put_object(Bucket=account.bucket, Key=inside, Body=solid_png((200, 30, 30)))
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        # Only the object under the trigger prefix matched. (moto hands S3's own event to
        # the targets untransformed; EventBridge's PutEvents applies the transformer.)
        (message,) = messages
        event = json.loads(message["Body"])
        assert event["detail"]["object"]["key"] == inside
        assert event["detail-type"] == "Object Created"
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

        # moto substitutes InputTemplate values as raw text (a JSON template needs quotes
        # there); EventBridge quotes string values itself. Apply AWS's documented rule.
        serializer_input = apply_input_transformer(target["InputTransformer"], event)
        assert serializer_input == {"s3_bucket": account.bucket, "s3_key": inside, "image_data": ""}
        from scones.functions import serialize_image_data

        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "probe"
        try:
            body = serialize_image_data.handler(serializer_input)["body"]
        finally:
            del os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        assert base64.b64decode(body["image_data"]) == solid_png((200, 30, 30))
    finally:
        events.remove_targets(Rule=rule, Ids=["probe"])
        events.put_targets(Rule=rule, Targets=[target])
    assert result.summary["trigger_prefix"] == "scones/incoming/"
    assert deploy_now(account, plan_only=True).plan.empty  # the rule is as deployed again
