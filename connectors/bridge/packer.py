"""Pack readings into per-partition batches and track when an MQTT message may be acked.

Pure logic, no I/O. The bridge feeds it the readings decoded from each MQTT message; the
packer groups them by Kafka partition (a batch never mixes partitions, DESIGN.md) and hands
out batches bounded by reading count, encoded bytes and linger time. The ``AckTracker``
counts, per MQTT message, the Kafka records still unacknowledged, and releases messages in
arrival order once all their records are acknowledged.

Guarantees:

* Every reading added is in exactly one batch handed out by ``ready``/``drain``.
* A message is released by ``AckTracker`` only after every record made from it was
  acknowledged, and never before a message that arrived earlier (MQTT requires PUBACKs in
  the order the PUBLISH packets arrived).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import orjson

from connectors.kafka.partitioning import partition_for
from schemas.readings import SCHEMA, Reading

_MAX_REMEMBERED = 100_000


@dataclass
class Batch:
    """Readings for one partition, and the MQTT message ids they came from."""

    partition: int
    objects: list[dict[str, object]] = field(default_factory=list)
    message_ids: set[int] = field(default_factory=set)
    size: int = 0
    opened_at: float = 0.0

    def encode(self) -> bytes:
        return orjson.dumps({"schema": SCHEMA, "readings": self.objects})


class Packer:
    """Group readings by partition into bounded batches."""

    def __init__(
        self,
        partitions: int,
        max_readings: int = 500,
        max_bytes: int = 512 * 1024,
        linger_s: float = 0.02,
    ) -> None:
        self.partitions = partitions
        self.max_readings = max_readings
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._open: dict[int, Batch] = {}
        self._full: list[Batch] = []
        self._partition_of: dict[str, int] = {}

    def partition(self, device_id: str) -> int:
        """The device's partition (Kafka's murmur2 rule), remembered per device id.

        murmur2 is pure Python (several microseconds); the registry bounds the device ids
        that reach the packer, and the memory is cleared beyond ``_MAX_REMEMBERED`` anyway.
        """
        p = self._partition_of.get(device_id)
        if p is None:
            if len(self._partition_of) >= _MAX_REMEMBERED:
                self._partition_of.clear()
            p = self._partition_of[device_id] = partition_for(device_id, self.partitions)
        return p

    def add(self, message_id: int, readings: list[Reading], now: float) -> list[int]:
        """Add a message's readings; returns the partitions its readings went to."""
        touched: list[int] = []
        for reading in readings:
            p = self.partition(reading.device_id)
            batch = self._open.get(p)
            if batch is None:
                batch = self._open[p] = Batch(p, opened_at=now)
            obj = reading.to_dict()
            batch.objects.append(obj)
            batch.size += 64 + len(reading.source) + len(reading.device_id) * 2
            if message_id not in batch.message_ids:
                batch.message_ids.add(message_id)
                touched.append(p)
            if len(batch.objects) >= self.max_readings or batch.size >= self.max_bytes:
                self._full.append(self._open.pop(p))
        return touched

    def ready(self, now: float) -> list[Batch]:
        """Batches that are full or have lingered long enough."""
        out, self._full = self._full, []
        for p in [p for p, b in self._open.items() if now - b.opened_at >= self.linger_s]:
            out.append(self._open.pop(p))
        return out

    def drain(self) -> list[Batch]:
        """Every batch, full or not (on shutdown)."""
        out = self._full + list(self._open.values())
        self._full, self._open = [], {}
        return out

    def __len__(self) -> int:
        return sum(len(b.objects) for b in self._open.values()) + sum(
            len(b.objects) for b in self._full
        )


@dataclass
class _Entry:
    message_id: int
    outstanding: int = 0
    sealed: bool = False


class AckTracker:
    """Outstanding Kafka records per MQTT message, released in arrival order."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._order: deque[int] = deque()

    def open(self, message_id: int) -> None:
        self._entries[message_id] = _Entry(message_id)
        self._order.append(message_id)

    def expect(self, message_id: int, records: int = 1) -> None:
        self._entries[message_id].outstanding += records

    def seal(self, message_id: int) -> None:
        """No more records will be expected for this message."""
        self._entries[message_id].sealed = True

    def done(self, message_id: int) -> None:
        """One record of this message was acknowledged by Kafka."""
        entry = self._entries[message_id]
        entry.outstanding -= 1
        if entry.outstanding < 0:
            raise RuntimeError(f"message {message_id} acknowledged more often than produced")

    def releasable(self) -> list[int]:
        """Message ids that can be acknowledged now, oldest first."""
        out = []
        while self._order:
            entry = self._entries[self._order[0]]
            if not entry.sealed or entry.outstanding > 0:
                break
            out.append(entry.message_id)
            self._order.popleft()
            del self._entries[entry.message_id]
        return out

    def __len__(self) -> int:
        return len(self._order)
