"""Transfer learning: EfficientNet-Lite0 ImageNet weights, the last blocks fine-tuned.

The recipe (chosen on five folds of the 1,000 shared images; docs/model.md has the numbers):

1. The early blocks stay frozen (ImageNet features are better than anything 1,000 images of
   32x32 pixels can teach). Their activations for every training and validation image, and
   for its mirror image, are computed ONCE (in ONNX Runtime on CPU, 7-9x faster than
   PyTorch there); every epoch then runs only the last ``tune_blocks`` blocks (by default
   from the 14x14 maps of block 10 on, at 224 px), a small fraction of a full forward pass.
2. The last blocks, the head convolution and a new linear classifier train with AdamW and a
   one-cycle schedule; each step sees the image or its mirror at random. Batch-norm
   statistics of the tuned blocks adapt to the new data.
3. ``members`` tails (different seeds) share the frozen trunk; their logits are averaged.
4. Optionally (``linear_probe``) a logistic regression on the pooled outputs of the frozen,
   pretrained blocks from ``PROBE_FROM_BLOCK`` on (and the head) joins them. At 128 px it
   ranked the confident images better; at 224 px the tails alone do as well or better.
5. The exported graph is trunk + tails (+ probe) + mean, flip-averaged like the scratch
   model's.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from scones.model.backbones import BackboneWeights, load_efficientnet_lite0
from scones.model.calibrate import negative_log_likelihood
from scones.model.efficientnet import EfficientNetLite0
from scones.model.evaluate import eval_batch_size
from scones.model.onnx_export import export_module

FEATURE_BATCH = 100  # rows per pass of the probe's pooling (bounds peak memory)
# The probe pools blocks 8-15 (the last three stages) and the head: on five folds of the
# shared data earlier blocks added nothing and the head alone was 2 points worse.
PROBE_FROM_BLOCK = 8
# Inverse L2 strength of the probe's logistic regression (scikit-learn's ``C``), on
# standardised features; 0.01-1 were within noise of each other on the folds.
PROBE_C = 0.1


class FrozenTrunk(nn.Module):
    """Stem and the first blocks of the backbone, in eval mode, never trained."""

    def __init__(self, backbone: EfficientNetLite0, cut: int) -> None:
        super().__init__()
        self._stem_pad = backbone._stem_pad
        self._conv_stem = backbone._conv_stem
        self._bn0 = backbone._bn0
        self.blocks = nn.Sequential(*list(backbone._blocks)[:cut])
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(self._stem_pad(x))))
        return self.blocks(x)

    def forward_pooled(self, x: torch.Tensor, from_block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The activation, and the spatial means of blocks ``from_block`` on, concatenated."""
        x = F.relu6(self._bn0(self._conv_stem(self._stem_pad(x))))
        pooled = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index >= from_block:
                pooled.append(x.mean(dim=(2, 3)))
        empty = x.new_zeros((x.shape[0], 0))
        return x, torch.cat(pooled, dim=1) if pooled else empty


class TunedTail(nn.Module):
    """The last blocks, the head convolution and a new classifier: what fine-tuning trains."""

    def __init__(
        self, backbone: EfficientNetLite0, cut: int, num_classes: int, dropout: float
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*copy.deepcopy(list(backbone._blocks)[cut:]))
        self.conv_head = copy.deepcopy(backbone._conv_head)
        self.bn_head = copy.deepcopy(backbone._bn1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.conv_head.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.bn_head(self.conv_head(self.blocks(x))))
        return self.classifier(self.dropout(x.mean(dim=(2, 3))))


def block_channels(block: nn.Module) -> int:
    return int(block.out_channels)  # type: ignore[arg-type]


class LinearProbe(nn.Module):
    """The pretrained (frozen) last blocks and head, pooled per block, and a linear layer:
    a logistic regression on ImageNet features, fitted by :func:`fit_probe`."""

    def __init__(self, backbone: EfficientNetLite0, cut: int, num_classes: int) -> None:
        super().__init__()
        self.cut = cut
        self.from_block = PROBE_FROM_BLOCK
        self.blocks = nn.Sequential(*copy.deepcopy(list(backbone._blocks)[cut:]))
        self.conv_head = copy.deepcopy(backbone._conv_head)
        self.bn_head = copy.deepcopy(backbone._bn1)
        pooled_channels = sum(
            block_channels(block)
            for index, block in enumerate(backbone._blocks)
            if index >= PROBE_FROM_BLOCK
        )
        self.classifier = nn.Linear(pooled_channels + self.conv_head.out_channels, num_classes)
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(name.startswith("classifier"))

    def pooled(self, features: torch.Tensor, trunk_pooled: torch.Tensor) -> torch.Tensor:
        """``trunk_pooled``: the trunk's blocks from ``from_block`` on, pooled (it may be empty
        when the trunk ends before them)."""
        pooled = [trunk_pooled]
        x = features
        for index, block in enumerate(self.blocks, start=self.cut):
            x = block(x)
            if index >= self.from_block:
                pooled.append(x.mean(dim=(2, 3)))
        pooled.append(F.relu6(self.bn_head(self.conv_head(x))).mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)

    def forward(self, features: torch.Tensor, trunk_pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pooled(features, trunk_pooled))


class TransferClassifier(nn.Module):
    """(N, 3, S, S) images in [-1, 1] -> (N, classes) logits: trunk once, the tails and the
    probe (when there is one) averaged."""

    def __init__(
        self, trunk: FrozenTrunk, tails: list[TunedTail], probe: LinearProbe | None = None
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.tails = nn.ModuleList(tails)
        self.probe = probe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.probe is None:
            features = self.trunk(x)
        else:
            features, trunk_pooled = self.trunk.forward_pooled(x, self.probe.from_block)
        logits = self.tails[0](features)
        for tail in self.tails[1:]:
            logits = logits + tail(features)
        if self.probe is None:
            return logits / len(self.tails)
        return (logits + self.probe(features, trunk_pooled)) / (len(self.tails) + 1)


class TrunkViews(NamedTuple):
    """Trunk activations of images and their mirror images, and (for the probe) the pooled
    outputs of the trunk's blocks from ``PROBE_FROM_BLOCK`` on."""

    plain: torch.Tensor
    mirrored: torch.Tensor
    plain_pooled: torch.Tensor
    mirrored_pooled: torch.Tensor


class _PooledTrunk(nn.Module):
    """``FrozenTrunk.forward_pooled`` as a plain forward, for the ONNX exporter."""

    def __init__(self, trunk: FrozenTrunk) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.trunk.forward_pooled(x, PROBE_FROM_BLOCK)


def _onnx_trunk_session(trunk: FrozenTrunk, sample: torch.Tensor) -> ort.InferenceSession:
    """The frozen trunk as an ONNX Runtime session (the exporter the served graph
    uses; CPU threads as many as PyTorch's)."""
    with tempfile.TemporaryDirectory(prefix="scones-trunk-") as folder:
        path = Path(folder) / "trunk.onnx"
        export_module(
            _PooledTrunk(trunk).eval(),
            sample,
            path,
            input_name="input",
            output_names=["features", "pooled"],
        )
        graph = path.read_bytes()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def trunk_features(trunk: FrozenTrunk, inputs: torch.Tensor, device: torch.device) -> TrunkViews:
    """Activations of the images and of their mirror images, in batches.

    On CPU the trunk runs in ONNX Runtime, as it is served: its depthwise convolutions run
    7-9x faster there than in PyTorch (docs/benchmarks.md), which is what lets the default
    recipe afford 224 px. On a GPU PyTorch runs it. Either way the tails train on CPU-cheap
    cached activations that match the served graph's within 1e-4."""
    trunk.eval()
    session = None
    if device.type == "cpu" and len(inputs):
        session = _onnx_trunk_session(trunk, inputs[:1].cpu())
    views: list[list[torch.Tensor]] = [[], [], [], []]
    # Bounded like evaluation's ONNX Runtime calls (by pixels: its arena grows with them).
    batch_size = eval_batch_size((inputs.shape[2], inputs.shape[3]))
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        for mirror, (features, pooled) in enumerate(((views[0], views[2]), (views[1], views[3]))):
            view = torch.flip(batch, dims=[3]) if mirror else batch
            if session is None:
                activation, activation_pooled = trunk.forward_pooled(
                    view.to(device), PROBE_FROM_BLOCK
                )
            else:
                outputs = session.run(None, {"input": view.contiguous().numpy()})
                activation, activation_pooled = (torch.from_numpy(o) for o in outputs)
            features.append(activation)
            pooled.append(activation_pooled)
    return TrunkViews(*(torch.cat(parts) for parts in views))


@torch.no_grad()
def fit_probe(
    backbone: EfficientNetLite0,
    cut: int,
    num_classes: int,
    views: TrunkViews,
    labels: torch.Tensor,
    *,
    c: float = PROBE_C,
) -> LinearProbe:
    """The probe's logistic regression on the image and mirror features (L-BFGS, float64,
    L2 on standardised features); the standardisation is folded into its linear layer."""
    probe = LinearProbe(backbone, cut, num_classes).to(views.plain.device).eval()
    rows = []
    for features, pooled in (
        (views.plain, views.plain_pooled),
        (views.mirrored, views.mirrored_pooled),
    ):
        for start in range(0, len(features), FEATURE_BATCH):
            end = start + FEATURE_BATCH
            rows.append(probe.pooled(features[start:end], pooled[start:end]).double().cpu())
    x = torch.cat(rows)
    y = torch.cat([labels, labels]).cpu()
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    weight = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        with torch.enable_grad():
            value = F.cross_entropy(x @ weight + bias, y) + (weight**2).sum() / (2 * c * len(y))
            value.backward()
        return value

    optimizer.step(loss)
    folded = (weight / std[:, None]).detach()
    probe.classifier.weight.copy_(folded.T.float())
    probe.classifier.bias.copy_((bias.detach() - mean @ folded).float())
    return probe


def flip_logits(tail: nn.Module, views: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        tail.eval()
        return 0.5 * (tail(views[0]) + tail(views[1]))


def fit_tail(
    backbone: EfficientNetLite0,
    cut: int,
    num_classes: int,
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor, np.ndarray],
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    label_smoothing: float,
    dropout: float,
    device: torch.device,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TunedTail:
    """Train one tail on cached trunk activations (plain, mirrored, labels); the weights of
    the last epoch are kept (validation is too small to pick epochs without overfitting it)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    plain, mirrored, labels = train
    val_plain, val_mirrored, val_labels = validation
    tail = TunedTail(backbone, cut, num_classes, dropout).to(device)
    if device.type == "cpu":
        # PyTorch's CPU convolutions run ~1.6x faster on channels-last tensors here.
        tail = tail.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        plain, mirrored = (
            x.contiguous(memory_format=torch.channels_last) for x in (plain, mirrored)
        )
    body = [p for name, p in tail.named_parameters() if not name.startswith("classifier")]
    # The new classifier starts from nothing: it learns 10x faster than the pretrained blocks.
    optimizer = torch.optim.AdamW(
        [
            {"params": body, "lr": lr},
            {"params": tail.classifier.parameters(), "lr": 10 * lr},
        ],
        weight_decay=weight_decay,
    )
    n = len(labels)
    batch_size = min(batch_size, n)
    steps_per_epoch = max(1, n // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[lr, 10 * lr],
        total_steps=epochs * steps_per_epoch,
        pct_start=0.15,
    )
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        tail.train()
        order = torch.randperm(n, generator=generator)
        losses = []
        for step in range(steps_per_epoch):
            rows = order[step * batch_size : (step + 1) * batch_size]
            mirror = (torch.rand(len(rows), generator=generator) < 0.5).to(device)
            rows = rows.to(device)
            inputs = torch.where(mirror[:, None, None, None], mirrored[rows], plain[rows])
            loss = F.cross_entropy(tail(inputs), labels[rows], label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        if on_epoch is not None:
            logits = flip_logits(tail, (val_plain, val_mirrored)).float().cpu().numpy()
            on_epoch(
                {
                    "epoch": epoch,
                    "train_loss": float(np.mean(losses)) if losses else math.nan,
                    "val_accuracy": float((logits.argmax(1) == val_labels).mean()),
                    "val_loss": negative_log_likelihood(logits, val_labels, temperature=1.0),
                    "lr": float(scheduler.get_last_lr()[0]),
                    "seconds": time.perf_counter() - started,
                }
            )
    # Saved weights are plain contiguous tensors (safetensors needs them so).
    return tail.to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]


def build_trunk(
    image_size: int, tune_blocks: int, weights: BackboneWeights | None
) -> tuple[EfficientNetLite0, FrozenTrunk, int]:
    backbone = load_efficientnet_lite0(image_size, weights)
    cut = len(backbone._blocks) - tune_blocks
    return backbone, FrozenTrunk(backbone, cut).eval(), cut
