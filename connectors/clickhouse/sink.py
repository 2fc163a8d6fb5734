"""Kafka -> ClickHouse sink: batches per topic-partition, idempotent inserts, commit after.

Guarantees (at-least-once delivery made effectively-once by idempotent writes):

* Offsets are committed only after the rows of every message up to them were inserted.
* Every row carries its message's topic, partition and offset. When a partition is
  assigned, the sink asks ClickHouse for the highest offset already stored for it and
  resumes after it, so messages inserted before a crash (but not committed) are not
  inserted again, and resetting the consumer group to the earliest offset changes nothing.
* Each insert carries ``insert_deduplication_token = topic/partition/first-last``, so a retry
  of a batch whose first attempt did reach ClickHouse is dropped by ClickHouse itself.
* When ClickHouse fails, the batch is retried with exponential backoff and jitter while
  consumption is paused; memory stays bounded by one batch per partition.
* A message that cannot become rows (a poison message) goes to ``dead_letters`` with reason
  ``poison_row`` and the original bytes; it never blocks the partition.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Event
from typing import Any

from clickhouse_connect.driver.client import Client
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition

from connectors.clickhouse.rows import (
    DEAD_LETTERS,
    Columns,
    PoisonMessage,
    TableSpec,
    append_message,
)
from connectors.metrics import Metrics
from schemas.deadletter import DeadLetter

log = logging.getLogger(__name__)


@dataclass
class SinkConfig:
    group_id: str = "iocstream-sink"
    max_rows: int = 50_000
    max_bytes: int = 32 * 1024 * 1024
    max_age_s: float = 1.0
    poll_ms: int = 200
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass
class Pending:
    """Rows of one topic-partition not yet inserted."""

    spec: TableSpec
    cols: Columns
    first: int = -1
    last: int = -1
    rows: int = 0
    bytes: int = 0
    since: float = field(default_factory=time.monotonic)
    poison: list[tuple[int, DeadLetter]] = field(default_factory=list)


class ClickHouseSink:
    """Consume the routed topics and write them to their tables until ``stop`` is set."""

    def __init__(
        self,
        consumer_factory: Callable[[], KafkaConsumer],
        client: Client,
        routes: dict[str, TableSpec],
        config: SinkConfig | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.client = client
        self.routes = routes
        self.config = config or SinkConfig()
        self.consumer = consumer_factory()
        self.pending: dict[TopicPartition, Pending] = {}
        self.stop = Event()
        self.rows_written = 0

    # -- resume point -------------------------------------------------------------------
    def stored_offset(self, tp: TopicPartition) -> int | None:
        """Highest offset of ``tp`` already in its table, or None."""
        spec = self.routes[tp.topic]
        result = self.client.query(
            f"SELECT max(kafka_offset), count() FROM {spec.table} "  # noqa: S608 - table from code
            "WHERE kafka_topic = {t:String} AND kafka_partition = {p:UInt16}",
            parameters={"t": tp.topic, "p": tp.partition},
        )
        top, count = result.result_rows[0]
        return int(top) if count else None

    def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            stored = self.stored_offset(tp)
            if stored is None:
                continue
            position = self.consumer.position(tp)
            if position <= stored:
                log.info(
                    "%s[%d]: offsets up to %d already stored; resuming at %d",
                    tp.topic,
                    tp.partition,
                    stored,
                    stored + 1,
                )
                self.consumer.seek(tp, stored + 1)

    def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            if tp in self.pending:
                self.flush(tp)

    # -- batching -----------------------------------------------------------------------
    def add(self, tp: TopicPartition, value: bytes, offset: int) -> None:
        spec = self.routes[tp.topic]
        pending = self.pending.get(tp)
        if pending is None:
            pending = self.pending[tp] = Pending(spec, spec.empty())
        try:
            pending.rows += append_message(
                spec, pending.cols, value, tp.topic, tp.partition, offset
            )
        except PoisonMessage as exc:
            log.warning(
                "%s[%d]@%d: poison message sent to dead_letters: %s",
                tp.topic,
                tp.partition,
                offset,
                exc,
            )
            letter = DeadLetter(
                reason="poison_row",
                detail=str(exc),
                source=f"kafka:{tp.topic}",
                source_id=f"{tp.partition}:{offset}",
                received_at=datetime.now(UTC),
                payload=value,
            )
            pending.poison.append((offset, letter))
            if self.metrics:
                self.metrics.dead_letters.labels("sink", "poison_row").inc()
        if pending.first < 0:
            pending.first = offset
        pending.last = offset
        pending.bytes += len(value)

    def due(self, tp: TopicPartition) -> bool:
        p = self.pending[tp]
        return (
            p.rows >= self.config.max_rows
            or p.bytes >= self.config.max_bytes
            or time.monotonic() - p.since >= self.config.max_age_s
        )

    def flush(self, tp: TopicPartition) -> None:
        """Insert ``tp``'s pending rows (retrying until success or stop) and commit."""
        p = self.pending.pop(tp)
        token = f"{tp.topic}/{tp.partition}/{p.first}-{p.last}"
        if p.rows:
            started = time.monotonic()
            self._insert_with_retry(p.spec.table, p.cols, token)
            if self.metrics:
                self.metrics.sink_insert_latency.observe(time.monotonic() - started)
                self.metrics.sink_rows.labels(p.spec.table).inc(p.rows)
                self.metrics.sink_bytes.labels(p.spec.table).inc(p.bytes)
                self.metrics.sink_batch_rows.observe(p.rows)
        if p.poison:
            cols = DEAD_LETTERS.empty()
            for offset, letter in p.poison:
                append_message(DEAD_LETTERS, cols, letter.encode(), tp.topic, tp.partition, offset)
            self._insert_with_retry(DEAD_LETTERS.table, cols, token + "/poison")
        self.consumer.commit({tp: OffsetAndMetadata(p.last + 1, "", -1)})
        self.rows_written += p.rows
        log.debug(
            "%s[%d]: inserted %d rows (offsets %d-%d) into %s",
            tp.topic,
            tp.partition,
            p.rows,
            p.first,
            p.last,
            p.spec.table,
        )

    def _insert_with_retry(self, table: str, cols: Columns, token: str) -> None:
        delay = self.config.backoff_initial_s
        names = list(cols)
        data = [cols[n] for n in names]
        paused = False
        while True:
            try:
                self.client.insert(
                    table,
                    data,
                    column_names=names,
                    column_oriented=True,
                    settings={"insert_deduplication_token": token, "insert_deduplicate": 1},
                )
                break
            except Exception as exc:  # noqa: BLE001 - every failure is retried with backoff
                if self.metrics:
                    self.metrics.sink_retries.labels(table).inc()
                if not paused:
                    self.consumer.pause(*self.consumer.assignment())
                    paused = True
                    if self.metrics:
                        self.metrics.sink_paused.set(1)
                wait = min(delay, self.config.backoff_max_s) * random.uniform(0.5, 1.0)
                log.warning("insert into %s failed (%s); retrying in %.1fs", table, exc, wait)
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    self.consumer.poll(timeout_ms=100)  # keeps group membership while paused
                delay *= 2
        if paused:
            self.consumer.resume(*self.consumer.assignment())
            if self.metrics:
                self.metrics.sink_paused.set(0)

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> None:
        listener = _Listener(self)
        self.consumer.subscribe(list(self.routes), listener=listener)
        log.info(
            "sink consuming %s", ", ".join(f"{t} -> {s.table}" for t, s in self.routes.items())
        )
        try:
            while not self.stop.is_set():
                records = self.consumer.poll(timeout_ms=self.config.poll_ms, max_records=20_000)
                for tp, messages in records.items():
                    for m in messages:
                        self.add(tp, m.value, m.offset)
                for tp in [tp for tp in self.pending if self.due(tp)]:
                    self.flush(tp)
            for tp in list(self.pending):
                self.flush(tp)
        finally:
            self.consumer.close(autocommit=False)
            log.info("sink stopped after writing %d rows", self.rows_written)

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            log.info("signal %d: flushing and stopping", signum)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.sink._on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.sink._on_assigned(list(assigned))
