"""Dead letters: rejected input kept untouched, with a machine-readable reason.

A dead letter on ``ioc.deadletter`` is a JSON object::

    {"schema": "ioc.deadletter/v1", "reason": "malformed_json", "detail": "...",
     "source": "mqtt:ioc/long-xuyen/air_quality/aq-1/telemetry",
     "source_id": "aq-1", "received_at": "2026-11-28T09:00:00.000Z",
     "payload_b64": "<the original bytes, base64>"}

``reason`` is one of :data:`REASONS`; ``detail`` is a human-readable explanation. The original
bytes are always kept whole, so a fixed component can replay them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from schemas.readings import format_time, parse_time

SCHEMA: Final = "ioc.deadletter/v1"

Reason = Literal[
    "malformed_json",
    "malformed_senml",
    "malformed_payload",
    "unknown_device",
    "unknown_metric",
    "wrong_unit",
    "non_finite_value",
    "out_of_range",
    "timestamp_in_future",
    "timestamp_too_old",
    "bad_timestamp",
    "payload_too_large",
    "topic_outside_layout",
    "late",
    "invalid_event",
    "schema_violation",
    "poison_row",
    "device_mismatch",
    "non_numeric_value",
    "unknown_event_type",
    "unsupported_content_type",
]

REASONS: Final[frozenset[str]] = frozenset(Reason.__args__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected input with why, where from and when."""

    reason: Reason
    detail: str
    source: str
    source_id: str
    received_at: datetime
    payload: bytes

    def encode(self) -> bytes:
        """The dead letter as a ``ioc.deadletter`` message value."""
        return orjson.dumps(
            {
                "schema": SCHEMA,
                "reason": self.reason,
                "detail": self.detail,
                "source": self.source,
                "source_id": self.source_id,
                "received_at": format_time(self.received_at),
                "payload_b64": base64.b64encode(self.payload).decode("ascii"),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> DeadLetter:
        """Parse a ``ioc.deadletter`` message value."""
        obj: dict[str, Any] = orjson.loads(data)
        reason = obj["reason"]
        if reason not in REASONS:
            raise ValueError(f"unknown dead-letter reason {reason!r}")
        return cls(
            reason=reason,
            detail=str(obj["detail"]),
            source=str(obj["source"]),
            source_id=str(obj.get("source_id", "")),
            received_at=parse_time(obj["received_at"]),
            payload=base64.b64decode(obj["payload_b64"]),
        )
