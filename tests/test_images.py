"""scones.images: the one decoder, header sniffing and per-image statistics."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
from PIL import Image

from scones.images import (
    IMAGE_CONTENT_TYPES,
    ImageDecodeError,
    declared_pixels,
    decode_image,
    image_statistics,
    sniff_content_type,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "scones"


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_decodes_png_and_jpeg_to_rgb_compositing_alpha_over_white():
    transparent = encode(Image.new("RGBA", (3, 2), (0, 0, 0, 0)))
    image = decode_image(transparent)
    assert image.mode == "RGB" and image.size == (3, 2)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert decode_image(encode(Image.new("L", (4, 4), 10), "JPEG")).mode == "RGB"


@pytest.mark.parametrize(
    ("data", "limits", "code", "words"),
    [
        (b"", {}, "empty_body", "0 bytes"),
        (b"not an image", {}, "not_an_image", "12 bytes"),
        (encode(Image.new("RGB", (4, 4)), "GIF"), {}, "unsupported_image_format", "'GIF'"),
        (encode(Image.new("RGB", (10, 10))), {"max_pixels": 99}, "image_too_large", "100 pixels"),
        (encode(Image.new("RGB", (10, 10))), {"max_bytes": 20}, "image_too_large", "20 bytes"),
        (encode(Image.new("RGB", (64, 64)))[:60], {}, "corrupt_image", "PNG"),
    ],
)
def test_bad_bytes_are_refused_with_a_code_and_what_was_wrong(data, limits, code, words):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, **limits)
    assert caught.value.code == code
    assert words in str(caught.value)


def test_content_type_is_sniffed_from_magic_bytes():
    assert sniff_content_type(encode(Image.new("RGB", (2, 2)))) == "image/png"
    assert sniff_content_type(encode(Image.new("RGB", (2, 2)), "JPEG")) == "image/jpeg"
    assert sniff_content_type(b"GIF89a") == "application/x-image"
    assert set(IMAGE_CONTENT_TYPES) == {"image/png", "image/jpeg", "application/x-image"}


def test_declared_pixels_reads_png_and_jpeg_headers_only():
    assert declared_pixels(encode(Image.new("RGB", (123, 45)))) == 123 * 45
    assert declared_pixels(encode(Image.new("RGB", (7, 9)), "JPEG")) == 63
    assert declared_pixels(b"\x89PNG\r\n\x1a\n") is None


def test_statistics_of_a_known_image():
    stats = image_statistics(Image.new("RGB", (300, 200), (255, 0, 0)))
    assert stats["width"] == 300 and stats["height"] == 200  # the original size, not a thumbnail
    assert stats["saturation"] == pytest.approx(1.0)
    assert stats["contrast"] == pytest.approx(0.0)
    assert stats["brightness"] == pytest.approx(0.299, abs=0.01)  # ITU-R 601 luma of red


def test_images_is_a_leaf_importing_only_errors_from_scones():
    tree = ast.parse((SRC / "images.py").read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scones")
    }
    assert imported <= {"scones.errors", "scones.settings"}


def test_staging_decodes_without_the_model_package_and_serving_parses_no_headers():
    stage = (SRC / "data" / "stage.py").read_text()
    assert "from scones.images import" in stage and "scones.model" not in stage
    app = (SRC / "serving" / "app.py").read_text()
    assert "from scones.images import" in app and "IHDR" not in app and "struct" not in app
