"""The sink's handling of a partition revoked and assigned again in one rebalance (pure: a fake
consumer and a fake ClickHouse client): kafka-python keeps such a partition's position, so the
sink must move it back to the batch it dropped on revocation, and only then."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import TopicPartition

from connectors.clickhouse.rows import ROUTES
from connectors.clickhouse.sink import ClickHouseSink
from schemas.readings import Reading, encode_batch

TP = TopicPartition("ioc.readings", 0)
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@dataclass
class _Consumer:
    assigned: set[TopicPartition] = field(default_factory=set)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return 99


class _Result:
    def __init__(self) -> None:
        self.result_rows: list[Any] = []


class _Client:
    def query(self, *_args: Any, **_kwargs: Any) -> _Result:
        return _Result()  # nothing recorded in sink_ledger


@dataclass
class _Record:
    offset: int


@pytest.fixture
def sink() -> Iterator[tuple[ClickHouseSink, _Consumer]]:
    consumer = _Consumer({TP})
    made = ClickHouseSink(lambda: consumer, _Client(), {TP.topic: ROUTES["readings"]})  # type: ignore[arg-type, return-value]
    try:
        yield made, consumer
    finally:
        made.executor.shutdown()


def _message() -> bytes:
    return encode_batch(
        [Reading("aq-1", "air_quality", "lx", "pm25", 1.0, "ug/m3", T0, T0, "device", "s")]
    )


def test_a_partition_kept_across_a_rebalance_rereads_its_dropped_batch(
    sink: tuple[ClickHouseSink, _Consumer],
) -> None:
    made, consumer = sink
    for offset in (10, 11, 12):
        made.add(TP, _message(), offset)
    made._on_revoked([TP])
    made._on_assigned([TP])
    moved = made._check_assigned({TP: [_Record(13)]})  # type: ignore[dict-item]
    assert consumer.seeks == [(TP, 10)]
    assert moved == {TP}
    assert TP not in made.pending


def test_a_partition_that_comes_back_in_a_later_rebalance_is_not_moved(
    sink: tuple[ClickHouseSink, _Consumer],
) -> None:
    made, consumer = sink
    made.add(TP, _message(), 10)
    made._on_revoked([TP])
    consumer.assigned = set()
    made._on_assigned([])  # another member owns it meanwhile: it starts at the commit there
    made._on_revoked([])
    consumer.assigned = {TP}
    made._on_assigned([TP])
    assert made._check_assigned({TP: [_Record(40)]}) == set()  # type: ignore[dict-item]
    assert consumer.seeks == []


def test_a_kept_partition_without_a_dropped_batch_goes_on(
    sink: tuple[ClickHouseSink, _Consumer],
) -> None:
    made, consumer = sink
    made._on_revoked([TP])
    made._on_assigned([TP])
    assert made._check_assigned({TP: [_Record(13)]}) == set()  # type: ignore[dict-item]
    assert consumer.seeks == []
