"""Where the sink resumes a newly assigned partition (pure rule and the main-loop step, with a
fake consumer and ledger): committed offset, last recorded range, or the reset policy; a
partition whose committed offset cannot be read stays flagged; the rebalance callbacks only
take note."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from connectors.clickhouse.batch import PartitionBatch, Restart, restart_at
from connectors.clickhouse.rows import ROUTES
from connectors.clickhouse.sink import ClickHouseSink, _InFlight
from connectors.clickhouse.writer import Backoff

T = "ioc.readings"
P0, P1, P2, P3 = (TopicPartition(T, p) for p in range(4))


@pytest.mark.parametrize(
    ("committed", "recorded", "expected"),
    [
        (None, None, Restart(None)),  # nothing: the reset policy (earliest)
        (120, None, Restart(120)),
        (120, (100, 119), Restart(120)),  # the recorded range was committed
        (100, (100, 119), Restart(100, 119)),  # crash between insert and commit: replay it
        (110, (100, 119), Restart(100, 119)),
        (40, (100, 119), Restart(100, 119)),  # group reset: skip what precedes the range
        (None, (100, 119), Restart(100, 119)),
    ],
)
def test_restart_at(
    committed: int | None, recorded: tuple[int, int] | None, expected: Restart
) -> None:
    assert restart_at(committed, recorded) == expected


class FakeConsumer:
    """The part of KafkaConsumer the restart step uses; records every move."""

    def __init__(self, committed: dict[TopicPartition, int | None]) -> None:
        self.config = {"auto_offset_reset": "earliest"}
        self.assigned = set(committed)
        self.offsets = committed
        self.unreadable: set[TopicPartition] = set()
        self.moves: list[tuple[TopicPartition, int | str]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        if tp in self.unreadable:
            raise KafkaTimeoutError("coordinator busy")
        return self.offsets[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.moves.append((tp, offset))

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.moves.append((tp, "beginning"))

    def seek_to_end(self, tp: TopicPartition) -> None:
        self.moves.append((tp, "end"))


class FakeLedger:
    """A ClickHouse client whose only table is sink_ledger."""

    def __init__(self, rows: list[tuple[str, int, int, int]]) -> None:
        self.rows = rows
        self.queries = 0

    def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        assert "sink_ledger" in sql
        self.queries += 1
        rows = [r for r in self.rows if r[0] in parameters["t"]]
        return type("Result", (), {"result_rows": rows})()


def _sink(consumer: FakeConsumer, ledger: FakeLedger) -> ClickHouseSink:
    return ClickHouseSink(lambda: consumer, ledger, {T: ROUTES["readings"]})  # type: ignore[arg-type, return-value]


def test_new_partitions_move_to_committed_offset_recorded_range_or_reset() -> None:
    consumer = FakeConsumer({P0: 120, P1: 100, P2: None, P3: None})
    ledger = FakeLedger([(T, 0, 100, 119), (T, 1, 100, 119), (T, 3, 7, 9), ("other", 2, 1, 2)])
    sink = _sink(consumer, ledger)
    sink._on_assigned([P0, P1, P2, P3])
    sink._restart_assigned()
    assert sorted(consumer.moves) == sorted([(P0, 120), (P1, 100), (P2, "beginning"), (P3, 7)])
    assert sink.replay == {P1: 119, P3: 9}  # those batches close exactly at the range's end
    assert sink.unchecked == set()
    assert ledger.queries == 1  # one ledger query for all partitions
    sink.executor.shutdown()


def test_unreadable_committed_offset_keeps_partitions_flagged() -> None:
    consumer = FakeConsumer({P0: 5, P1: 6, P2: 7})
    consumer.unreadable = {P1}
    sink = _sink(consumer, FakeLedger([]))
    sink._on_assigned([P0, P1, P2])
    sink._restart_assigned()
    assert consumer.moves == [(P0, 5)]  # P1 failed: it and those after it wait for next loop
    assert sink.unchecked == {P1, P2}
    consumer.unreadable = set()
    sink._restart_assigned()
    assert consumer.moves == [(P0, 5), (P1, 6), (P2, 7)]
    assert sink.unchecked == set()
    sink.executor.shutdown()


def test_callbacks_only_take_note_and_revocation_drops_the_open_batch() -> None:
    consumer = FakeConsumer({P0: 0})
    sink = _sink(consumer, FakeLedger([]))
    batch = PartitionBatch(T, 0, ROUTES["readings"])
    batch.first = batch.last = 3
    sink.pending[P0] = batch
    sink.replay[P0] = 9
    sink._on_revoked([P0])
    assert sink.pending == {}
    assert sink.replay == {}
    sink._on_assigned([P0])  # given back to the same sink in the same rebalance
    assert consumer.moves == []  # nothing moved (nor read) inside the callback
    assert sink.unchecked == {P0}
    assert sink.rebalances == 1
    sink.executor.shutdown()


def test_partitions_no_longer_assigned_are_forgotten() -> None:
    consumer = FakeConsumer({P0: 1})
    sink = _sink(consumer, FakeLedger([]))
    sink._on_assigned([P0, P1])  # P1 went elsewhere before the main loop looked
    sink._restart_assigned()
    assert consumer.moves == [(P0, 1)]
    assert sink.unchecked == set()
    sink.executor.shutdown()


def test_a_handed_out_batch_of_a_revoked_partition_is_not_started() -> None:
    """Revoked before its range was recorded: nothing written, nothing committed (the next
    owner, maybe this sink again, reads the offsets again from the committed one)."""
    consumer = FakeConsumer({P0: 0})
    sink = _sink(consumer, FakeLedger([]))  # the fake has no insert: writing would raise
    batch = PartitionBatch(T, 0, ROUTES["readings"])
    batch.first, batch.last = 3, 9
    sink._on_revoked([P0])
    assert sink._write(batch, P0, epoch=0) is False  # handed out at epoch 0, now 1
    done: Future[bool] = Future()
    done.set_result(False)
    sink.inflight.append(_InFlight(P0, batch, done))
    sink._reap()  # FakeConsumer has no commit either: committing would raise
    assert not sink.inflight
    assert sink.rows_written == 0
    sink.executor.shutdown()


class FailingLedger(FakeLedger):
    """sink_ledger whose inserts fail (ClickHouse unreachable) until ``up``; counts attempts."""

    def __init__(self) -> None:
        super().__init__([])
        self.up = False
        self.attempts = 0
        self.inserted: list[str] = []
        self.on_attempt: Any = None

    def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        if sql.startswith("DESCRIBE"):
            cols = ["topic", "partition", "first_offset", "last_offset", "recorded_at"]
            return type("Result", (), {"result_rows": [(c, "String", "") for c in cols]})()
        return super().query(sql, parameters)

    def insert(self, table: str, *args: Any, **kwargs: Any) -> None:
        self.attempts += 1
        down = not self.up  # as it was when the attempt was sent
        if self.on_attempt is not None:
            self.on_attempt()
        if down:
            raise DatabaseError("connection refused")
        self.inserted.append(table)


def test_a_batch_is_not_recorded_once_its_partition_moved_while_clickhouse_was_down() -> None:
    """The ledger is asked before every attempt: a partition revoked while its range could not
    be recorded gets no record (the new owner, who read the ledger, builds its own batches)
    and nothing is inserted, even when ClickHouse comes back."""
    consumer = FakeConsumer({P0: 0})
    ledger = FailingLedger()
    sink = _sink(consumer, ledger)
    sink.writer.backoff = Backoff(0.001, 0.001)
    batch = PartitionBatch(T, 0, ROUTES["readings"])
    batch.first, batch.last = 3, 9

    def revoke_then_recover() -> None:
        if ledger.attempts == 2:  # this attempt fails too; meanwhile P0 moves elsewhere
            sink._on_revoked([P0])
            ledger.up = True  # and ClickHouse is back for the next attempt

    ledger.on_attempt = revoke_then_recover
    assert sink._write(batch, P0, epoch=0) is False
    assert ledger.attempts == 2  # no attempt after the revocation
    assert ledger.inserted == []
    # owned throughout: recorded once ClickHouse is back
    ledger.up, ledger.attempts, ledger.on_attempt = False, 0, None
    batch.first, batch.last = 10, 12
    ledger.on_attempt = lambda: setattr(ledger, "up", ledger.attempts >= 2)
    assert sink.writer.record(batch, lambda: True) is True
    assert (ledger.attempts, ledger.inserted) == (3, ["sink_ledger"])
    sink.executor.shutdown()
