"""``scones deploy aws``: check every input, plan, and (unless only planning) apply."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scones.deploy import apply as applying
from scones.deploy.artifacts import function_zips, model_tarball
from scones.deploy.aws import Aws, aws_errors, error_code, find
from scones.deploy.desired import Deployment
from scones.deploy.errors import DeployInputError
from scones.deploy.manifest import Manifest, read_manifest
from scones.deploy.options import DeployOptions, EcrImage, check_options
from scones.deploy.plan import Change, Plan
from scones.deploy.planner import plan_deploy
from scones.store import ObjectStore


@dataclass
class DeployResult:
    plan: Plan
    applied: bool
    manifest_uri: str
    summary: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "manifest": self.manifest_uri,
            **self.summary,
            **self.plan.as_dict(),
        }


def check_bucket(aws: Aws, bucket: str, region: str) -> None:
    """The bucket exists, we may see it, and it is in ``region``."""
    from botocore.exceptions import ClientError

    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise DeployInputError(f"--bucket {bucket!r} does not exist: create it first") from None
        raise DeployInputError(f"--bucket {bucket!r} cannot be read ({code})") from None
    with aws_errors(f"reading the region of bucket {bucket!r}"):
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    bucket_region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
    if bucket_region != region:
        raise DeployInputError(
            f"--bucket {bucket!r} is in region {bucket_region}, not --region {region}: "
            "SageMaker and Lambda read from their own region"
        )


def check_image(aws: Aws, image: EcrImage) -> None:
    """The image URI names an image that is in ECR (SageMaker would fail much later)."""
    image_id = {"imageDigest": image.digest} if image.digest else {"imageTag": image.tag}
    found = find(
        aws.client("ecr").describe_images,
        registryId=image.account,
        repositoryName=image.repository,
        imageIds=[image_id],
    )
    if not found or not found.get("imageDetails"):
        raise DeployInputError(
            f"--image-uri {image.uri!r}: no such image in ECR (repository {image.repository!r} "
            f"of account {image.account}); build and push it first (docs/aws.md)"
        )


def build_deployment(
    options: DeployOptions, aws: Aws, *, store: ObjectStore, cache_dir: Path, work_dir: Path
) -> Deployment:
    """Check every input (nothing is created before all pass) and compute the target."""
    image = check_options(options)
    check_bucket(aws, options.bucket, options.region)
    check_image(aws, image)
    from scones.settings import get_settings

    model = model_tarball(
        options.model,
        store=store,
        default_name=get_settings().model_name,
        cache_dir=cache_dir,
        work_dir=work_dir,
        s3_endpoint_url=options.s3_endpoint_url,
    )
    if len(model.card.class_names) < 2:  # pragma: no cover - ModelCard requires two
        raise DeployInputError(f"--model {options.model!r} has fewer than two classes")
    zips = function_zips(work_dir)
    return Deployment(options, image, aws.account, aws.partition, model, zips)


def summary(d: Deployment) -> dict[str, Any]:
    return {
        "name": d.name,
        "region": d.region,
        "bucket": d.bucket,
        "prefix": d.options.key_prefix,
        "account": d.account,
        "endpoint_name": d.endpoint_name,
        "state_machine_arn": d.state_machine_arn,
        "function_arns": {m: d.function_arn(m) for m in d.zips},
        "model": {
            "name": d.model.model_name,
            "version": d.model.version,
            "sha256": d.model.sha256,
            "model_data_url": d.model_data_url,
            "class_names": d.model.card.class_names,
        },
        "threshold": d.options.threshold,
        "capture_uri": f"s3://{d.bucket}/{d.capture_prefix}" if d.options.capture else None,
        "trigger_prefix": d.trigger_key_prefix if d.options.trigger else None,
    }


def deploy(
    options: DeployOptions,
    *,
    store: ObjectStore,
    cache_dir: Path,
    plan_only: bool = False,
    aws: Aws | None = None,
) -> DeployResult:
    """Deploy (or with ``plan_only`` just plan) the model, functions, state machine, trigger."""
    aws = aws or Aws(options.region, options.endpoint_url, options.s3_endpoint_url)
    with tempfile.TemporaryDirectory(prefix="scones-deploy-") as tmp:
        d = build_deployment(options, aws, store=store, cache_dir=cache_dir, work_dir=Path(tmp))
        manifest = read_manifest(aws, d.bucket, d.manifest_key) or Manifest(
            d.bucket, d.manifest_key
        )
        plan = plan_deploy(aws, d, manifest.resources)
        info = summary(d)
        if plan_only:
            return DeployResult(plan, False, manifest.uri, info)
        if plan.empty and manifest.data.get("status") == "deployed":
            return DeployResult(plan, False, manifest.uri, info)
        manifest.update(**info, status="deploying")
        for resource in plan.unchanged:
            manifest.record(resource)
        manifest.write(aws)

        def record(change: Change) -> None:
            if change.action == "delete":
                manifest.forget(change.resource)
            else:
                manifest.record(change.resource)
            manifest.write(aws)

        applying.apply_plan(aws, plan, record)
        manifest.update(status="deployed")
        manifest.write(aws)
    return DeployResult(plan, True, manifest.uri, info)
