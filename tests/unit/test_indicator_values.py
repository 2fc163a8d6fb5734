"""The derived-indicator wire format round-trips and rejects what is not v1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.indicator_values import (
    IndicatorValue,
    IndicatorValueFormatError,
    decode_value,
    encode_value,
)

START = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def _value(**over: object) -> IndicatorValue:
    fields: dict[str, object] = {
        "indicator": "vn_aqi_1h",
        "subject_kind": "district",
        "subject_id": "long-xuyen",
        "district": "long-xuyen",
        "window_start": START,
        "window_end": START + timedelta(hours=1),
        "value": 87.0,
        "level": "moderate",
        "components": {"pm25": 87.0, "pm10": 41.0},
        "labels": {"dominant": "pm25"},
    }
    fields.update(over)
    return IndicatorValue(**fields)  # type: ignore[arg-type]


def test_round_trip_and_key() -> None:
    v = _value(revision=2)
    assert decode_value(encode_value(v)) == v
    assert v.key == "vn_aqi_1h|district:long-xuyen|2026-11-28T02:00:00.000Z"


@pytest.mark.parametrize(
    "over",
    [
        {"subject_kind": "planet"},
        {"value": float("nan")},
        {"components": {"x": float("inf")}},
        {"window_end": START},
        {"window_start": datetime(2026, 11, 28, 2, 0)},  # noqa: DTZ001 - naive on purpose
        {"revision": -1},
    ],
)
def test_invalid_values_are_refused(over: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        _value(**over)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"schema": "ioc.indicators/v1"}',
        b'{"schema": "ioc.indicator-values/v1", "indicator": "x"}',
    ],
)
def test_decode_refuses_what_is_not_v1(data: bytes) -> None:
    with pytest.raises(IndicatorValueFormatError):
        decode_value(data)
