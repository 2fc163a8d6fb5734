"""The sink around a rebalance, against the real ClickHouse engine (the consumer is scripted).

* A batch handed to the insert thread is written before its partition is revoked (not
  committed: the revocation callback runs on kafka-python's IO thread). Recorded in the
  ledger after the next owner read it, it would be written twice, under two different
  deduplication tokens.
* A newly assigned partition is checked against the ledger with the first records polled for
  it, never with a blocking ``position()`` call (which waits for the group coordinator and,
  mid-rebalance, stalled every partition of the sink).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from kafka import TopicPartition

from connectors.clickhouse.rows import ROUTES
from connectors.clickhouse.sink import ClickHouseSink, SinkConfig
from schemas.readings import Reading, encode_batch
from tests.integration.test_sink_support import fresh_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


class ScriptedConsumer:
    """What the sink asks of a KafkaConsumer outside ``run()``; ``position`` must not be used."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append({tp: o.offset for tp, o in offsets.items()})

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        raise AssertionError(
            "position() blocks on the group coordinator; the sink must not call it"
        )

    def close(self, autocommit: bool = False) -> None:
        pass


class Msg:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def _message(offset: int) -> bytes:
    at = T0 + timedelta(seconds=offset)
    reading = Reading("aq-rb-1", "air_quality", "long-xuyen", "pm25", 10.0 + offset, "ug/m3",
                      at, at, "device", "test")  # fmt: skip
    return encode_batch([reading])


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    c = fresh_database(os.environ["IOC_CLICKHOUSE_URL"], f"rebalance_{uuid.uuid4().hex[:10]}")
    yield c
    c.close()


def _sink(client: Client, consumer: ScriptedConsumer) -> ClickHouseSink:
    routes: dict[str, Any] = {"readings-topic": ROUTES["readings"]}
    return ClickHouseSink(lambda: consumer, client, routes, SinkConfig())  # type: ignore[arg-type, return-value]


def _count(client: Client, table: str) -> int:
    return int(str(client.command(f"SELECT count() FROM {table}")))


def test_revocation_finishes_the_batches_handed_out_for_the_partition(client: Client) -> None:
    tp = TopicPartition("readings-topic", 0)
    consumer = ScriptedConsumer({tp})
    sink = _sink(client, consumer)
    try:
        for offset in range(5):
            sink.add(tp, _message(offset), offset)
        sink.flush(tp)  # handed to the insert thread
        sink._on_revoked([tp])
        assert sink.inflight[0].future.done()
        assert sink.recorded_range(tp) == (0, 4)
        assert _count(client, "readings") == 5
        consumer.assigned = set()  # the rebalance took it away
        sink._reap()
        assert consumer.commits == []  # the next owner replays the recorded range
    finally:
        sink.executor.shutdown(wait=True)


def test_assigned_partitions_are_checked_with_polled_records_not_position(client: Client) -> None:
    tp = TopicPartition("readings-topic", 1)
    quiet = TopicPartition("readings-topic", 2)
    consumer = ScriptedConsumer({tp, quiet})
    sink = _sink(client, consumer)
    try:
        for offset in range(3, 10):
            sink.add(tp, _message(offset), offset)
        sink._write(sink.pending.pop(tp))  # recorded range 3-9, written, not committed
        sink._on_assigned([tp, quiet])  # after a rebalance: the committed offset was 3
        assert sink._check_assigned({}) == set()  # nothing polled: nothing to decide yet
        assert consumer.seeks == []
        moved = sink._check_assigned({tp: [Msg(5)]})  # type: ignore[dict-item]
        assert moved == {tp}
        assert consumer.seeks == [(tp, 3)]  # the recorded batch is rebuilt from its start
        assert sink.replay[tp] == 9
        assert sink.unchecked == {quiet}  # checked when its first records arrive
    finally:
        sink.executor.shutdown(wait=True)
