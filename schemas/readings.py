"""Canonical sensor readings and the batch envelope that carries them on ``ioc.readings``.

Wire format (JSON, UTF-8)::

    {"schema": "ioc.readings/v1",
     "readings": [{"device_id": "aq-lx-001", "device_kind": "air_quality",
                   "district": "long-xuyen", "ward": "my-binh", "metric": "pm25",
                   "value": 35.2, "unit": "ug/m3",
                   "event_time": "2026-11-28T09:00:00.000Z",
                   "receive_time": "2026-11-28T09:00:00.412Z",
                   "time_source": "device",
                   "source": "mqtt:ioc/long-xuyen/air_quality/aq-lx-001/telemetry"}]}

Guarantees:

* Every time on the wire is UTC, written with a ``Z`` suffix and millisecond precision.
* ``time_source`` says whether ``event_time`` came from the device (``device``) or was
  filled in with the receive time because the device sent none (``receive``).
* All readings in one batch belong to devices whose id hashes to the Kafka partition the
  batch is written to (see ``connectors.kafka.partitioning``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

SCHEMA: Final = "ioc.readings/v1"

TimeSource = Literal["device", "receive"]


class ReadingFormatError(ValueError):
    """A batch on ``ioc.readings`` does not follow the v1 wire format."""


def format_time(value: datetime) -> str:
    """Render an aware datetime as UTC ISO 8601 with milliseconds and a ``Z`` suffix."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not allowed; pass a timezone-aware datetime")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time that carries an offset (``Z`` or ``+07:00``) into aware UTC."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"time without timezone: {text!r}")
    return parsed.astimezone(UTC)


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime."""
    return int(value.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement of one metric by one device at one event time."""

    device_id: str
    device_kind: str
    district: str
    metric: str
    value: float
    unit: str
    event_time: datetime
    receive_time: datetime
    time_source: TimeSource
    source: str
    ward: str = ""

    def __post_init__(self) -> None:
        if self.event_time.tzinfo is None or self.receive_time.tzinfo is None:
            raise ValueError("Reading times must be timezone-aware")
        if not math.isfinite(self.value):
            raise ValueError(f"Reading value must be finite, got {self.value!r}")

    def to_dict(self) -> dict[str, Any]:
        """The reading as the JSON object used on the wire."""
        return {
            "device_id": self.device_id,
            "device_kind": self.device_kind,
            "district": self.district,
            "ward": self.ward,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "event_time": format_time(self.event_time),
            "receive_time": format_time(self.receive_time),
            "time_source": self.time_source,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Reading:
        """Build a reading from its wire object; raises ``ReadingFormatError`` if malformed."""
        try:
            time_source = obj.get("time_source", "device")
            if time_source not in ("device", "receive"):
                raise ValueError(f"unknown time_source {time_source!r}")
            return cls(
                device_id=str(obj["device_id"]),
                device_kind=str(obj["device_kind"]),
                district=str(obj["district"]),
                ward=str(obj.get("ward", "")),
                metric=str(obj["metric"]),
                value=float(obj["value"]),
                unit=str(obj["unit"]),
                event_time=parse_time(obj["event_time"]),
                receive_time=parse_time(obj["receive_time"]),
                time_source=time_source,
                source=str(obj.get("source", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReadingFormatError(f"invalid reading: {exc}") from exc


def encode_batch(readings: Iterable[Reading]) -> bytes:
    """Encode readings as one ``ioc.readings`` message value."""
    return orjson.dumps({"schema": SCHEMA, "readings": [r.to_dict() for r in readings]})


def decode_batch_objects(data: bytes) -> Sequence[dict[str, Any]]:
    """Decode a message value into its raw reading objects (fast path: no per-field checks).

    Raises ``ReadingFormatError`` if the envelope is not a v1 batch.
    """
    try:
        envelope = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ReadingFormatError(f"not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or envelope.get("schema") != SCHEMA:
        raise ReadingFormatError(f"not a {SCHEMA} batch")
    readings = envelope.get("readings")
    if not isinstance(readings, list):
        raise ReadingFormatError("batch has no 'readings' list")
    return readings


def decode_batch(data: bytes) -> list[Reading]:
    """Decode and fully validate a message value into readings."""
    return [Reading.from_dict(obj) for obj in decode_batch_objects(data)]
