"""Closed-window indicator records: the value format of ``ioc.indicators``.

Wire format (JSON, UTF-8, one record per Kafka message)::

    {"schema": "ioc.indicators/v1", "indicator": "reading_stats_1m",
     "device_id": "aq-lx-001", "device_kind": "air_quality", "district": "long-xuyen",
     "ward": "my-binh", "metric": "pm25", "unit": "ug/m3",
     "window_start": "2026-11-28T09:00:00.000Z", "window_end": "2026-11-28T09:01:00.000Z",
     "count": 12, "mean": 35.1, "min": 30.2, "max": 40.8, "last": 33.0, "stddev": 2.9,
     "revision": 0}

Message key (UTF-8): ``"{indicator}|{device_id}|{metric}|{window_start}"`` with
``window_start`` written as on the wire (UTC, milliseconds, ``Z``); see :func:`indicator_key`.

Guarantees:

* Every time is UTC with a ``Z`` suffix and millisecond precision, like ``ioc.readings``.
* Windows are half-open: ``[window_start, window_end)``.
* ``stddev`` is the population standard deviation (``statistics.pstdev``), 0.0 for one value;
  ``last`` is the value with the greatest event time (on a tie, the one processed last).
* ``revision`` orders versions of the same window (same key): a consumer keeps the record with
  the highest revision, and records with equal key and revision are identical, so consumers
  may deduplicate by key (the ClickHouse table is a ``ReplacingMergeTree(revision)``). The
  stream worker emits revision 0 when a window closes; a later update of the same window
  (for example a future "emit early, then correct" mode) must carry a higher revision.
* :func:`decode_indicator` raises :class:`IndicatorFormatError` (a ``ValueError``) for anything
  that is not a v1 record; it never returns a partially filled record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

import orjson

from schemas.readings import format_time, parse_time

SCHEMA: Final = "ioc.indicators/v1"

#: Indicator id of the 1-minute per-device, per-metric reading statistics.
READING_STATS_1M: Final = "reading_stats_1m"


# Window bounds repeat across thousands of records (one per device and metric): format once.
_format_bound = lru_cache(maxsize=8192)(format_time)


class IndicatorFormatError(ValueError):
    """A value on ``ioc.indicators`` does not follow the v1 wire format."""


@dataclass(frozen=True, slots=True)
class WindowResult:
    """Statistics of one metric of one device over one closed event-time window."""

    indicator: str
    device_id: str
    device_kind: str
    district: str
    ward: str
    metric: str
    unit: str
    window_start: datetime
    window_end: datetime
    count: int
    mean: float
    min: float
    max: float
    last: float
    stddev: float
    revision: int = 0

    def __post_init__(self) -> None:
        if self.window_start.tzinfo is None or self.window_end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if self.count < 1:
            raise ValueError("a window result needs at least one value")
        if self.revision < 0:
            raise ValueError("revision must be >= 0")

    @property
    def key(self) -> str:
        """The Kafka message key of this record (see :func:`indicator_key`)."""
        return indicator_key(self.indicator, self.device_id, self.metric, self.window_start)


def indicator_key(indicator: str, device_id: str, metric: str, window_start: datetime) -> str:
    """``"{indicator}|{device_id}|{metric}|{window_start as UTC ISO with Z}"``."""
    return f"{indicator}|{device_id}|{metric}|{_format_bound(window_start)}"


def indicator_to_dict(result: WindowResult) -> dict[str, Any]:
    """The record as the JSON object used on the wire."""
    return {
        "schema": SCHEMA,
        "indicator": result.indicator,
        "device_id": result.device_id,
        "device_kind": result.device_kind,
        "district": result.district,
        "ward": result.ward,
        "metric": result.metric,
        "unit": result.unit,
        "window_start": _format_bound(result.window_start),
        "window_end": _format_bound(result.window_end),
        "count": result.count,
        "mean": result.mean,
        "min": result.min,
        "max": result.max,
        "last": result.last,
        "stddev": result.stddev,
        "revision": result.revision,
    }


def encode_indicator(result: WindowResult) -> bytes:
    """Encode a record as one ``ioc.indicators`` message value."""
    return orjson.dumps(indicator_to_dict(result))


def _finite(obj: dict[str, Any], name: str) -> float:
    value = float(obj[name])
    if not math.isfinite(value):
        raise ValueError(f"{name} is not finite")
    return value


def decode_indicator(data: bytes) -> WindowResult:
    """Parse a ``ioc.indicators`` message value; raises ``IndicatorFormatError`` if malformed."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise IndicatorFormatError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise IndicatorFormatError(f"not a {SCHEMA} record")
    try:
        count = obj["count"]
        revision = obj.get("revision", 0)
        if not isinstance(count, int) or not isinstance(revision, int):
            raise TypeError("count and revision must be integers")
        return WindowResult(
            indicator=str(obj["indicator"]),
            device_id=str(obj["device_id"]),
            device_kind=str(obj.get("device_kind", "")),
            district=str(obj.get("district", "")),
            ward=str(obj.get("ward", "")),
            metric=str(obj["metric"]),
            unit=str(obj.get("unit", "")),
            window_start=parse_time(obj["window_start"]),
            window_end=parse_time(obj["window_end"]),
            count=count,
            mean=_finite(obj, "mean"),
            min=_finite(obj, "min"),
            max=_finite(obj, "max"),
            last=_finite(obj, "last"),
            stddev=_finite(obj, "stddev"),
            revision=revision,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IndicatorFormatError(f"invalid indicator record: {exc}") from exc
