"""The readings row builder's fast path gives exactly what the field-by-field path gives (or
hands over to it), and the wire types the sink encodes inserts with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from connectors.clickhouse.client import wire_type
from connectors.clickhouse.rows import (
    READINGS,
    ColumnBlock,
    PoisonMessage,
    _readings_checked,
    _readings_fast,
    append_message,
)


def _reading(**changes: Any) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "device_id": "aq-001",
        "device_kind": "air_quality",
        "district": "long-xuyen",
        "ward": "my-binh",
        "metric": "pm25",
        "value": 35.2,
        "unit": "ug/m3",
        "event_time": "2026-11-28T09:00:00.000Z",
        "receive_time": "2026-11-28T09:00:00.412Z",
        "time_source": "device",
        "source": "mqtt:ioc/long-xuyen/air_quality/aq-001/telemetry",
    }
    reading.update(changes)
    return {k: v for k, v in reading.items() if v is not ...}


def _message(*readings: dict[str, Any]) -> bytes:
    return orjson.dumps({"schema": "ioc.readings/v1", "readings": list(readings)})


def _columns(block: ColumnBlock) -> list[list[Any]]:
    return [list(c) for c in block.columns]


def test_fast_path_columns_equal_the_checked_path() -> None:
    objs = [_reading(), _reading(device_id="aq-002", value=7.0, time_source="receive")]
    fast = _readings_fast(objs)
    assert fast is not None
    assert _columns(fast) == _columns(_readings_checked(objs))
    nine = int(datetime(2026, 11, 28, 9, tzinfo=UTC).timestamp()) * 1000
    assert fast.columns[7] == [nine, nine]
    assert fast.columns[8] == [nine + 412, nine + 412]


@pytest.mark.parametrize(
    "changes",
    [
        {"ward": ...},  # optional fields left out
        {"source": ..., "time_source": ...},
        {"device_id": 17},  # coerced to text, as the checked path does
        {"value": 35},  # an integer value
        {"value": True},
        {"event_time": "2026-11-28T16:00:00.000+07:00"},  # an offset instead of Z
        {"event_time": "2026-11-28T09:00:00Z"},  # no milliseconds
    ],
)
def test_unusual_readings_give_the_same_columns_either_way(changes: dict[str, Any]) -> None:
    objs = [_reading(), _reading(**changes)]
    checked = _columns(_readings_checked(objs))
    fast = _readings_fast(objs) if "ward" not in changes and "source" not in changes else None
    if fast is not None:
        assert _columns(fast) == checked
    cols = READINGS.empty()
    assert append_message(READINGS, cols, _message(*objs), "t", 0, 5) == 2
    assert [cols[c] for c in READINGS.data_columns] == checked


@pytest.mark.parametrize(
    "changes",
    [
        {"device_id": ...},
        {"value": "n/a"},
        {"value": None},
        {"time_source": "guess"},
        {"event_time": "2026-11-28T09:00:00"},  # naive
        {"event_time": "yesterday"},
        {"event_time": 1_764_320_400_000},
        {"receive_time": "2400-01-01T00:00:00.000Z"},  # outside DateTime64's range here
        {"receive_time": "1899-12-31T23:59:59.999Z"},
    ],
)
def test_bad_readings_are_poison_and_append_nothing(changes: dict[str, Any]) -> None:
    cols = READINGS.empty()
    with pytest.raises(PoisonMessage):
        append_message(READINGS, cols, _message(_reading(), _reading(**changes)), "t", 0, 5)
    assert all(not column for column in cols.values())


def test_not_a_reading_object_is_poison() -> None:
    with pytest.raises(PoisonMessage):
        append_message(READINGS, READINGS.empty(), _message(_reading(), "x"), "t", 0, 5)  # type: ignore[arg-type]


def test_edges_of_the_time_range_are_kept() -> None:
    objs = [
        _reading(event_time="1900-01-01T00:00:00.000Z", receive_time="2299-12-31T00:00:00.000Z")
    ]
    fast = _readings_fast(objs)
    assert fast is not None
    assert _columns(fast) == _columns(_readings_checked(objs))


@pytest.mark.parametrize(
    ("table_type", "wire"),
    [
        ("LowCardinality(String)", "String"),
        ("LowCardinality(Nullable(String))", "Nullable(String)"),
        ("Enum8('device' = 1, 'receive' = 2)", "String"),
        ("DateTime64(3, 'UTC')", "DateTime64(3, 'UTC')"),
        ("Map(String, String)", "Map(String, String)"),
        ("LowCardinality(UInt32)", "LowCardinality(UInt32)"),
        ("Nullable(String)", "Nullable(String)"),
    ],
)
def test_wire_types(table_type: str, wire: str) -> None:
    assert wire_type(table_type) == wire
