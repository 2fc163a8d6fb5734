"""Idle-partition watermark ticks: closing quiet partitions' windows deterministically.

Windows close when a partition's watermark (the greatest event time read on it) passes their
end plus the grace period. When a whole partition goes quiet, nothing advances it, so its last
windows would stay open. A wall-clock timer that closed them directly would make the output
depend on *when* a worker ran, and a restarted worker could decide lateness differently from
the uninterrupted one.

Instead, the worker that owns a partition appends a *tick* to the input partition itself: an
ordinary ``ioc.readings/v1`` batch with no readings and a ``watermark`` field::

    {"schema": "ioc.readings/v1", "readings": [], "watermark": "2026-11-28T09:02:00.000Z"}

The tick's watermark is the partition's watermark plus the wall time it has been idle, sent
only after ``idle_s`` of idleness. Because the tick is a message in the log, replaying the log
after a crash applies it at exactly the same position: the SIGKILL equality holds. Consumers
that only read ``readings`` (the raw-readings sink) see an empty batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from schemas.readings import SCHEMA, ReadingFormatError, format_time, parse_time
from streams.windows import from_ms, to_ms


def encode_tick(watermark_ms: int) -> bytes:
    """An ``ioc.readings/v1`` batch with no readings that advances the watermark."""
    return orjson.dumps(
        {"schema": SCHEMA, "readings": [], "watermark": format_time(from_ms(watermark_ms))}
    )


def decode_message(data: bytes) -> tuple[Sequence[Any], int | None]:
    """The raw reading objects of a message and its tick watermark (ms) if it has one.

    Raises ``ReadingFormatError`` if the envelope is not a v1 batch or the tick is malformed.
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
    tick = envelope.get("watermark")
    if tick is None:
        return readings, None
    try:
        return readings, to_ms(parse_time(tick))
    except (TypeError, ValueError) as exc:
        raise ReadingFormatError(f"invalid watermark {tick!r}: {exc}") from exc


class IdleTracker:
    """Decides when a partition is idle long enough for a tick (pure: time is passed in)."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._seen: dict[int, tuple[int | None, float]] = {}

    def due(self, partition: int, watermark_ms: int | None, now_s: float) -> int | None:
        """The tick watermark to send for ``partition`` now, or ``None``.

        A tick is due when the watermark has not moved for ``idle_s`` seconds of ``now_s``
        (monotonic) time; its value is the watermark plus the idle time. After a tick the
        clock restarts, so at most one tick is sent per idle period.
        """
        seen = self._seen.get(partition)
        if seen is None or seen[0] != watermark_ms:
            self._seen[partition] = (watermark_ms, now_s)
            return None
        idle = now_s - seen[1]
        if watermark_ms is None or self.idle_s <= 0 or idle < self.idle_s:
            return None
        self._seen[partition] = (watermark_ms, now_s)
        return watermark_ms + round(idle * 1000)

    def forget(self) -> None:
        """Drop what was seen (after a rebalance)."""
        self._seen.clear()
