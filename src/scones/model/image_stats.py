"""Per-image statistics recorded in the training baseline and computed on live traffic.

One definition serves both sides, so drift tests compare like with like. All values are
taken on the decoded RGB image before resizing (sizes are the original ones):

- brightness: mean of the luma (ITU-R 601 L), 0..1
- contrast: standard deviation of the luma, 0..1
- saturation: mean HSV saturation, 0..1
- width, height: pixels
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGE_STAT_NAMES = ("brightness", "contrast", "saturation", "width", "height")
# The fixed bins of every confidence histogram (top probability), baseline and live alike.
CONFIDENCE_BIN_EDGES = tuple(round(i / 20, 2) for i in range(21))


def image_statistics(image: Image.Image) -> dict[str, float]:
    """Statistics of one RGB image (see the module docstring)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    # Large photos: statistics of a thumbnail are the same to two decimals and far cheaper.
    if width * height > 256 * 256:
        rgb = rgb.copy()
        rgb.thumbnail((256, 256), Image.Resampling.BILINEAR)
    luma = np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0
    saturation = np.asarray(rgb.convert("HSV"), dtype=np.float32)[..., 1] / 255.0
    return {
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "saturation": float(saturation.mean()),
        "width": float(width),
        "height": float(height),
    }


def confidence_histogram(top_probabilities: np.ndarray) -> list[int]:
    """Counts of top probabilities in CONFIDENCE_BIN_EDGES (the last bin includes 1.0)."""
    counts, _ = np.histogram(np.asarray(top_probabilities, dtype=np.float64), CONFIDENCE_BIN_EDGES)
    return [int(c) for c in counts]
