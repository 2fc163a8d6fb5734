"""The sink's ClickHouse half: ledger records and inserts, retried until done (insert thread).

A :class:`TableWriter` writes one batch at a time (:meth:`TableWriter.write`): its range in
``sink_ledger`` first (unless the batch replays a recorded range), then every table.
Guarantees:

* Every insert carries ``insert_deduplication_token`` (the batch's, per table) with
  deduplication on in the table and its materialized views (:data:`INSERT_SETTINGS`): a
  repeated insert adds nothing.
* Canonical readings go to ClickHouse undecoded (:mod:`connectors.clickhouse.serverside`); if
  the server refuses them, the batch is decoded here and inserted as columns under the same
  token (poison messages to ``dead_letters``). Either way the rows are the same.
* A failing call is retried with exponential backoff and full jitter; meanwhile ``failing``
  is set. :class:`SinkStopped` ends the retries once ``stop`` is set: nothing is written
  half, and the caller does not commit.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from threading import Event
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from connectors.clickhouse import serverside
from connectors.clickhouse.batch import PartitionBatch
from connectors.clickhouse.client import InsertTypes
from connectors.clickhouse.rows import Columns
from connectors.metrics import Metrics

log = logging.getLogger(__name__)

#: Settings of every data insert (known to ClickHouse server 23.x+ and chDB).
INSERT_SETTINGS: Mapping[str, Any] = {
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
}


class SinkStopped(Exception):
    """Raised inside a retry loop when the sink was asked to stop."""


@dataclass(frozen=True)
class Backoff:
    """Retry pauses: up to ``initial_s`` at first, doubling up to ``max_s`` (full jitter)."""

    initial_s: float = 0.5
    max_s: float = 30.0


class TableWriter:
    """Writes the sink's batches to ClickHouse (used from the insert thread; ``retry`` and the
    ledger query also from the main thread)."""

    def __init__(
        self, client: Client, backoff: Backoff, stop: Event, metrics: Metrics | None = None
    ) -> None:
        self.client = client
        self.types = InsertTypes(client)
        self.backoff = backoff
        self.stop = stop
        self.metrics = metrics
        self.failing = Event()

    def write(self, batch: PartitionBatch, owned: Callable[[], bool] = lambda: True) -> bool:
        """Record the batch's range (unless it replays one), then insert every table.

        ``owned`` is asked before every attempt to record the range: once it says the
        partition is no longer this sink's, nothing is recorded or inserted and False is
        returned (see :meth:`record`). True once every table is written."""
        if batch.close_at is None and not self.record(batch, owned):
            return False
        for table, raw, token in batch.raw_inserts():
            started = time.monotonic()
            if self._insert_server_side(batch, raw, token):
                self._observe(batch, table, started)
        for table, cols, token in batch.inserts():
            started = time.monotonic()
            self._insert(table, cols, token)
            self._observe(batch, table, started)
        return True

    def record(self, batch: PartitionBatch, owned: Callable[[], bool] = lambda: True) -> bool:
        """Record the batch's offset range in ``sink_ledger`` (retried until done); False,
        recording nothing, if ``owned()`` is false before an attempt.

        The check before each attempt matters when ClickHouse fails for a while: the
        partition may move to another sink meanwhile, which reads the ledger when it is
        assigned. A range recorded after that read would be written by this sink while the
        new owner builds its own batches over the same offsets (other tokens: a second copy).
        Left open: an attempt already sent when the partition is revoked, that lands after
        the new owner's read (a rebalance completing within one insert's round trip)."""
        row = [batch.topic, batch.partition, batch.first, batch.last, datetime.now(UTC)]
        names = ["topic", "partition", "first_offset", "last_offset", "recorded_at"]

        def once() -> bool:
            if not owned():
                return False
            self._insert_once("sink_ledger", names, [[v] for v in row], {})
            return True

        return bool(self.retry("record sink_ledger", once, "sink_ledger"))

    def _observe(self, batch: PartitionBatch, table: str, started: float) -> None:
        if self.metrics:
            self.metrics.sink_insert_latency.observe(time.monotonic() - started)
            self.metrics.sink_rows.labels(table).inc(batch.table_rows.get(table, 0))
            self.metrics.sink_bytes.labels(table).inc(batch.table_bytes.get(table, 0))
            self.metrics.sink_batch_rows.observe(batch.table_rows.get(table, 0))
            self.metrics.sink_batch_bytes.observe(batch.table_bytes.get(table, 0))

    def _insert_server_side(
        self, batch: PartitionBatch, raw: list[tuple[int, int, bytes, int]], token: str
    ) -> bool:
        """(Insert thread.) Insert undecoded readings for ClickHouse to decode; True once done.

        Connection failures are retried like any insert. If the server refuses the insert
        (an answer with an error code: a value not in the canonical form, or a server that
        lacks a setting), the batch's readings are decoded here instead (poison messages to
        ``dead_letters``) and False is returned: the caller inserts them as columns, under the
        same token."""
        rows, size = batch.table_rows.get("readings", 0), batch.table_bytes.get("readings", 0)
        if rows > serverside.MAX_ROWS or size > serverside.MAX_BYTES:
            self._decode_here(batch, "batch larger than one insert block")
            return False
        messages = [(o, n, v) for o, n, v, _ in raw]
        settings = {**INSERT_SETTINGS, "insert_deduplication_token": token}

        def once() -> DatabaseError | None:
            try:
                serverside.insert(self.client, batch.topic, batch.partition, messages, settings)
            except DatabaseError as exc:
                if exc.code is None:
                    raise  # no answer from the server: retried
                return exc
            return None

        refused = self.retry("insert into readings (decoded by ClickHouse)", once, "readings")
        if refused is None:
            return True
        self._decode_here(batch, str(refused).splitlines()[0][:300])
        return False

    def _decode_here(self, batch: PartitionBatch, why: str) -> None:
        poisoned = batch.decode_raw()
        log.info(
            "%s[%d] offsets %d-%d: readings decoded by the sink, not by ClickHouse (%s); %d "
            "poison message(s)",
            batch.topic,
            batch.partition,
            batch.first,
            batch.last,
            why,
            len(poisoned),
        )
        for offset, reason in poisoned:
            log.warning(
                "%s[%d]@%d: poison message sent to dead_letters: %s",
                batch.topic,
                batch.partition,
                offset,
                reason,
            )
            if self.metrics:
                self.metrics.dead_letters.labels("sink", "poison_row").inc()

    def _insert(self, table: str, cols: Columns, token: str) -> None:
        names = list(cols)
        data = [cols[n] for n in names]
        settings = {**INSERT_SETTINGS, "insert_deduplication_token": token}
        self.retry(
            f"insert into {table}", lambda: self._insert_once(table, names, data, settings), table
        )

    def _insert_once(
        self, table: str, names: list[str], data: list[Any], settings: Mapping[str, Any]
    ) -> None:
        """One column-oriented insert with the table's cached column types (no ``DESCRIBE``
        round trip per insert)."""
        try:
            self.client.insert(
                table,
                data,
                column_names=names,
                column_type_names=self.types.type_names(table, names),
                column_oriented=True,
                settings=dict(settings),
            )
        except Exception:
            self.types.forget(table)  # described again before the retry
            raise

    def retry(self, what: str, call: Callable[[], Any], table: str = "") -> Any:
        """``call()`` until it succeeds; exponential backoff with full jitter meanwhile.

        While it fails, ``failing`` is set (the sink's main loop keeps consumption paused).
        Raises :class:`SinkStopped` if the sink is stopped before the call succeeded.
        """
        delay = self.backoff.initial_s
        while True:
            try:
                result = call()
            except Exception as exc:
                self.failing.set()
                if self.metrics and table:
                    self.metrics.sink_retries.labels(table).inc()
                pause_s = random.uniform(0, delay)
                log.warning("%s failed (%s); retrying in %.2fs", what, exc, pause_s)
                if self.stop.wait(pause_s):
                    raise SinkStopped from exc
                delay = min(delay * 2, self.backoff.max_s)
            else:
                self.failing.clear()
                return result
