"""Every bad input the issue names: a clear error naming it, before anything is created."""

from __future__ import annotations

import pytest
from deploy_helpers import REGION, aws_account_fixture, deploy_now, names  # noqa: F401

from scones.deploy.destroy import DestroyOptions, destroy
from scones.errors import SconesError


def assert_nothing_created(account) -> None:
    listing = account.client("s3").list_objects_v2(Bucket=account.bucket)
    assert listing.get("KeyCount", 0) == 0
    assert names(account, "lambda", "list_functions", "Functions", "FunctionName") == []
    assert names(account, "iam", "list_roles", "Roles", "RoleName") == []
    assert names(account, "sagemaker", "list_models", "Models", "ModelName") == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"name": "has_underscore"}, "--name 'has_underscore' is not a valid name"),
        ({"name": "-leading-hyphen"}, "--name '-leading-hyphen' is not a valid name"),
        ({"name": "x" * 33}, "is not a valid name: 1-32"),
        ({"endpoint_name": "bad.endpoint"}, "--endpoint-name 'bad.endpoint'"),
        ({"threshold": 0.0}, "--threshold 0.0 is outside (0, 1]"),
        ({"threshold": 1.5}, "--threshold 1.5 is outside (0, 1]"),
        ({"threshold": float("nan")}, "--threshold nan is outside (0, 1]"),
        ({"region": "moon-base-1"}, "--region 'moon-base-1' is not an AWS region"),
        ({"image_uri": "docker.io/library/python:3.11"}, "is not an ECR image URI"),
        ({"instance_count": 0}, "--instance-count 0 must be at least 1"),
        ({"capture_sampling": 101}, "--capture-sampling 101 must be a percentage"),
        ({"prefix": "a/../b"}, "--prefix 'a/../b'"),
        ({"role_arns": {"lambda": "not-an-arn"}}, "--lambda-role-arn 'not-an-arn'"),
    ],
)
def test_bad_flags_are_refused_before_anything_is_created(aws_account, overrides, expected):
    with pytest.raises(SconesError) as caught:
        deploy_now(aws_account, **overrides)
    assert expected in str(caught.value)
    assert_nothing_created(aws_account)


def test_a_bucket_that_does_not_exist(aws_account):
    with pytest.raises(SconesError, match="--bucket 'no-such-bucket-here' does not exist"):
        deploy_now(aws_account, bucket="no-such-bucket-here")
    assert_nothing_created(aws_account)


def test_a_bucket_in_another_region(aws_account):
    elsewhere = f"{aws_account.bucket}-eu"
    aws_account.client("s3").create_bucket(
        Bucket=elsewhere, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    with pytest.raises(SconesError, match=f"--bucket '{elsewhere}' is in region eu-west-1, not"):
        deploy_now(aws_account, bucket=elsewhere)
    assert_nothing_created(aws_account)


@pytest.mark.parametrize("ref", ["7", "staging", "vehicle-classifier:9", "/no/such/model.tar.gz"])
def test_an_unknown_model_reference(aws_account, ref):
    with pytest.raises(SconesError) as caught:
        deploy_now(aws_account, model=ref)
    assert repr(ref.split(":")[-1]) in str(caught.value) or ref in str(caught.value)
    assert_nothing_created(aws_account)


def test_an_image_missing_from_ecr(aws_account):
    missing_tag = aws_account.image_uri.replace(":latest", ":never-pushed")
    with pytest.raises(SconesError, match="no such image in ECR") as caught:
        deploy_now(aws_account, image_uri=missing_tag)
    assert missing_tag in str(caught.value)
    no_repo = aws_account.image_uri.replace("scones-endpoint", "no-such-repository")
    with pytest.raises(SconesError, match="no such image in ECR"):
        deploy_now(aws_account, image_uri=no_repo)
    assert_nothing_created(aws_account)


def test_an_image_in_another_region(aws_account):
    other = aws_account.image_uri.replace(f".{REGION}.", ".eu-west-1.")
    with pytest.raises(SconesError, match="is in region eu-west-1, not --region us-east-1"):
        deploy_now(aws_account, image_uri=other)
    assert_nothing_created(aws_account)


def test_destroy_refuses_an_invalid_name_and_a_fresh_destroy_is_a_no_op(aws_account):
    options = DestroyOptions(
        bucket=aws_account.bucket, region=REGION, endpoint_url=aws_account.endpoint_url
    )
    with pytest.raises(SconesError, match="--name 'a_b'"):
        destroy(DestroyOptions(**{**options.__dict__, "name": "a_b"}))
    result = destroy(DestroyOptions(**{**options.__dict__, "name": aws_account.name}))
    assert not result.applied and result.plan.empty
