"""The one implementation of image preprocessing: training, evaluation and serving share it.

Needs only numpy and Pillow, so the endpoint and the Lambda functions run without PyTorch.
The contract (recorded in every artifact's ``model.json``):

1. Decode PNG or JPEG (any size, RGB, RGBA, palette or greyscale) with
   :func:`scones.images.decode_image`: images with more than ``max_pixels`` pixels are
   refused from their header, before any pixel is decoded.
2. Convert to RGB; transparency is composited over white.
3. Resize the whole image (no crop) to ``input_size`` with Pillow's bilinear filter (it
   antialiases when shrinking; a 32x32 CIFAR image is enlarged to 128x128 for the pretrained
   backbone), unless it already has that size (then it passes through pixel-exact).
4. Scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel, lay out as CHW.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from scones.images import DEFAULT_MAX_PIXELS, decode_image

# CIFAR-100 training-set channel statistics; used when a model does not record its own.
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


class Preprocessing(BaseModel):
    """What a model expects of its input, stored in ``model.json``.

    Every field is checked when a model is loaded: a contract this code does not implement
    (another resize filter, channel order, layout) is refused, naming the field, rather than
    served with inputs the model was not trained on. A pretrained backbone sets its own
    ``input_size``, ``mean`` and ``std`` (EfficientNet-Lite0: 128x128, [-1, 1]).
    """

    model_config = ConfigDict(extra="forbid")

    input_size: tuple[int, int] = Field(default=(32, 32), description="(height, width)")
    resize: Literal["bilinear"] = "bilinear"
    channel_order: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    alpha: Literal["composite-over-white"] = "composite-over-white"
    scale: float = Field(default=1.0 / 255.0, gt=0.0)
    mean: tuple[float, float, float] = CIFAR100_MEAN
    std: tuple[float, float, float] = CIFAR100_STD
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, gt=0)

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, size: tuple[int, int]) -> tuple[int, int]:
        if min(size) < 1:
            raise ValueError(f"input_size must be positive, got {list(size)}")
        return size

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, std: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(std) <= 0:
            raise ValueError(f"std must be positive per channel, got {list(std)}")
        return std


def resize_for(image: Image.Image, prep: Preprocessing) -> Image.Image:
    height, width = prep.input_size
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.BILINEAR)


def image_to_array(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """An RGB image as a normalised float32 CHW array of the model's input size."""
    pixels = np.asarray(resize_for(image, prep))  # HWC uint8
    return normalize_hwc_uint8(pixels, prep)


def normalize_hwc_uint8(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """HWC (or NHWC) 0..255 values -> normalised float32 CHW (or NCHW)."""
    if pixels.dtype == np.uint8:
        # A byte has 256 values: look each channel's up in a table of the same float32
        # arithmetic (bit-identical) instead of four passes over every pixel. On the
        # endpoint's event loop that was a tenth of its CPU at 128x128 (py-spy).
        tables = _normalize_tables(prep.scale, prep.mean, prep.std)
        planes = np.moveaxis(pixels, -1, 0)  # C first: one table per plane
        out = np.empty((*pixels.shape[:-3], 3, *pixels.shape[-3:-1]), dtype=np.float32)
        for channel in range(3):
            np.take(tables[channel], planes[channel], out=out[..., channel, :, :])
        return out
    mean = np.asarray(prep.mean, dtype=np.float32)
    std = np.asarray(prep.std, dtype=np.float32)
    scaled = (pixels.astype(np.float32) * np.float32(prep.scale) - mean) / std
    return np.ascontiguousarray(np.moveaxis(scaled, -1, -3))


@functools.lru_cache(maxsize=8)
def _normalize_tables(
    scale: float, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> np.ndarray:
    """(3, 256) float32: each channel's normalised value of every byte."""
    values = np.arange(256, dtype=np.float32)[None, :]
    means = np.asarray(mean, dtype=np.float32)[:, None]
    stds = np.asarray(std, dtype=np.float32)[:, None]
    tables = (values * np.float32(scale) - means) / stds
    tables.setflags(write=False)
    return tables


def preprocess_bytes(data: bytes, prep: Preprocessing) -> np.ndarray:
    """Encoded image bytes -> the model's CHW float32 input."""
    return image_to_array(decode_image(data, max_pixels=prep.max_pixels), prep)


def preprocess_batch(images: Sequence[bytes], prep: Preprocessing) -> np.ndarray:
    return np.stack([preprocess_bytes(data, prep) for data in images])
