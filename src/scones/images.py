"""Images, one home for every layer: decoding with limits, header sniffing, statistics.

Staging, training, the endpoint and monitoring all read images through this module, so they
accept the same bytes, refuse the same bombs and measure the same statistics. It depends on
numpy and Pillow only (no PyTorch), and on nothing in scones but the error base.

- :func:`decode_image`: PNG or JPEG bytes -> an RGB image; over ``max_bytes`` or a header
  declaring over ``max_pixels`` pixels is refused before any pixel is decoded.
- :func:`sniff_content_type`, :func:`declared_pixels`: what the first bytes say, without a
  decoder.
- :func:`image_statistics`: the per-image statistics recorded in a model's baseline and
  computed on live traffic (one definition, so drift tests compare like with like). All are
  taken on the decoded RGB image before resizing:

  - brightness: mean of the luma (ITU-R 601 L), 0..1
  - contrast: standard deviation of the luma, 0..1
  - saturation: mean HSV saturation, 0..1
  - width, height: pixels
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from scones.errors import SconesError

# 40 MP: a large phone photo fits, a decompression bomb does not.
DEFAULT_MAX_PIXELS = 40_000_000
SUPPORTED_FORMATS = ("PNG", "JPEG")
# The content types the endpoint accepts (the SageMaker contract); monitoring decodes these
# and counts anything else as an unknown content type.
IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "application/x-image")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# Start-of-frame markers (SOF0-SOF15 without DHT, JPG and DAC) carry the image size.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
IMAGE_STAT_NAMES = ("brightness", "contrast", "saturation", "width", "height")
# Statistics of larger images are taken on a thumbnail: the same to two decimals, far cheaper.
_STATISTICS_MAX_SIDE = 256


class ImageDecodeError(SconesError, ValueError):
    """Bytes that are not an image we accept; ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def sniff_content_type(data: bytes) -> str:
    """``image/png`` or ``image/jpeg`` by magic bytes; ``application/x-image`` otherwise."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(JPEG_SIGNATURE):
        return "image/jpeg"
    return "application/x-image"


def declared_pixels(data: bytes) -> int | None:
    """Width x height from a PNG or baseline/progressive JPEG header, read from the bytes
    (no decoder); None when unsure. A hint only: :func:`decode_image` checks for real."""
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width * height)
    if not data.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 9 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker in _JPEG_SOF_MARKERS:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return int(width * height)
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        position += 2 + length
    return None


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int | None = None
) -> Image.Image:
    """Decode PNG/JPEG bytes into an RGB image, refusing bombs before decoding pixels."""
    if not data:
        raise ImageDecodeError("empty_body", "the image is empty (0 bytes)")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageDecodeError(
            "image_too_large", f"image is {len(data)} bytes, over the limit of {max_bytes} bytes"
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns on large images; our own pixel limit below is the rule.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        # Pillow refuses a header over twice its own limit before ours is checked.
        raise ImageDecodeError(
            "image_too_large", f"image is over the limit of {max_pixels} pixels: {exc}"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError):
        # Pillow's own message only repeats the BytesIO repr; ours says what was sent.
        raise ImageDecodeError(
            "not_an_image",
            f"the body is not a PNG or JPEG image ({len(data)} bytes, starting {data[:8]!r})",
        ) from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError(
            "unsupported_image_format",
            f"image format {image.format!r} is not supported; send PNG or JPEG",
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("not_an_image", f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageDecodeError(
            "image_too_large",
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} pixels",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(
            "corrupt_image", f"the {image.format} image could not be decoded: {exc}"
        ) from None
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency composited over white; other modes converted."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" or image.mode in ("LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clip.
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        image = Image.fromarray((array / peak * 255.0).astype(np.uint8), mode="L")
    return image.convert("RGB")


def image_statistics(image: Image.Image) -> dict[str, float]:
    """Statistics of one image, converted to RGB first (see the module docstring)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    if width * height > _STATISTICS_MAX_SIDE * _STATISTICS_MAX_SIDE:
        rgb = rgb.copy()
        rgb.thumbnail((_STATISTICS_MAX_SIDE, _STATISTICS_MAX_SIDE), Image.Resampling.BILINEAR)
    luma = np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0
    saturation = np.asarray(rgb.convert("HSV"), dtype=np.float32)[..., 1] / 255.0
    return {
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "saturation": float(saturation.mean()),
        "width": float(width),
        "height": float(height),
    }
