"""Lambda ``filterInferences``: pass confident predictions on, fail loudly on unsure ones.

Event: the classifier's body, ``{"inferences": [p0, p1, ...], "s3_key", ...}`` with an
optional ``classes`` list naming the classes in the same order.
``THRESHOLD`` (environment, default 0.93): the top probability must be at least this.
Returns ``{"statusCode": 200, "body": <the event>}``, else raises ``ThresholdConfidenceNotMet``.

Standard library only, so it packages as a plain Lambda zip.
"""

from __future__ import annotations

import math
import os
from typing import Any

DEFAULT_THRESHOLD = 0.93


class FilterError(Exception):
    """Base of this function's errors; the class name is the Lambda errorType."""


class InvalidEvent(FilterError):
    """The event lacks ``inferences`` or they are not a list of probabilities."""


class ConfigurationError(FilterError):
    """``THRESHOLD`` is not a number between 0 and 1."""


class ThresholdConfidenceNotMet(FilterError):
    """The top class's probability is below the threshold: the prediction is not routed."""


def threshold() -> float:
    raw = os.environ.get("THRESHOLD", "")
    if not raw:
        return DEFAULT_THRESHOLD
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"THRESHOLD must be a number between 0 and 1, got {raw!r}")
    return value


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Return the event when ``max(inferences) >= THRESHOLD``; raise otherwise."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(event).__name__}")
    if "inferences" not in event:
        raise InvalidEvent(f"event has no 'inferences' field (keys: {sorted(event)})")
    inferences = event["inferences"]
    if (
        not isinstance(inferences, list)
        or not inferences
        or not all(
            isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p)
            for p in inferences
        )
    ):
        raise InvalidEvent(
            f"event field 'inferences' must be a non-empty list of numbers, got {inferences!r}"
        )
    limit = threshold()
    top_index = max(range(len(inferences)), key=inferences.__getitem__)
    confidence = float(inferences[top_index])
    if confidence >= limit:
        return {"statusCode": 200, "body": event}
    raise ThresholdConfidenceNotMet(
        f"image {event.get('s3_key', '(no s3_key)')!r}: top class "
        f"{_class_name(event.get('classes'), top_index)} has confidence {confidence:.4f}, "
        f"below the threshold {limit:g}"
    )


def _class_name(classes: Any, index: int) -> str:
    if isinstance(classes, list) and index < len(classes) and isinstance(classes[index], str):
        return repr(classes[index])
    return f"class {index}"
