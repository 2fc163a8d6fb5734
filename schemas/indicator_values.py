"""Derived city indicators (VN_AQI, flood level, congestion, service KPIs) on ``ioc.indicators``.

``schemas.indicators`` carries the per-device window statistics (``ioc.indicators/v1``);
everything computed *from* them — per station, ward, district or agency — travels as one
generic record, so one ClickHouse table family (``indicator_values``) and one sink path serve
every derived indicator. Wire format (JSON, one record per Kafka message)::

    {"schema": "ioc.indicator-values/v1", "indicator": "vn_aqi_1h",
     "subject_kind": "district", "subject_id": "long-xuyen", "district": "long-xuyen",
     "window_start": "2026-11-28T09:00:00.000Z", "window_end": "2026-11-28T10:00:00.000Z",
     "value": 87.0, "level": "moderate",
     "components": {"pm25": 87.0, "pm10": 41.0}, "labels": {"dominant": "pm25"},
     "revision": 0}

Message key (UTF-8): ``"{indicator}|{subject_kind}:{subject_id}|{window_start}"``.

Guarantees:

* ``subject_kind`` is one of :data:`SUBJECT_KINDS`; ``district`` is the subject's district
  (equal to ``subject_id`` for a district subject; ``""`` for a city-wide one).
* ``value`` is finite; ``level`` is the indicator's named level (AQI colour band, flood alarm
  level, congestion level, ...) or ``""`` when the indicator has none.
* ``components`` maps names to finite numbers (sub-indices, counts, rates); ``labels`` maps
  names to strings (dominant pollutant, ...). Both may be empty.
* ``revision`` orders versions of one window (same key); a consumer keeps the highest, and
  equal key and revision means identical content (``ReplacingMergeTree(revision)``).
* :func:`decode_value` raises :class:`IndicatorValueFormatError` (a ``ValueError``) for
  anything that is not a v1 record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from schemas.readings import format_time, parse_time

SCHEMA: Final = "ioc.indicator-values/v1"
SUBJECT_KINDS: Final = frozenset({"device", "ward", "district", "city", "agency"})


class IndicatorValueFormatError(ValueError):
    """A value on ``ioc.indicators`` is not a valid ``ioc.indicator-values/v1`` record."""


@dataclass(frozen=True, slots=True)
class IndicatorValue:
    """One derived indicator of one subject over one window."""

    indicator: str
    subject_kind: str
    subject_id: str
    district: str
    window_start: datetime
    window_end: datetime
    value: float
    level: str = ""
    components: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    revision: int = 0

    def __post_init__(self) -> None:
        if self.subject_kind not in SUBJECT_KINDS:
            raise ValueError(f"subject_kind must be one of {sorted(SUBJECT_KINDS)}")
        if self.window_start.tzinfo is None or self.window_end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if not math.isfinite(self.value):
            raise ValueError("value must be finite")
        if any(not math.isfinite(v) for v in self.components.values()):
            raise ValueError("components must be finite")
        if self.revision < 0:
            raise ValueError("revision must be >= 0")

    @property
    def key(self) -> str:
        """The Kafka message key of this record."""
        return (
            f"{self.indicator}|{self.subject_kind}:{self.subject_id}|"
            f"{format_time(self.window_start)}"
        )


def value_to_dict(v: IndicatorValue) -> dict[str, Any]:
    """The record as the JSON object used on the wire."""
    return {
        "schema": SCHEMA,
        "indicator": v.indicator,
        "subject_kind": v.subject_kind,
        "subject_id": v.subject_id,
        "district": v.district,
        "window_start": format_time(v.window_start),
        "window_end": format_time(v.window_end),
        "value": v.value,
        "level": v.level,
        "components": dict(v.components),
        "labels": dict(v.labels),
        "revision": v.revision,
    }


def encode_value(v: IndicatorValue) -> bytes:
    """Encode a record as one ``ioc.indicators`` message value."""
    return orjson.dumps(value_to_dict(v))


def decode_value(data: bytes) -> IndicatorValue:
    """Parse an ``ioc.indicator-values/v1`` message value; raises on anything else."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise IndicatorValueFormatError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise IndicatorValueFormatError(f"not a {SCHEMA} record")
    try:
        components = obj.get("components", {})
        labels = obj.get("labels", {})
        revision = obj.get("revision", 0)
        if not isinstance(components, dict) or not isinstance(labels, dict):
            raise TypeError("components and labels must be objects")
        if not isinstance(revision, int):
            raise TypeError("revision must be an integer")
        return IndicatorValue(
            indicator=str(obj["indicator"]),
            subject_kind=str(obj["subject_kind"]),
            subject_id=str(obj["subject_id"]),
            district=str(obj.get("district", "")),
            window_start=parse_time(obj["window_start"]),
            window_end=parse_time(obj["window_end"]),
            value=float(obj["value"]),
            level=str(obj.get("level", "")),
            components={str(k): float(v) for k, v in components.items()},
            labels={str(k): str(v) for k, v in labels.items()},
            revision=revision,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IndicatorValueFormatError(f"invalid indicator value: {exc}") from exc
