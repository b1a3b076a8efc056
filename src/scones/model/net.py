"""The vehicle classifier: a compact residual CNN for 32x32 images (ResNet-9 shape, narrower).

The layout follows the DAWNBench ResNet-9 (Myrtle.ai) and airbench: a stem convolution, three
stages that each halve the resolution with a max-pool, residual blocks after the first and last
stage, a global max-pool and a linear head whose logits are scaled down (``logit_scale``),
which trains faster with SGD. ``width`` scales every stage, so the same code runs a tiny
test model and the real one. With the default width 24: 0.93 M parameters and 54 M
multiply-accumulates (0.11 GFLOP) per 32x32 image and view; the served graph runs two views
(image and mirror), 107 M MACs. See :func:`count_parameters` and :func:`count_macs`.

:class:`FlipAveragedClassifier` averages the logits of an image and of its mirror image; the
ONNX export wraps the network in it, so serving gets test-time augmentation in one call.
:class:`EnsembleClassifier` averages the logits of several networks trained with different
seeds (``TrainConfig.members``); it too sits inside the one exported graph.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.GELU(),
    )


def conv_pool_bn(channels_in: int, channels_out: int) -> nn.Sequential:
    # Pool before the norm and activation: a quarter of the elementwise work (airbench).
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(channels_out),
        nn.GELU(),
    )


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VehicleNet(nn.Module):
    """(N, 3, 32, 32) normalised images -> (N, num_classes) logits."""

    def __init__(self, num_classes: int = 2, width: int = 24, logit_scale: float = 0.125) -> None:
        super().__init__()
        w1, w2, w3, w4 = width, 2 * width, 4 * width, 8 * width
        self.features = nn.Sequential(
            conv_bn(3, w1),
            conv_pool_bn(w1, w2),  # 16x16
            Residual(w2),
            conv_pool_bn(w2, w3),  # 8x8
            conv_pool_bn(w3, w4),  # 4x4
            Residual(w4),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(w4, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.logit_scale


class EnsembleClassifier(nn.Module):
    """Mean logits of several independently trained networks (one graph, one call)."""

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        if not nets:
            raise ValueError("an ensemble needs at least one network")
        self.members = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.members[0](x)
        for member in self.members[1:]:
            logits = logits + member(x)
        return logits / len(self.members)


class FlipAveragedClassifier(nn.Module):
    """Mean logits of the image and its horizontal mirror (test-time augmentation)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.net(x) + self.net(torch.flip(x, dims=[3])))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and linear layers)."""
    total = 0

    def on_conv(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
        total += output.numel() * kernel // module.groups

    def on_linear(module: nn.Linear, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(on_linear))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total
