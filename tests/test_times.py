"""scones.times: the one grammar for --since/--until and the ISO formats every module writes."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest

from scones.errors import ParameterError, SconesError
from scones.times import (
    iso_utc,
    iso_z,
    parse_age,
    parse_moment,
    parse_optional_moment,
    table_time,
)

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("1.5h", timedelta(minutes=90)),
        (" 2 D ", timedelta(days=2)),
    ],
)
def test_ages_in_every_unit(text: str, age: timedelta) -> None:
    assert parse_age(text) == age
    assert parse_moment(text, now=NOW) == NOW - age


@pytest.mark.parametrize("text", ["", "yesterday", "5y", "m5", "-3h", "3 hours"])
def test_not_an_age(text: str) -> None:
    assert parse_age(text) is None


def test_iso_times_with_z_offset_or_no_zone_are_utc() -> None:
    assert parse_moment("2026-11-26T14:00:00Z") == datetime(2026, 11, 26, 14, tzinfo=UTC)
    assert parse_moment("2026-11-26T14:00:00") == datetime(2026, 11, 26, 14, tzinfo=UTC)
    assert parse_moment("2026-11-26T16:00:00+02:00") == datetime(2026, 11, 26, 14, tzinfo=UTC)
    assert parse_moment("2026-11-26") == datetime(2026, 11, 26, tzinfo=UTC)
    assert parse_moment("2026-11-26T14:00:00+02:00").tzinfo is UTC


def test_an_unreadable_time_names_the_parameter_and_the_value() -> None:
    with pytest.raises(ParameterError) as caught:
        parse_moment("last tuesday", parameter="until")
    error = caught.value
    assert str(error).startswith("until 'last tuesday' is not a time")
    assert "1w" in str(error)  # the message shows the grammar
    assert error.parameters == ("until",)
    assert error.naming({"until": "--until"}).startswith("--until 'last tuesday' is not a time")


def test_no_bound_for_none_or_empty() -> None:
    assert parse_optional_moment(None) is None
    assert parse_optional_moment("  ") is None
    assert parse_optional_moment("1h", now=NOW) == NOW - timedelta(hours=1)


def test_formats() -> None:
    moment = datetime(2026, 11, 26, 15, 4, 5, 678901, tzinfo=timezone(timedelta(hours=1)))
    assert iso_z(moment) == "2026-11-26T14:04:05Z"
    assert iso_z(moment, "milliseconds") == "2026-11-26T14:04:05.678Z"
    assert iso_utc(moment) == "2026-11-26T14:04:05.678901+00:00"
    assert table_time(moment) == "2026-11-26 14:04:05"
    # The stored form has one width, so text order is time order.
    earlier, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert iso_utc(earlier) < iso_utc(later)
    assert len(iso_utc(earlier)) == len(iso_utc(later))


def test_errors_keep_their_parameters_across_processes() -> None:
    error = SconesError("{md5} 'xyz' is not an MD5", "md5")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == "md5 'xyz' is not an MD5"
    assert copy.naming({"md5": "--md5"}) == "--md5 'xyz' is not an MD5"
    assert str(SconesError("plain")) == "plain"  # no parameters: the text as written
