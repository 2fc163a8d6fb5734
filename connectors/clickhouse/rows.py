"""Turn Kafka message values into ClickHouse columns, one table per topic (pure).

Each ``TableSpec`` names a table, its columns and a function that appends the rows of one
message to column lists. A value that cannot be decoded raises ``PoisonMessage``; the sink
then writes it to ``dead_letters`` with the reason instead of retrying forever.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.readings import decode_batch_objects, parse_time

Columns = dict[str, list[Any]]


class PoisonMessage(ValueError):
    """A message value that cannot become rows of its table."""


@dataclass(frozen=True)
class TableSpec:
    table: str
    columns: tuple[str, ...]
    append: Callable[[Columns, bytes], int]

    def empty(self) -> Columns:
        return {c: [] for c in self.columns}


def _append_readings(cols: Columns, value: bytes) -> int:
    try:
        objs = decode_batch_objects(value)
        staged = [
            (
                str(o["device_id"]),
                str(o["device_kind"]),
                str(o["district"]),
                str(o.get("ward", "")),
                str(o["metric"]),
                float(o["value"]),
                str(o["unit"]),
                parse_time(o["event_time"]),
                parse_time(o["receive_time"]),
                str(o.get("time_source", "device")),
                str(o.get("source", "")),
            )
            for o in objs
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise PoisonMessage(f"not a readings batch: {exc}") from exc
    names = READINGS.columns[:11]
    for row in staged:
        for name, v in zip(names, row, strict=True):
            cols[name].append(v)
    return len(staged)


def _append_indicator(cols: Columns, value: bytes) -> int:
    try:
        o = orjson.loads(value)
        row = (
            str(o["indicator"]),
            str(o["device_id"]),
            str(o.get("device_kind", "")),
            str(o.get("district", "")),
            str(o.get("ward", "")),
            str(o["metric"]),
            str(o.get("unit", "")),
            parse_time(o["window_start"]),
            parse_time(o["window_end"]),
            int(o["count"]),
            float(o["mean"]),
            float(o["min"]),
            float(o["max"]),
            float(o.get("last", o["mean"])),
            float(o.get("stddev", 0.0)),
            int(o.get("revision", 0)),
        )
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise PoisonMessage(f"not an indicator record: {exc}") from exc
    for name, v in zip(INDICATORS.columns[:16], row, strict=True):
        cols[name].append(v)
    return 1


def _append_dead_letter(cols: Columns, value: bytes) -> int:
    try:
        o = orjson.loads(value)
        row = (
            parse_time(o["received_at"]),
            str(o["reason"]),
            str(o.get("detail", "")),
            str(o.get("source", "")),
            str(o.get("source_id", "")),
            base64.b64decode(o.get("payload_b64", "")).decode("utf-8", errors="replace"),
        )
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise PoisonMessage(f"not a dead letter: {exc}") from exc
    for name, v in zip(DEAD_LETTERS.columns[:6], row, strict=True):
        cols[name].append(v)
    return 1


_KAFKA = ("kafka_topic", "kafka_partition", "kafka_offset")

READINGS = TableSpec(
    "readings",
    (
        "device_id",
        "device_kind",
        "district",
        "ward",
        "metric",
        "value",
        "unit",
        "event_time",
        "receive_time",
        "time_source",
        "source",
        *_KAFKA,
    ),
    _append_readings,
)
INDICATORS = TableSpec(
    "indicator_windows",
    (
        "indicator",
        "device_id",
        "device_kind",
        "district",
        "ward",
        "metric",
        "unit",
        "window_start",
        "window_end",
        "count",
        "mean",
        "min",
        "max",
        "last",
        "stddev",
        "revision",
        *_KAFKA,
    ),
    _append_indicator,
)
DEAD_LETTERS = TableSpec(
    "dead_letters",
    ("received_at", "reason", "detail", "source", "source_id", "payload", *_KAFKA),
    _append_dead_letter,
)


def append_message(
    spec: TableSpec, cols: Columns, value: bytes, topic: str, partition: int, offset: int
) -> int:
    """Append one message's rows (with their Kafka coordinates); returns the row count."""
    n = spec.append(cols, value)
    cols["kafka_topic"].extend([topic] * n)
    cols["kafka_partition"].extend([partition] * n)
    cols["kafka_offset"].extend([offset] * n)
    return n
