"""Read ``ioc.events`` back into the de-duplication memory (kafka-python, no consumer group).

The topic itself is the durable record of what was published, so ingest keeps no state of
its own: at start-up :meth:`EventsTail.rebuild` reads the last ``window`` of ``ioc.events``
(by record timestamp, from ``offsets_for_times``; at most ``max_keys`` records per
partition) and remembers every (source, id) in it; :meth:`EventsTail.catch_up` reads on to
the current end offsets; :meth:`EventsTail.follow` takes whatever has arrived, without
waiting. A record's time in the memory is its Kafka timestamp.

Guarantees: ``rebuild`` and ``catch_up`` return only once every partition's position reached
the end offsets asked for at the call, or ``stop`` was set; they raise :class:`TailStalled`
when no partition advanced for ``stall_s`` (Kafka unreachable, or a position that cannot
reach the end). Records that are not canonical events are skipped and counted. Partitions
added to ``ioc.events`` after start-up are not read until the next start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from threading import Event as StopFlag
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from connectors.ingest.dedup import SeenSet, digest

log = logging.getLogger(__name__)


class TailStalled(RuntimeError):
    """``ioc.events`` could not be read to its end."""


class EventsTail:
    """Follows ``ioc.events`` with a group-less consumer and feeds a :class:`SeenSet`."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        topic: str,
        seen: SeenSet,
        stall_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.seen = seen
        self.stall_s = stall_s
        self.clock = clock
        self.partitions: list[TopicPartition] = []
        self.read = 0
        self.unreadable = 0

    def rebuild(self, stop: StopFlag) -> int:
        """Assign every partition, seek to the window's start and read to the end.

        Returns how many records were read. Raises ``TailStalled`` (see module docstring),
        or ``RuntimeError`` if the topic does not exist.
        """
        ids = self.consumer.partitions_for_topic(self.topic)
        if not ids:
            raise RuntimeError(f"topic {self.topic} does not exist: run `iocstream kafka init`")
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(ids)]
        self.consumer.assign(self.partitions)
        since_ms = int((self.clock() - self.seen.window_s) * 1000)
        found = self.consumer.offsets_for_times(dict.fromkeys(self.partitions, since_ms))
        ends = self.consumer.end_offsets(self.partitions)
        begins = self.consumer.beginning_offsets(self.partitions)
        for tp in self.partitions:
            hit = found.get(tp)
            start = hit.offset if hit is not None else ends[tp]
            start = max(start, ends[tp] - self.seen.max_keys, begins[tp])
            self.consumer.seek(tp, start)
        before = self.read
        self.catch_up(stop)
        log.info(
            "de-duplication memory rebuilt from %s: %d records read, %d keys held",
            self.topic,
            self.read - before,
            len(self.seen),
        )
        return self.read - before

    def catch_up(self, stop: StopFlag, wanted: set[int] | None = None) -> set[int]:
        """Read to the current end offsets; returns the keys of ``wanted`` that were read."""
        found: set[int] = set()
        ends = self.consumer.end_offsets(self.partitions)
        progress_at, last_total = time.monotonic(), -1
        while not stop.is_set():
            positions = {tp: self.consumer.position(tp) for tp in self.partitions}
            if all(positions[tp] >= ends[tp] for tp in self.partitions):
                break
            total = sum(positions.values())
            if total != last_total:
                progress_at, last_total = time.monotonic(), total
            elif time.monotonic() - progress_at > self.stall_s:
                behind = {f"{tp.partition}": ends[tp] - positions[tp] for tp in self.partitions}
                raise TailStalled(
                    f"no progress reading {self.topic} for {self.stall_s:.0f}s "
                    f"(records behind per partition: {behind})"
                )
            self._absorb(self.consumer.poll(timeout_ms=200, max_records=20_000), wanted, found)
        return found

    def follow(self) -> None:
        """Take what has arrived since the last read, without waiting."""
        self._absorb(self.consumer.poll(timeout_ms=0, max_records=5_000), None, None)

    def _absorb(
        self,
        batches: dict[TopicPartition, list[Any]],
        wanted: set[int] | None,
        found: set[int] | None,
    ) -> None:
        now = self.clock()
        oldest = now - self.seen.window_s
        for records in batches.values():
            for record in records:
                self.read += 1
                pair = _pair(record.value)
                if pair is None:
                    self.unreadable += 1
                    continue
                key = digest(*pair)
                at = record.timestamp / 1000 if record.timestamp and record.timestamp > 0 else now
                if wanted is not None and found is not None and key in wanted:
                    found.add(key)
                if at >= oldest:
                    self.seen.add_digest(key, at)


def _pair(value: bytes | None) -> tuple[str, str] | None:
    """(source, id) of an ``ioc.events`` value, or None if it is not one."""
    if not value:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    source, id_ = obj.get("source"), obj.get("id")
    if isinstance(source, str) and isinstance(id_, str):
        return source, id_
    return None
