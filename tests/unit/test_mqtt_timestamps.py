"""Device timestamps: epoch seconds vs milliseconds, ISO 8601, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from connectors.mqtt.timestamps import (
    MS_THRESHOLD,
    TimestampError,
    datetime_to_us,
    parse_timestamp,
    seconds_to_us,
    us_to_datetime,
)

T = datetime(2026, 11, 28, 2, 0, 0, 123000, tzinfo=UTC)
T_US = 1_795_831_200_123_000


def test_the_reference_time() -> None:
    assert datetime_to_us(T) == T_US
    assert us_to_datetime(T_US) == T


@pytest.mark.parametrize(
    ("ts", "expected_us"),
    [
        (1_795_831_200_123, T_US),  # epoch milliseconds (int)
        (1_795_831_200_123.0, T_US),  # epoch milliseconds (float)
        (1_795_831_200_123.5, T_US + 500),  # sub-millisecond kept to the microsecond
        (1_795_831_200, T_US - 123_000),  # epoch seconds (int)
        (1_795_831_200.123, T_US),  # epoch seconds (float), rounded to the microsecond
        (1.276020076001e09, 1_276_020_076_001_000),  # RFC 8428's example time
        (0, 0),
        (-1, -1_000_000),  # before 1970: read, then judged too old by the validator
        (99_999_999_999, 99_999_999_999_000_000),  # just below the threshold: seconds
        (100_000_000_000, 100_000_000_000_000),  # at the threshold: milliseconds (1973)
        ("2026-11-28T02:00:00.123Z", T_US),
        ("2026-11-28T09:00:00.123+07:00", T_US),
        ("2026-11-28T09:00:00.123+0700", T_US),
        ("20261128T020000.123Z", T_US),  # ISO 8601 basic format
        ("2026-11-28T02:00:00.123456789Z", T_US + 456),  # nanoseconds truncated
    ],
)
def test_timestamps_are_read(ts: object, expected_us: int) -> None:
    assert parse_timestamp(ts) == expected_us


def test_threshold_is_documented_value() -> None:
    assert MS_THRESHOLD == 1e11


@pytest.mark.parametrize(
    ("ts", "message"),
    [
        ("2026-11-28T09:00:00", "no UTC offset"),  # local time: refused, not guessed
        ("2026-11-28", "no UTC offset"),
        ("yesterday", "not ISO 8601"),
        ("1795831200123", "not ISO 8601"),  # digits in a string are not a number
        ("2026-11-28T02:00:00Z" + " " * 60, "longer than 64"),
        (True, "a boolean"),
        (None, "null"),
        ({"$date": 1}, "an object"),
        ([1], "an array"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
    ],
)
def test_bad_timestamps_are_refused(ts: object, message: str) -> None:
    with pytest.raises(TimestampError, match=message):
        parse_timestamp(ts)


@pytest.mark.parametrize("ts", [1e308, -1e308, 10**40, -(10**40), 1e20])
def test_huge_timestamps_stay_integers_beyond_the_calendar(ts: float) -> None:
    us = parse_timestamp(ts)
    assert abs(us) >= 10**18  # far outside any acceptance window, judged there, no crash
    with pytest.raises(OverflowError):
        us_to_datetime(us)


def test_seconds_to_us_refuses_non_finite() -> None:
    with pytest.raises(TimestampError):
        seconds_to_us(float("-inf"))


def test_naive_datetimes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        datetime_to_us(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    ict = timezone(timedelta(hours=7))
    assert datetime_to_us(T.astimezone(ict)) == T_US
