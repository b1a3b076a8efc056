"""`scones deploy aws --emit-template DIR`: a SAM template plus its artifacts, which
cfn-lint accepts; the same functions, definition and model as a deploy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from cfnlint.api import lint_file
from deploy_helpers import register_tiny_model

from scones.deploy.options import DeployOptions
from scones.deploy.template import emit_template
from scones.errors import SconesError
from scones.functions.packaging import FUNCTIONS, package_functions
from scones.model.registry import artifact_key
from scones.store import open_store
from scones.workflow.definitions import PLACEHOLDERS, definition_text

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/scones-endpoint:v3"


@pytest.fixture
def emitted(tmp_path: Path):
    register_tiny_model(tmp_path / "store", tmp_path)
    options = DeployOptions(bucket="team-bucket", image_uri=IMAGE, region="eu-west-1")
    store = open_store(str(tmp_path / "store"))
    result = emit_template(options, tmp_path / "sam", store=store, cache_dir=tmp_path / "cache")
    return result, store, tmp_path


def test_the_template_passes_cfn_lint_and_a_broken_one_does_not(emitted):
    result, _, tmp_path = emitted
    assert lint_file(result.template) == []
    broken = yaml.safe_load(result.template.read_text())
    broken["Resources"]["ClassifyImageFunction"]["Properties"]["Timeout"] = "soon"
    broken_path = tmp_path / "sam" / "broken.yaml"
    broken_path.write_text(yaml.safe_dump(broken))
    assert [match.rule.id for match in lint_file(broken_path)], "cfn-lint accepted a bad value"


def test_the_template_deploys_the_same_artifacts(emitted):
    result, store, tmp_path = emitted
    template = yaml.safe_load(result.template.read_text())
    resources = template["Resources"]
    types = sorted(resource["Type"] for resource in resources.values())
    assert types.count("AWS::Serverless::Function") == 3
    assert types.count("AWS::IAM::Role") == 4
    for needed in [
        "AWS::SageMaker::Model",
        "AWS::SageMaker::EndpointConfig",
        "AWS::SageMaker::Endpoint",
        "AWS::Serverless::StateMachine",
        "AWS::Events::Rule",
    ]:
        assert needed in types

    # Zips: the very bytes `scones functions package` writes.
    local = {p.module: p.path.read_bytes() for p in package_functions(tmp_path / "zips")}
    for module in FUNCTIONS:
        logical = "".join(part.title() for part in module.split("_")) + "Function"
        code_uri = resources[logical]["Properties"]["CodeUri"]
        assert (result.directory / code_uri).read_bytes() == local[module]
    # The definition with its placeholders, filled by SAM from the functions' ARNs.
    machine = resources["StateMachine"]["Properties"]
    definition = result.directory / machine["DefinitionUri"]
    assert definition.read_text() == definition_text("single")
    assert set(machine["DefinitionSubstitutions"]) == set(PLACEHOLDERS)
    # The model: the registry's tarball, and the URL SageMaker reads it from.
    registry = store.get(artifact_key("vehicle-classifier", 1))
    model_tarball = result.directory / "model.tar.gz"
    assert hashlib.sha256(model_tarball.read_bytes()).digest() == hashlib.sha256(registry).digest()
    default_url = template["Parameters"]["ModelDataUrl"]["Default"]
    assert default_url == "s3://team-bucket/" + result.model_key
    config = resources["EndpointConfig"]["Properties"]
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://team-bucket/scones/data_capture"
    # Any account: no account number but the image's (its URI and ECR repository).
    repository = "arn:${AWS::Partition}:ecr:${AWS::Region}:123456789012:repository/scones-endpoint"
    text = json.dumps(resources).replace(IMAGE, "").replace(repository, "")
    assert "123456789012" not in text
    assert "${AWS::AccountId}:function:scones-classify-image" in text
    rule = resources["TriggerRule"]["Properties"]
    assert rule["EventPattern"]["detail"]["object"]["key"] == [{"prefix": "scones/incoming/"}]


def test_emit_template_refuses_bad_input_before_writing(tmp_path):
    options = DeployOptions(bucket="b", image_uri=IMAGE, region="eu-west-1", threshold=2.0)
    store = open_store(str(tmp_path))
    with pytest.raises(SconesError, match=r"--threshold 2\.0"):
        emit_template(options, tmp_path / "sam", store=store, cache_dir=tmp_path)
    assert not (tmp_path / "sam").exists()
    (tmp_path / "file").write_text("x")
    good = DeployOptions(bucket="b", image_uri=IMAGE, region="eu-west-1")
    with pytest.raises(SconesError, match="exists and is not a folder"):
        emit_template(good, tmp_path / "file", store=store, cache_dir=tmp_path)
