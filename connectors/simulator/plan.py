"""What the simulator publishes, in order: encoded readings with optional broken payloads.

Pure. Every reading becomes exactly one message, in the order given. ``malformed`` extra
messages (see ``encoding.malformed_payload``) are inserted among them, each on the topic of
the reading just before it, so valid traffic is never replaced, only interleaved:

* with ``total`` known, spread evenly: the i-th (1-based) goes after reading
  ``max(1, i * total // (malformed + 1))``;
* with ``total`` unknown (an endless run), one after each of the first ``malformed`` readings;
* with no readings at all there is nothing to hang them on, and none are sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from connectors.simulator.encoding import (
    FORMATS,
    PayloadFormat,
    encode_payload,
    malformed_payload,
)
from connectors.simulator.model import SimReading


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message to publish (QoS 1, not retained)."""

    topic: str
    payload: bytes
    event_time: datetime
    malformed: bool = False


def _positions(malformed: int, total: int | None) -> list[int]:
    if total is None:
        return list(range(1, malformed + 1))
    if total == 0:
        return []
    return [max(1, i * total // (malformed + 1)) for i in range(1, malformed + 1)]


def planned_count(readings: int | None, malformed: int) -> int | None:
    """How many messages ``plan_messages`` yields for ``readings`` readings (None: unknown)."""
    if readings is None:
        return None
    return readings + len(_positions(malformed, readings))


def plan_messages(
    readings: Iterable[SimReading],
    fmt: PayloadFormat = "json",
    malformed: int = 0,
    total: int | None = None,
) -> Iterator[Outgoing]:
    """Encode ``readings`` in ``fmt`` and interleave ``malformed`` broken payloads.

    ``total`` is the number of readings if known. Raises ``ValueError`` if ``malformed`` is
    negative or the format is unknown.
    """
    if malformed < 0:
        raise ValueError(f"malformed must be >= 0, got {malformed}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown payload format {fmt!r}; use one of {', '.join(FORMATS)}")
    return _plan(readings, fmt, _positions(malformed, total))


def _plan(
    readings: Iterable[SimReading], fmt: PayloadFormat, positions: list[int]
) -> Iterator[Outgoing]:
    pending = sorted(positions)
    for n, reading in enumerate(readings, start=1):
        topic, payload = encode_payload(reading, fmt)
        yield Outgoing(topic, payload, reading.event_time)
        while pending and pending[0] == n:
            pending.pop(0)
            bad_topic, bad = malformed_payload(reading)
            yield Outgoing(bad_topic, bad, reading.event_time, malformed=True)
