"""Transfer learning: EfficientNet-Lite0 ImageNet weights, the last blocks fine-tuned.

The recipe (chosen on five folds of the 1,000 shared images; docs/model.md has the numbers):

1. The early blocks stay frozen (ImageNet features are better than anything 1,000 images of
   32x32 pixels can teach). Their activations for every training and validation image, and
   for its mirror image, are computed ONCE; every epoch then runs only the last
   ``tune_blocks`` blocks, on 4x4 maps at 128 px, so an epoch costs a small fraction of a
   full forward pass.
2. The last blocks, the head convolution and a new linear classifier train with AdamW and a
   one-cycle schedule; each step sees the image or its mirror at random. Batch-norm
   statistics of the tuned blocks adapt to the new data.
3. ``members`` tails (different seeds) share the frozen trunk; their logits are averaged.
4. The exported graph is trunk + tails + mean, flip-averaged like the scratch model's.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scones.model.backbones import BackboneWeights, load_efficientnet_lite0
from scones.model.calibrate import negative_log_likelihood
from scones.model.efficientnet import EfficientNetLite0

FEATURE_BATCH = 100  # images per forward pass of the frozen trunk (bounds peak memory)


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


class TransferClassifier(nn.Module):
    """(N, 3, S, S) images in [-1, 1] -> (N, classes) logits: trunk once, tails averaged."""

    def __init__(self, trunk: FrozenTrunk, tails: list[TunedTail]) -> None:
        super().__init__()
        self.trunk = trunk
        self.tails = nn.ModuleList(tails)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.trunk(x)
        logits = self.tails[0](features)
        for tail in self.tails[1:]:
            logits = logits + tail(features)
        return logits / len(self.tails)


@torch.no_grad()
def trunk_features(
    trunk: FrozenTrunk, inputs: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations of the images and of their mirror images, in batches."""
    trunk.eval()
    plain, mirrored = [], []
    for start in range(0, len(inputs), FEATURE_BATCH):
        batch = inputs[start : start + FEATURE_BATCH].to(device)
        plain.append(trunk(batch))
        mirrored.append(trunk(torch.flip(batch, dims=[3])))
    return torch.cat(plain), torch.cat(mirrored)


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
    return tail.eval()


def build_trunk(
    image_size: int, tune_blocks: int, weights: BackboneWeights | None
) -> tuple[EfficientNetLite0, FrozenTrunk, int]:
    backbone = load_efficientnet_lite0(image_size, weights)
    cut = len(backbone._blocks) - tune_blocks
    return backbone, FrozenTrunk(backbone, cut).eval(), cut
