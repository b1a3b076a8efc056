"""Batch augmentation on tensors for 32x32 images: random crop with padding, flip, cutout.

All randomness comes from an explicit ``torch.Generator``, so a run is reproducible for a
seed. Inputs are normalised NCHW float tensors; 0 is the dataset mean, so cutout fills with 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad by ``padding`` (reflect) and cut a random original-size window per image."""
    if padding <= 0:
        return images
    n, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(height, device=images.device)[None, :])[:, :, None]
    cols = (dx[:, None] + torch.arange(width, device=images.device)[None, :])[:, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indexing gives (N, H, W, C); move channels back.
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator).to(images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``size`` x ``size`` square per image at a random centre (may overhang)."""
    if size <= 0:
        return images
    n, _, height, width = images.shape
    cy = torch.randint(0, height, (n,), generator=generator).to(images.device)
    cx = torch.randint(0, width, (n,), generator=generator).to(images.device)
    ys = torch.arange(height, device=images.device)[None, :]
    xs = torch.arange(width, device=images.device)[None, :]
    inside_y = (ys >= (cy[:, None] - size // 2)) & (ys < (cy[:, None] - size // 2 + size))
    inside_x = (xs >= (cx[:, None] - size // 2)) & (xs < (cx[:, None] - size // 2 + size))
    mask = inside_y[:, :, None] & inside_x[:, None, :]
    return images.masked_fill(mask[:, None, :, :], 0.0)


def augment_batch(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    crop_padding: int,
    flip: bool,
    cutout_size: int,
) -> torch.Tensor:
    images = random_crop(images, crop_padding, generator)
    if flip:
        images = random_flip(images, generator)
    return cutout(images, cutout_size, generator)
