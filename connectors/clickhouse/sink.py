"""Kafka -> ClickHouse sink: batches per topic-partition, idempotent inserts, commit after.

Guarantees (at-least-once delivery made effectively-once by idempotent writes):

* **Commit after insert.** The offset after a batch is committed (by the main thread, in
  order) only when every row of the batch (all its tables, and its poison rows) was inserted.
* **Deterministic batches.** Before inserting a batch ``[first, last]`` of a topic-partition the
  sink records that range in ``sink_ledger``. Each insert carries
  ``insert_deduplication_token = topic/partition/first-last/table`` with
  ``deduplicate_blocks_in_dependent_materialized_views = 1``, so ClickHouse drops a repeated
  insert in the table and in every materialized-view target (roll-ups, latest values).
* **Resume and replay.** Every partition the sink is assigned (at start and after every
  rebalance, including a partition revoked and given back to the same sink) resumes at its
  committed offset, unless that offset is within or before the last recorded range (a crash
  before the commit, a rebalance, a consumer group reset to the earliest offset): then the
  sink seeks to that range's first offset and rebuilds exactly that batch (it closes the batch
  at the range's last offset whatever the limits say); its inserts carry the same tokens and
  so add nothing that was already written. Everything before the range was written before the
  range was recorded, so it is skipped. With neither, it starts at the earliest retained
  offset (the consumer's reset policy). Records fetched for a partition before it was moved
  there are discarded. Resetting the group therefore changes no count.
* **Decoding.** Canonical readings are decoded by ClickHouse (``decode="server"``, the
  default) or here (``"sink"``); both give the same rows under the same token
  (:mod:`connectors.clickhouse.serverside`). The server way takes the JSON parsing off the
  sink's core; the sink way suits a server that refuses the strict JSON settings.
* **Backpressure.** Batches are written by one insert thread, in order, while the main
  thread reads and decodes the next ones; at most ``max_inflight`` batches wait for it.
  A failed insert is retried with exponential backoff and full jitter (``backoff_initial_s``
  doubling up to ``backoff_max_s``); while inserts fail or too many batches wait, every
  assigned partition is paused (the consumer keeps polling, so it stays in its group). Memory
  stays bounded by one open batch per partition, ``max_inflight`` written ones and one poll.
  Nothing is dropped: on stop during an outage the sink exits without committing, and the
  batch is read again next time.
* **Poison rows.** A message that cannot become rows goes to ``dead_letters`` (reason
  ``poison_row``, source ``kafka:<topic>``, source id ``<partition>:<offset>``, the original
  bytes, the message timestamp as time) in the same batch; it never blocks the partition.

Rebalance: the rebalance callbacks only take note (kafka-python runs them on its IO path,
where nothing may block); the unwritten batch of a revoked partition is dropped (its offsets
were not committed, so the next owner, possibly this sink again, reads them again), and each
newly assigned partition is moved to its restart offset by the main loop after the poll that
completed the rebalance, before any of its records is used. A batch already handed to the insert
thread but not yet recorded is cancelled (a per-partition revocation count the insert thread
checks before recording), so the next owner cannot meet a second copy of those rows under
other tokens; one already recorded is written, and the next owner replays exactly that range
with the same tokens, so the result is still one copy. (What remains: a revocation landing
between that check and the ledger write, while the next owner reads the ledger first.)
kafka-python 3.0.12 could lose a group join that finished between two polls and leave the
sink fetching nothing for good; :func:`connectors.kafka.join_fix.patch_kafka_join` corrects
that.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from threading import Event
from typing import Any

from clickhouse_connect.driver.client import Client
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from connectors.clickhouse.batch import Limits, PartitionBatch, restart_at
from connectors.clickhouse.rows import TopicRoute
from connectors.clickhouse.writer import INSERT_SETTINGS, Backoff, SinkStopped, TableWriter
from connectors.kafka.join_fix import patch_kafka_join
from connectors.metrics import Metrics

log = logging.getLogger(__name__)

LAG_REPORT_S = 5.0  # how often the consumer-lag gauge is refreshed
COMMITTED_TIMEOUT_MS = 5_000  # longest wait for a newly assigned partition's committed offset


#: Who decodes canonical readings (``IOC_SINK_DECODE``).
DECODE_MODES = ("server", "sink")
__all__ = ["INSERT_SETTINGS", "ClickHouseSink", "SinkConfig", "SinkStopped"]


@dataclass
class SinkConfig:
    """Batching, polling and backoff of the sink (``IOC_SINK_*`` in sink_cli)."""

    group_id: str = "iocstream-sink"
    limits: Limits = field(default_factory=Limits)
    poll_ms: int = 200
    max_poll_records: int = 20_000
    max_inflight: int = 2
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    decode: str = "server"
    """Who decodes canonical readings: ``server`` or ``sink`` (module doc)."""

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            modes = ", ".join(DECODE_MODES)
            raise ValueError(f"decode must be one of {modes}, not {self.decode!r}")

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.backoff_initial_s, self.backoff_max_s)


@dataclass
class _InFlight:
    tp: TopicPartition
    batch: PartitionBatch
    future: Future[bool]  # False: cancelled before anything was written


class ClickHouseSink:
    """Consume the routed topics and write them to their tables until ``stop`` is set."""

    def __init__(
        self,
        consumer_factory: Callable[[], KafkaConsumer],
        client: Client,
        routes: Mapping[str, TopicRoute],
        config: SinkConfig | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.client = client
        self.routes = dict(routes)
        self.config = config or SinkConfig()
        patch_kafka_join()
        self.consumer = consumer_factory()
        self.pending: dict[TopicPartition, PartitionBatch] = {}
        self.replay: dict[TopicPartition, int] = {}
        self.unchecked: set[TopicPartition] = set()  # assigned, not yet moved to its restart
        # revocations per partition: a batch handed out before one is not started any more
        self.epochs: dict[TopicPartition, int] = {}
        self.rebalances = 0  # assignments received (read by tests)
        self.messages_read = 0  # messages added to batches (read by tests)
        self._reset_latest = self.consumer.config.get("auto_offset_reset") == "latest"
        self.stop = Event()
        self.writer = TableWriter(client, self.config.backoff, self.stop, metrics)
        self.failing = self.writer.failing
        self.rows_written = 0
        self._next_seen: dict[TopicPartition, int] = {}  # next offset after the last polled
        self._lag_reported = 0.0
        self.paused = False
        self.failing_shown = False
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-insert")
        self.inflight: deque[_InFlight] = deque()

    # -- ledger -------------------------------------------------------------------------
    def recorded_ranges(self, tps: list[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
        """The last offset range recorded in ``sink_ledger`` for each of ``tps`` that has one
        (one query)."""
        topics = sorted({tp.topic for tp in tps})
        rows = self.writer.retry(
            "read sink_ledger",
            lambda: (
                self.client.query(
                    "SELECT topic, partition, first_offset, last_offset FROM sink_ledger FINAL "
                    "WHERE topic IN {t:Array(String)}",
                    parameters={"t": topics},
                ).result_rows
            ),
        )
        wanted = set(tps)
        found = {TopicPartition(str(r[0]), int(r[1])): (int(r[2]), int(r[3])) for r in rows}
        return {tp: rng for tp, rng in found.items() if tp in wanted}

    def recorded_range(self, tp: TopicPartition) -> tuple[int, int] | None:
        """The last offset range recorded for ``tp`` in ``sink_ledger``, or None."""
        return self.recorded_ranges([tp]).get(tp)

    def _restart_assigned(self) -> None:
        """Move every newly assigned partition to where it must resume (main thread).

        kafka-python keeps the fetch position of a partition that is revoked and assigned
        again to the same consumer in one rebalance, while the sink dropped that partition's
        open batch on revocation: going on from there would lose the dropped rows. So every
        newly assigned partition is moved to its committed offset, or to the last recorded
        range (:func:`restart_at`); records fetched for it before the move are discarded by
        the caller. Blocking calls (``committed()``, the ledger query) are made here, never in
        the rebalance callbacks, which kafka-python runs on its IO path. If a committed offset
        cannot be read now (bounded wait), that partition and those not yet moved stay flagged
        (their records keep being discarded) and are tried again next loop.
        """
        assigned = self.consumer.assignment()
        todo = sorted(self.unchecked & assigned, key=lambda t: (t.topic, t.partition))
        self.unchecked &= assigned
        if not todo:
            return
        recorded = self.recorded_ranges(todo)
        for tp in todo:
            try:
                committed = self.consumer.committed(tp, timeout_ms=COMMITTED_TIMEOUT_MS)
            except KafkaError as exc:  # the rest stay flagged too: all tried again next loop
                log.warning(
                    "%s[%d]: committed offset not readable (%s); trying again",
                    tp.topic,
                    tp.partition,
                    exc,
                )
                break
            restart = restart_at(committed, recorded.get(tp))
            if restart.offset is None:
                if self._reset_latest:
                    self.consumer.seek_to_end(tp)
                else:
                    self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, restart.offset)
            if restart.close_at is not None:
                self.replay[tp] = restart.close_at
            else:
                self.replay.pop(tp, None)
            log.info(
                "%s[%d]: assigned; resuming at %s (committed %s, recorded range %s)%s",
                tp.topic,
                tp.partition,
                "the reset position" if restart.offset is None else restart.offset,
                committed,
                recorded.get(tp),
                ", replaying that range" if restart.close_at is not None else "",
            )
            self.unchecked.discard(tp)

    def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        # flag only: kafka-python runs this on its IO path, where nothing may block
        self.unchecked.update(assigned)
        self.rebalances += 1

    def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        # flag only (see _on_assigned); the open batches are dropped: their offsets were not
        # committed, so whoever is assigned the partition next reads them again; handed-out
        # batches not yet recorded in the ledger are cancelled (see _write)
        for tp in revoked:
            self.epochs[tp] = self.epochs.get(tp, 0) + 1
            self._next_seen.pop(tp, None)
            batch = self.pending.pop(tp, None)
            if batch is not None and batch.first >= 0:
                log.info(
                    "%s[%d]: revoked; dropping unwritten offsets %d-%d (read again by the next "
                    "owner, this sink included)",
                    tp.topic,
                    tp.partition,
                    batch.first,
                    batch.last,
                )
            self.replay.pop(tp, None)
            self.unchecked.discard(tp)

    # -- batching -----------------------------------------------------------------------
    def add(self, tp: TopicPartition, value: bytes, offset: int, timestamp_ms: int = 0) -> None:
        """Add one message to ``tp``'s batch (writing the batch first if it must end)."""
        batch = self.pending.get(tp)
        close_at = self.replay.get(tp)
        if batch is not None and batch.close_at is not None and offset > batch.close_at:
            self.flush(tp)  # the recorded range ended (its last offset is gone): close it
            batch, close_at = None, self.replay.get(tp)
        if batch is None:
            batch = PartitionBatch(
                tp.topic,
                tp.partition,
                self.routes[tp.topic],
                server_side=self.config.decode == "server",
            )
            if close_at is not None and offset <= close_at:
                batch.close_at = close_at
            elif close_at is not None:  # the recorded range is gone (retention): nothing to redo
                self.replay.pop(tp, None)
            self.pending[tp] = batch
        reason = batch.add(value or b"", offset, timestamp_ms)
        if reason is not None:
            log.warning(
                "%s[%d]@%d: poison message sent to dead_letters: %s",
                tp.topic,
                tp.partition,
                offset,
                reason,
            )
            if self.metrics:
                self.metrics.dead_letters.labels("sink", "poison_row").inc()

    def flush(self, tp: TopicPartition) -> None:
        """Hand ``tp``'s batch to the insert thread; it is committed once written."""
        batch = self.pending.pop(tp)
        if batch.first < 0:
            return
        if batch.close_at is not None:
            self.replay.pop(tp, None)
        future = self.executor.submit(self._write, batch, tp, self.epochs.get(tp, 0))
        self.inflight.append(_InFlight(tp, batch, future))

    def _write(self, batch: PartitionBatch, tp: TopicPartition, epoch: int) -> bool:
        """(Insert thread.) Record the range, then insert every table, retrying until done.

        Returns False, writing nothing, if ``tp`` was revoked after the batch was handed out
        and before it was recorded (checked again before every attempt to record it, see
        :meth:`TableWriter.record`): the next owner could otherwise build a different range
        from the same offsets (different tokens, a second copy). Once recorded, the batch is
        written: the next owner replays exactly that range with the same tokens."""

        def owned() -> bool:
            return self.epochs.get(tp, 0) == epoch

        return owned() and self.writer.write(batch, owned)

    def _reap(self, block: bool = False) -> None:
        """Commit written batches in order (all in-flight ones if ``block``)."""
        while self.inflight and (block or self.inflight[0].future.done()):
            item = self.inflight.popleft()
            # SinkStopped if stopped while ClickHouse was failing
            if item.future.result():
                self._commit(item.tp, item.batch)
            else:
                log.info(
                    "%s[%d]: revoked before offsets %d-%d were recorded; not written (read "
                    "again by the next owner)",
                    item.tp.topic,
                    item.tp.partition,
                    item.batch.first,
                    item.batch.last,
                )

    def _commit(self, tp: TopicPartition, batch: PartitionBatch) -> None:
        self.rows_written += batch.rows
        log.debug(
            "%s[%d]: wrote %d rows (offsets %d-%d%s)",
            tp.topic,
            tp.partition,
            batch.rows,
            batch.first,
            batch.last,
            ", replayed" if batch.close_at is not None else "",
        )
        if tp not in self.consumer.assignment():
            return  # revoked meanwhile: the next owner replays the recorded range
        try:
            self.consumer.commit({tp: OffsetAndMetadata(batch.last + 1, "", -1)})
        except (CommitFailedError, KafkaError) as exc:
            log.warning(
                "%s[%d]: commit of %d failed (%s); the batch is written and will be replayed "
                "idempotently",
                tp.topic,
                tp.partition,
                batch.last + 1,
                exc,
            )

    def _throttle(self) -> None:
        """Pause every partition while ClickHouse fails or too many batches are in flight.

        Only a pause because ClickHouse fails shows in ``iocstream_sink_paused`` and
        ``iocstream_sink_pauses_total``; waiting for the insert thread is ordinary flow control.
        """
        failing = self.failing.is_set()
        wanted = failing or len(self.inflight) >= self.config.max_inflight
        assigned = self.consumer.assignment()
        if wanted:
            self.consumer.pause(*assigned)  # again each time: covers newly assigned ones
            self.paused = True
        elif self.paused:
            self.consumer.resume(*assigned)
            self.paused = False
        if self.metrics and failing != self.failing_shown:
            self.metrics.sink_paused.set(1 if failing else 0)
            if failing:
                self.metrics.sink_pauses.inc()
        self.failing_shown = failing

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> None:
        """Consume until ``stop`` is set; then write what is pending (unless ClickHouse is
        down) and leave the group."""
        self.consumer.subscribe(list(self.routes), listener=_Listener(self))
        log.info("sink consuming %s", ", ".join(self.routes))
        limits = self.config.limits
        try:
            while not self.stop.is_set():
                self._reap()
                self._throttle()
                if self.paused and self.inflight:
                    wait([self.inflight[0].future], timeout=self.config.poll_ms / 1000)
                    timeout_ms = 0
                else:
                    timeout_ms = self.config.poll_ms
                records = self.consumer.poll(
                    timeout_ms=timeout_ms, max_records=self.config.max_poll_records
                )
                if self.unchecked:
                    # what was fetched for a newly assigned partition before it is moved to
                    # its restart offset is discarded (read again from there)
                    held = set(self.unchecked)
                    self._reap(block=True)  # the ledger must show every range handed out
                    self._restart_assigned()
                    records = {tp: m for tp, m in records.items() if tp not in held}
                for tp, messages in records.items():
                    for m in messages:
                        self.add(tp, m.value, m.offset, m.timestamp)
                    self.messages_read += len(messages)
                    if messages:
                        self._next_seen[tp] = messages[-1].offset + 1
                now = time.monotonic()
                if now - self._lag_reported >= LAG_REPORT_S:
                    self._report_lag(now)
                for tp in [tp for tp, b in self.pending.items() if b.due(limits, now)]:
                    self.flush(tp)
            for tp in list(self.pending):
                self.flush(tp)
            self._reap(block=True)
        except SinkStopped:
            log.warning("stopped while ClickHouse was failing; unwritten batches not committed")
        finally:
            self.stop.set()
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.consumer.close(autocommit=False)
            log.info("sink stopped after writing %d rows", self.rows_written)

    def _report_lag(self, now: float) -> None:
        """Set ``iocstream_consumer_lag_records{component="sink"}`` per topic: the broker's
        end offset (as of the last fetch) minus the next offset received, summed over the
        assigned partitions. Never blocks: partitions without a fetch yet are left out."""
        self._lag_reported = now
        if self.metrics is None:
            return
        lag: dict[str, int] = {}
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            seen = self._next_seen.get(tp)
            if end is not None and seen is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - seen)
        for topic, records in lag.items():
            self.metrics.consumer_lag.labels("sink", topic).set(records)

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
