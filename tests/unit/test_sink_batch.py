"""Pure batching and token logic of the ClickHouse sink: deterministic tokens and rebuilds,
routing of the two record kinds on ioc.indicators, poison rows, batch limits, replay close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.clickhouse.batch import Limits, PartitionBatch, dedup_token
from connectors.clickhouse.rows import (
    DEAD_LETTERS,
    INDICATOR_VALUES,
    INDICATOR_WINDOWS,
    READINGS,
    ROUTES,
    PoisonMessage,
    append_message,
)
from connectors.clickhouse.sink_cli import routes_for
from connectors.settings import TopicSettings
from schemas.alerts import AlertEvent, AlertState, encode_event
from schemas.indicator_values import IndicatorValue, encode_value
from schemas.indicators import WindowResult, encode_indicator
from schemas.readings import Reading, encode_batch

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _readings(n: int, start: int = 0) -> bytes:
    return encode_batch(
        Reading(f"d-{i}", "air_quality", "lx", "pm25", float(i), "ug/m3", T0, T0, "device", "s")
        for i in range(start, start + n)
    )


def _window() -> bytes:
    return encode_indicator(
        WindowResult("reading_stats_1m", "d-1", "air_quality", "lx", "w", "pm25", "ug/m3", T0,
                     T0 + timedelta(minutes=1), 3, 2.0, 1.0, 3.0, 3.0, 0.8)
    )  # fmt: skip


def _value() -> bytes:
    return encode_value(
        IndicatorValue("vn_aqi_1h", "district", "lx", "lx", T0, T0 + timedelta(hours=1), 87.0,
                       "moderate", {"pm25": 87.0}, {"dominant": "pm25"})
    )  # fmt: skip


def _batch(topic: str = "ioc.indicators", kind: str = "indicators") -> PartitionBatch:
    return PartitionBatch(topic, 2, ROUTES[kind], started=0.0)


def test_token_names_topic_partition_range_and_table() -> None:
    assert dedup_token("ioc.readings", 3, 10, 42, "readings") == "ioc.readings/3/10-42/readings"


def test_a_rebuilt_batch_is_identical_tokens_included() -> None:
    messages = [(_window(), 5), (_value(), 6), (b"garbage", 7), (_value(), 8)]

    def build() -> list[tuple[str, dict[str, list[object]], str]]:
        batch = _batch()
        for value, offset in messages:
            batch.add(value, offset, timestamp_ms=1_764_320_400_000)
        return batch.inserts()

    first, again = build(), build()
    assert first == again
    assert [(t, tok) for t, _c, tok in first] == [
        ("dead_letters", "ioc.indicators/2/5-8/dead_letters"),
        ("indicator_values", "ioc.indicators/2/5-8/indicator_values"),
        ("indicator_windows", "ioc.indicators/2/5-8/indicator_windows"),
    ]


def test_indicators_topic_routes_by_schema() -> None:
    batch = _batch()
    batch.add(_window(), 0)
    batch.add(_value(), 1)
    tables = {t: cols for t, cols, _ in batch.inserts()}
    assert tables["indicator_windows"]["count"] == [3]
    assert tables["indicator_values"]["components"] == [{"pm25": 87.0}]
    assert tables["indicator_values"]["labels"] == [{"dominant": "pm25"}]
    assert tables["indicator_values"]["kafka_offset"] == [1]
    assert batch.table_rows == {"indicator_windows": 1, "indicator_values": 1}


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b'{"schema": "ioc.readings/v1", "readings": [{"device_id": "x"}]}',
        b'{"schema": "ioc.readings/v1", "readings": [1]}',
        b'{"schema": "ioc.readings/v2", "readings": []}',
    ],
)
def test_poison_readings_become_dead_letters_with_reason(value: bytes) -> None:
    batch = _batch("ioc.readings", "readings")
    batch.add(_readings(2), 0)
    reason = batch.add(value, 1, timestamp_ms=1_764_320_400_000)
    assert reason
    tables = {t: cols for t, cols, _ in batch.inserts()}
    assert tables["readings"]["device_id"] == ["d-0", "d-1"]  # nothing of the poison row
    dead = tables["dead_letters"]
    assert dead["reason"] == ["poison_row"]
    assert dead["source"] == ["kafka:ioc.readings"]
    assert dead["source_id"] == ["2:1"]
    assert dead["detail"] == [reason]
    assert dead["payload"] == [value.decode()]
    assert dead["received_at"] == [datetime(2025, 11, 28, 9, 0, tzinfo=UTC)]
    assert batch.poison == 1
    assert (batch.first, batch.last) == (0, 1)


def test_a_time_outside_the_column_range_is_poison_not_an_insert_error() -> None:
    value = _readings(1).replace(b"2026-11-28", b"2400-01-01", 1)
    with pytest.raises(PoisonMessage, match="outside"):
        append_message(READINGS, READINGS.empty(), value, "t", 0, 0)


def test_alert_rows_carry_state_and_nullable_severity() -> None:
    state = AlertState("fp", "rule", {"a": "b"}, "firing", "major", 3.5, episode=1, revision=2)
    event = AlertEvent("fp", "rule", "fp:1", 2, "firing", T0, "system", True, "pending",
                       "firing", None, "major", state)  # fmt: skip
    batch = _batch("ioc.alerts", "alerts")
    assert batch.add(encode_event(event), 9) is None
    ((_table, cols, _token),) = batch.inserts()
    assert cols["from_severity"] == [""]
    assert cols["to_severity"] == ["major"]
    assert cols["labels"] == [{"a": "b"}]
    assert cols["value"] == [3.5]
    assert cols["fired_at"] == [None]


@pytest.mark.parametrize(
    ("rows", "size", "age", "due"),
    [(9, 10, 0.5, False), (10, 10, 0.5, True), (1, 100, 0.5, True), (1, 1, 1.0, True)],
)
def test_due_by_rows_bytes_or_age(rows: int, size: int, age: float, due: bool) -> None:
    batch = _batch("ioc.readings", "readings")
    batch.rows, batch.size = rows, size
    assert batch.due(Limits(max_rows=10, max_bytes=100, max_age_s=1.0), now=age) is due


def test_a_replayed_batch_closes_exactly_at_the_recorded_end() -> None:
    batch = _batch("ioc.readings", "readings")
    batch.close_at = 3
    limits = Limits(max_rows=1, max_bytes=1, max_age_s=0.0)
    for offset in range(3):
        batch.add(_readings(5, offset * 5), offset)
        assert not batch.due(limits, now=100.0)  # limits do not end a replay early
    batch.add(_readings(5, 15), 3)
    assert batch.due(limits, now=100.0)


def test_routes_for_names_topics_from_settings() -> None:
    topics = TopicSettings(readings="r", indicators="i", alerts="a", events="e", deadletter="d")
    routes = routes_for("readings, indicators,deadletter", topics, "n")
    assert list(routes) == ["r", "i", "d"]
    assert routes["i"].specs == (INDICATOR_WINDOWS, INDICATOR_VALUES)
    assert routes["d"].specs == (DEAD_LETTERS,)
    assert list(routes_for("notifications", topics, "n")) == ["n"]
    with pytest.raises(ValueError, match="unknown record kind"):
        routes_for("readings,metrics", topics, "n")


@pytest.mark.parametrize(
    "text",
    ["2026-11-28T09:00:00.123Z", "2026-11-28T16:00:00.123+07:00", "2026-11-28T09:00:00.123000Z"],
)
def test_reading_times_become_millisecond_ticks(text: str) -> None:
    cols = READINGS.empty()
    value = _readings(1).replace(b"2026-11-28T09:00:00.000Z", text.encode())
    append_message(READINGS, cols, value, "t", 0, 0)
    expected = int(datetime(2026, 11, 28, 9, 0, 0, 123_000, tzinfo=UTC).timestamp() * 1000)
    assert cols["event_time"] == [expected]
    assert cols["receive_time"] == [expected]
