"""``scones invoke``: send image files to an endpoint, one answer per image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scones.errors import SconesError
from scones.serving.client import EndpointClient

# The same limit the endpoint enforces; checked here so a huge file is not even sent.
MAX_IMAGE_BYTES = 6 * 1024 * 1024


class ImageFileError(SconesError):
    """An IMAGE argument that cannot be sent (missing, a folder, too large)."""


@dataclass(frozen=True)
class ImageAnswer:
    path: Path
    class_name: str
    confidence: float
    probabilities: dict[str, float]


def read_image_file(path: Path) -> bytes:
    if not path.is_file():
        raise ImageFileError(f"IMAGE {str(path)!r} is not a file")
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ImageFileError(
            f"IMAGE {str(path)!r} is {size} bytes, over the endpoint's limit of {MAX_IMAGE_BYTES}"
        )
    return path.read_bytes()


def invoke_images(
    endpoint_url: str, paths: list[Path], *, custom_attributes: str | None = None
) -> list[ImageAnswer]:
    """Classify each image at the endpoint; class names come from its ``/info``."""
    images = [(path, read_image_file(path)) for path in paths]  # check all before sending
    answers = []
    with EndpointClient(endpoint_url) as client:
        class_names = list(client.info().get("class_names") or [])
        for path, data in images:
            result = client.invoke(data, custom_attributes=custom_attributes)
            names = class_names or [str(i) for i in range(len(result.probabilities))]
            class_name, confidence = result.top(names)
            answers.append(
                ImageAnswer(
                    path=path,
                    class_name=class_name,
                    confidence=confidence,
                    probabilities=dict(zip(names, result.probabilities, strict=False)),
                )
            )
    return answers
