"""Time parsing and formatting, in one place: every time is UTC and every format ISO 8601.

The one grammar for a moment a user types (``--since``, ``--until``): an ISO 8601 time
(UTC when it has no zone; ``Z`` or an offset otherwise) or an age back from now: a number
and a unit, ``90s``, ``30m``, ``2h``, ``7d``, ``1w`` (``1.5h`` works too).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from scones.errors import ParameterError

AGE_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
AGE_EXAMPLES = "30m, 24h, 7d, 1w"

TimeSpec = Literal["seconds", "milliseconds", "microseconds"]


def utc_now() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_z(moment: datetime, timespec: TimeSpec = "seconds") -> str:
    """``2026-11-26T15:00:00Z``: UTC with a Z, as AWS writes times (and SageMaker's capture
    with milliseconds)."""
    return as_utc(moment).isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_utc(moment: datetime) -> str:
    """``2026-11-26T15:00:00.000000+00:00``: one fixed width, so the text sorts as times do
    (the form databases store)."""
    return as_utc(moment).isoformat(timespec="microseconds")


def table_time(moment: datetime) -> str:
    """``2026-11-26 15:00:00``: a UTC time to the second, for a table cell."""
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S")


def parse_age(text: str) -> timedelta | None:
    """An age such as ``90m``, ``24h``, ``7d``, ``1w`` (units s, m, h, d, w); None when not one."""
    match = _AGE.match(text.strip().lower())
    if match is None:
        return None
    return timedelta(seconds=float(match[1]) * AGE_UNIT_SECONDS[match[2]])


def parse_moment(text: str, *, parameter: str = "since", now: datetime | None = None) -> datetime:
    """A moment in the one grammar (see the module docstring), as an aware UTC datetime.

    ``parameter`` is what the error names when ``text`` is neither form.
    """
    value = text.strip()
    age = parse_age(value)
    if age is not None:
        return (now or utc_now()) - age
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ParameterError(
            f"{{{parameter}}} {text!r} is not a time: give ISO 8601 (2026-11-26T15:00:00Z) or "
            f"an age such as {AGE_EXAMPLES}",
            parameter,
        ) from None
    return as_utc(moment)


def parse_optional_moment(
    text: str | None, *, parameter: str = "since", now: datetime | None = None
) -> datetime | None:
    """``parse_moment``, with None or an empty text meaning "no bound"."""
    if text is None or not text.strip():
        return None
    return parse_moment(text, parameter=parameter, now=now)
