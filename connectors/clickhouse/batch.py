"""The sink's batches: per topic-partition, split by table, bounded, with stable tokens (pure).

A :class:`PartitionBatch` collects consecutive messages ``[first, last]`` of one
topic-partition. Each message becomes rows of one table (or a poison row); rows are kept
column-wise per table. A batch is *due* when it holds ``max_rows`` rows or ``max_bytes``
message bytes or is ``max_age_s`` old, or when it reaches the end of a range being replayed
(see :attr:`PartitionBatch.close_at`).

Guarantees:

* :func:`dedup_token` depends only on topic, partition, offset range and table, so a batch
  rebuilt from the same messages carries the same tokens; ClickHouse drops an insert whose
  token it has seen (within the table's ``non_replicated_deduplication_window``).
* Poison rows are built from the message alone (the dead-letter time is the Kafka message
  timestamp), so they too are identical on a rebuild.
* With ``server_side`` (the sink's default), canonical ``ioc.readings`` values are kept as they
  came (:mod:`connectors.clickhouse.serverside`: ClickHouse decodes them) until either a
  non-canonical one arrives in the same batch or the server refuses them; then
  :meth:`PartitionBatch.decode_raw` decodes them all here. Which way a batch goes depends only
  on its messages (and the server's answer to the same bytes), and both ways give the same rows
  under the same token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.clickhouse.rows import (
    DEAD_LETTERS,
    READINGS,
    Columns,
    PoisonMessage,
    TableSpec,
    TopicRoute,
    append_message,
)
from connectors.clickhouse.serverside import readings_hint
from schemas.deadletter import DeadLetter


@dataclass(frozen=True)
class Limits:
    """When a batch is due: rows, message bytes, age in seconds."""

    max_rows: int = 50_000
    max_bytes: int = 32 * 1024 * 1024
    max_age_s: float = 1.0


def dedup_token(topic: str, partition: int, first: int, last: int, table: str) -> str:
    """``"{topic}/{partition}/{first}-{last}/{table}"``: the insert_deduplication_token."""
    return f"{topic}/{partition}/{first}-{last}/{table}"


def poison_letter(
    topic: str, partition: int, offset: int, value: bytes, reason: str, timestamp_ms: int
) -> DeadLetter:
    """The dead letter of a message the sink cannot turn into rows."""
    return DeadLetter(
        reason="poison_row",
        detail=reason,
        source=f"kafka:{topic}",
        source_id=f"{partition}:{offset}",
        received_at=datetime.fromtimestamp(max(timestamp_ms, 0) / 1000, UTC),
        payload=value,
    )


@dataclass
class PartitionBatch:
    """Messages ``[first, last]`` of one topic-partition, as rows per table."""

    topic: str
    partition: int
    route: TopicRoute
    started: float = field(default_factory=time.monotonic)
    first: int = -1
    last: int = -1
    rows: int = 0
    """Rows in every table (poison rows included)."""
    size: int = 0
    """Message bytes (values)."""
    poison: int = 0
    tables: dict[str, tuple[TableSpec, Columns]] = field(default_factory=dict)
    table_rows: dict[str, int] = field(default_factory=dict)
    table_bytes: dict[str, int] = field(default_factory=dict)
    close_at: int | None = None
    """While replaying a recorded range: its last offset (the batch must end exactly there)."""
    server_side: bool = False
    """Keep canonical readings undecoded for ClickHouse to decode (see the module doc)."""
    raw: list[tuple[int, int, bytes, int]] = field(default_factory=list)
    """Undecoded ``readings`` messages: offset, counted readings, value, timestamp (ms)."""

    def __post_init__(self) -> None:
        # decided once per batch, not per message: only the readings route is kept undecoded
        self._keep_raw = self.server_side and self.route.pick is None
        self._keep_raw = self._keep_raw and self.route.specs[0] is READINGS

    def add(self, value: bytes, offset: int, timestamp_ms: int = 0) -> str | None:
        """Add one message; returns the poison reason if it became a dead letter instead."""
        if self._keep_raw:
            n = readings_hint(value)
            if n is not None and READINGS.table not in self.tables:
                self.raw.append((offset, n, value, timestamp_ms))
                self._count(READINGS.table, n, value, offset)
                return None
            self.decode_raw()
        return self._add_decoded(value, offset, timestamp_ms)

    def decode_raw(self) -> list[tuple[int, str]]:
        """Decode the undecoded readings here, as :meth:`add` would have; returns the
        ``(offset, reason)`` of those that became dead letters."""
        raw, self.raw = self.raw, []
        if not raw:
            return []
        hinted = sum(n for _, n, _, _ in raw)
        size = sum(len(v) for _, _, v, _ in raw)
        self.rows -= hinted
        self.size -= size
        del self.table_rows[READINGS.table], self.table_bytes[READINGS.table]
        poisoned = []
        for offset, _, value, timestamp_ms in raw:
            reason = self._add_decoded(value, offset, timestamp_ms)
            if reason is not None:
                poisoned.append((offset, reason))
        return poisoned

    def raw_inserts(self) -> list[tuple[str, list[tuple[int, int, bytes, int]], str]]:
        """``(table, messages, token)`` of the undecoded readings, if any."""
        if not self.raw:
            return []
        token = dedup_token(self.topic, self.partition, self.first, self.last, READINGS.table)
        return [(READINGS.table, self.raw, token)]

    def _count(self, table: str, n: int, value: bytes, offset: int) -> None:
        self.rows += n
        self.table_rows[table] = self.table_rows.get(table, 0) + n
        self.table_bytes[table] = self.table_bytes.get(table, 0) + len(value)
        if self.first < 0 or offset < self.first:
            self.first = offset
        self.last = max(self.last, offset)
        self.size += len(value)

    def _add_decoded(self, value: bytes, offset: int, timestamp_ms: int) -> str | None:
        reason: str | None = None
        try:
            spec = self.route.spec_for(value)
            n = append_message(spec, self._columns(spec), value, self.topic, self.partition, offset)
        except PoisonMessage as exc:
            reason = str(exc)
            letter = poison_letter(self.topic, self.partition, offset, value, reason, timestamp_ms)
            spec = DEAD_LETTERS
            n = append_message(
                spec, self._columns(spec), letter.encode(), self.topic, self.partition, offset
            )
            self.poison += 1
        self._count(spec.table, n, value, offset)
        return reason

    def _columns(self, spec: TableSpec) -> Columns:
        entry = self.tables.get(spec.table)
        if entry is None:
            entry = self.tables[spec.table] = (spec, spec.empty())
        return entry[1]

    def due(self, limits: Limits, now: float | None = None) -> bool:
        """Whether the batch should be written now (full, or ``max_age_s`` old)."""
        if self.full(limits):
            return True
        if self.close_at is not None:
            return False
        now = time.monotonic() if now is None else now
        return now - self.started >= limits.max_age_s

    def full(self, limits: Limits) -> bool:
        """Whether the batch reached its row or byte limit, or the end of a replayed range."""
        if self.close_at is not None:
            return self.last >= self.close_at
        return self.rows >= limits.max_rows or self.size >= limits.max_bytes

    def inserts(self) -> list[tuple[str, Columns, str]]:
        """``(table, columns, token)`` of every non-empty table, in a fixed (name) order."""
        out = []
        for table in sorted(self.tables):
            _spec, cols = self.tables[table]
            if cols["kafka_offset"]:
                token = dedup_token(self.topic, self.partition, self.first, self.last, table)
                out.append((table, cols, token))
        return out


@dataclass(frozen=True)
class Restart:
    """Where a newly assigned partition resumes: ``offset`` (None: the consumer's reset
    policy, i.e. the earliest retained offset) and, while replaying a recorded range, the
    range's last offset ``close_at``."""

    offset: int | None
    close_at: int | None = None


def restart_at(committed: int | None, recorded: tuple[int, int] | None) -> Restart:
    """Where a partition resumes after an assignment, from its committed offset and the last
    range recorded in ``sink_ledger`` (pure).

    * A committed offset after the recorded range (or no range): resume there.
    * A committed offset within or before the recorded range, or none at all: replay exactly
      that range (everything before it was written before it was recorded, so it is skipped),
      closing the batch at its last offset so that it gets the same tokens.
    * Neither: start from the reset policy (``offset`` None).
    """
    if recorded is not None:
        first, last = recorded
        if committed is None or committed <= last:
            return Restart(first, last)
    return Restart(committed)
