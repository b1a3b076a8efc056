"""`scones deploy aws` and `scones destroy aws` (scones.deploy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from scones.cli.options import StoreOption, open_configured_store, settings
from scones.cli.render import console, out

deploy_app = typer.Typer(
    help="Deploy the same model, Lambda handlers and state machine to a cloud.",
    no_args_is_help=True,
)
destroy_app = typer.Typer(
    help="Remove what `scones deploy` created.",
    no_args_is_help=True,
)

BucketOption = Annotated[
    str, typer.Option("--bucket", help="Existing S3 bucket for artifacts, manifest and capture.")
]
PrefixOption = Annotated[
    str, typer.Option("--prefix", help="Key prefix in the bucket for everything deployed.")
]
RegionOption = Annotated[
    str | None,
    typer.Option("--region", help="AWS region. Default: AWS_REGION / AWS_DEFAULT_REGION."),
]
DeploymentNameOption = Annotated[
    str,
    typer.Option(
        "--name", help="Deployment name: prefixes every resource name and tags every resource."
    ),
]
PlanOption = Annotated[
    bool, typer.Option("--plan", help="Print what would change and change nothing.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
AwsEndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help="One endpoint for every AWS service (moto, LocalStack). Default: AWS_ENDPOINT_URL.",
    ),
]
S3EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--s3-endpoint-url",
        help="S3 API endpoint alone (MinIO). Default: SCONES_S3_ENDPOINT_URL or AWS's.",
    ),
]


def _render(result: Any, json_output: bool, planned: bool, done: str) -> None:
    if json_output:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
        return
    for line in result.plan.lines():
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    if planned:
        console.print("plan only: nothing was changed", highlight=False)
    elif result.applied:
        console.print(done, highlight=False, markup=False, soft_wrap=True)


@deploy_app.command("aws")
def deploy_aws(
    bucket: BucketOption,
    image_uri: Annotated[
        str,
        typer.Option(
            "--image-uri",
            help="The serving image in ECR (docker/Dockerfile pushed there; see docs/aws.md).",
        ),
    ],
    prefix: PrefixOption = "scones/",
    region: RegionOption = None,
    model: Annotated[
        str, typer.Option("--model", help="Model to deploy: version, alias, URI or path.")
    ] = "production",
    name: DeploymentNameOption = "scones",
    endpoint_name: Annotated[
        str | None,
        typer.Option("--endpoint-name", help="SageMaker endpoint name. Default: <name>-endpoint."),
    ] = None,
    instance_type: Annotated[
        str, typer.Option("--instance-type", help="SageMaker instance type of the endpoint.")
    ] = "ml.m5.large",
    instance_count: Annotated[
        int, typer.Option("--instance-count", help="Instances behind the endpoint.")
    ] = 1,
    capture: Annotated[
        bool,
        typer.Option("--capture/--no-capture", help="Data capture of requests and responses."),
    ] = True,
    capture_sampling: Annotated[
        int, typer.Option("--capture-sampling", help="Percentage of requests captured.")
    ] = 100,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Confidence to route (default SCONES_THRESHOLD)."),
    ] = None,
    trigger: Annotated[
        bool,
        typer.Option(
            "--trigger/--no-trigger", help="Start the state machine for each new image in S3."
        ),
    ] = True,
    trigger_prefix: Annotated[
        str,
        typer.Option("--trigger-prefix", help="Under --prefix: new images here are classified."),
    ] = "incoming/",
    sagemaker_role_arn: Annotated[
        str | None,
        typer.Option(help="Existing role for SageMaker (default: a scoped role is created)."),
    ] = None,
    lambda_role_arn: Annotated[
        str | None,
        typer.Option(help="Existing role for the functions (default: created)."),
    ] = None,
    states_role_arn: Annotated[
        str | None,
        typer.Option(help="Existing role for Step Functions (default: created)."),
    ] = None,
    events_role_arn: Annotated[
        str | None,
        typer.Option(help="Existing role for EventBridge (default: created)."),
    ] = None,
    emit_template: Annotated[
        Path | None,
        typer.Option(
            "--emit-template",
            help="Write a SAM template.yaml and its artifacts into this folder instead.",
        ),
    ] = None,
    plan: PlanOption = False,
    json_output: JsonOption = False,
    endpoint_url: AwsEndpointOption = None,
    s3_endpoint_url: S3EndpointOption = None,
    store: StoreOption = None,
) -> None:
    """Deploy the model, the three functions, the state machine and its S3 trigger to AWS.

    Idempotent: it reads what exists and changes only what differs.
    """
    from scones.deploy.aws import default_region
    from scones.deploy.deploy import deploy
    from scones.deploy.options import DeployOptions
    from scones.deploy.template import emit_template as write_template

    conf = settings()
    roles = {
        "sagemaker": sagemaker_role_arn,
        "lambda": lambda_role_arn,
        "states": states_role_arn,
        "events": events_role_arn,
    }
    options = DeployOptions(
        bucket=bucket,
        image_uri=image_uri,
        region=region or default_region(),
        prefix=prefix,
        model=model,
        name=name,
        endpoint_name=endpoint_name,
        instance_type=instance_type,
        instance_count=instance_count,
        capture=capture,
        capture_sampling=capture_sampling,
        threshold=conf.threshold if threshold is None else threshold,
        trigger=trigger,
        trigger_prefix=trigger_prefix,
        role_arns={kind: arn for kind, arn in roles.items() if arn},
        endpoint_url=endpoint_url,
        s3_endpoint_url=s3_endpoint_url or conf.s3_endpoint_url,
    )
    store_ = open_configured_store(store)
    if emit_template is not None:
        emitted = write_template(options, emit_template, store=store_, cache_dir=conf.cache_dir)
        for path in emitted.files:
            out.print(str(path), highlight=False, markup=False, soft_wrap=True)
        console.print(
            f"copy model.tar.gz to s3://{bucket}/{emitted.model_key}, then `sam deploy --guided` "
            f"in {emitted.directory}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return
    result = deploy(options, store=store_, cache_dir=conf.cache_dir, plan_only=plan)
    done = (
        f"deployed {name}: manifest {result.manifest_uri}; "
        f"state machine {result.summary['state_machine_arn']}"
    )
    _render(result, json_output, plan, done if result.applied else "")


@destroy_app.command("aws")
def destroy_aws(
    bucket: BucketOption,
    prefix: PrefixOption = "scones/",
    region: RegionOption = None,
    name: DeploymentNameOption = "scones",
    purge_artifacts: Annotated[
        bool,
        typer.Option(
            "--purge-artifacts",
            help="Also delete the uploaded artifacts and the endpoint's captured traffic.",
        ),
    ] = False,
    plan: PlanOption = False,
    json_output: JsonOption = False,
    endpoint_url: AwsEndpointOption = None,
    s3_endpoint_url: S3EndpointOption = None,
) -> None:
    """Remove every resource the deployment created (by manifest and by tag).

    Images and the model registry are never touched; a second destroy changes nothing.
    """
    from scones.deploy.aws import default_region
    from scones.deploy.destroy import DestroyOptions, destroy

    options = DestroyOptions(
        bucket=bucket,
        region=region or default_region(),
        name=name,
        prefix=prefix,
        purge_artifacts=purge_artifacts,
        endpoint_url=endpoint_url,
        s3_endpoint_url=s3_endpoint_url or settings().s3_endpoint_url,
    )
    result = destroy(options, plan_only=plan)
    if not json_output and result.plan.empty:
        out.print(f"nothing to destroy: deployment {name} has no resources", highlight=False)
        return
    _render(result, json_output, plan, f"destroyed {name}")
