"""filter_inferences: confident predictions pass, unsure ones raise ThresholdConfidenceNotMet."""

from __future__ import annotations

import json

import pytest

from scones.functions import filter_inferences
from scones.functions.filter_inferences import (
    ConfigurationError,
    InvalidEvent,
    ThresholdConfidenceNotMet,
    handler,
)


def _event(inferences: object, **extra: object) -> dict:
    return {
        "s3_bucket": "b",
        "s3_key": "test/x.png",
        "image_data": "",
        "inferences": inferences,
        **extra,
    }


def test_confident_prediction_passes_the_event_on_unchanged() -> None:
    event = _event([0.97, 0.03])
    result = handler(event, None)
    assert result == {"statusCode": 200, "body": event}
    json.dumps(result)  # Lambda serialises the return value


def test_exactly_the_threshold_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRESHOLD", "0.8")
    assert handler(_event([0.2, 0.8]), None)["statusCode"] == 200


def test_unsure_prediction_raises_naming_key_class_confidence_threshold() -> None:
    with pytest.raises(ThresholdConfidenceNotMet) as info:
        handler(_event([0.4, 0.6], classes=["bicycle", "motorcycle"]), None)
    message = str(info.value)
    assert "test/x.png" in message and "'motorcycle'" in message
    assert "0.6000" in message and "0.93" in message
    assert isinstance(info.value, Exception)  # a real exception, not a string


def test_without_class_names_the_top_class_is_named_by_index() -> None:
    with pytest.raises(ThresholdConfidenceNotMet, match=r"class 1 has confidence 0\.6000"):
        handler(_event([0.4, 0.6]), None)


def test_threshold_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRESHOLD", "0.5")
    assert handler(_event([0.4, 0.6]), None)["statusCode"] == 200
    monkeypatch.setenv("THRESHOLD", "0.99")
    with pytest.raises(ThresholdConfidenceNotMet, match=r"threshold 0\.99"):
        handler(_event([0.02, 0.98]), None)


@pytest.mark.parametrize("raw", ["high", "1.5", "-0.1", "nan"])
def test_bad_threshold_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("THRESHOLD", raw)
    with pytest.raises(ConfigurationError, match="THRESHOLD"):
        handler(_event([0.97, 0.03]), None)


@pytest.mark.parametrize(
    "event",
    [
        None,
        ["not", "an", "object"],
        {"s3_key": "test/x.png"},
        _event([]),
        _event("0.9"),
        _event([0.5, "0.5"]),
        _event([True, False]),
        _event([float("nan"), 0.5]),
    ],
)
def test_bad_events_raise_invalid_event(event: object) -> None:
    with pytest.raises(InvalidEvent):
        handler(event, None)


def test_the_module_needs_only_the_standard_library() -> None:
    from scones.functions.packaging import foreign_imports, function_source

    assert foreign_imports(function_source("filter_inferences")) == []
    assert filter_inferences.DEFAULT_THRESHOLD == 0.93
