"""The sink's batches with server-side decoding (connectors/clickhouse/batch.py + serverside.py):
canonical readings stay undecoded with their counted rows; anything else, or a refusal by the
server, decodes the batch here into exactly the columns a batch without the fast path holds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.clickhouse.batch import Limits, PartitionBatch
from connectors.clickhouse.rows import ROUTES
from connectors.clickhouse.serverside import body, readings_hint
from connectors.clickhouse.sink import SinkConfig
from schemas.readings import Reading, encode_batch

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _readings(n: int, start: int = 0) -> bytes:
    return encode_batch(
        Reading(f"d-{i}", "air_quality", "lx", "pm25", float(i), "ug/m3", T0, T0, "device", "s")
        for i in range(start, start + n)
    )


def _batch(server_side: bool) -> PartitionBatch:
    return PartitionBatch(
        "ioc.readings", 1, ROUTES["readings"], started=0.0, server_side=server_side
    )


def _state(batch: PartitionBatch) -> tuple[object, ...]:
    return (batch.first, batch.last, batch.rows, batch.size, batch.poison, batch.table_rows,
            batch.table_bytes, batch.inserts())  # fmt: skip


def test_canonical_values_stay_raw_with_their_counted_rows() -> None:
    batch = _batch(server_side=True)
    for offset, value in enumerate([_readings(3), _readings(0), _readings(5, 3)], start=10):
        assert batch.add(value, offset) is None
    assert [(o, n) for o, n, _, _ in batch.raw] == [(10, 3), (11, 0), (12, 5)]
    assert (batch.first, batch.last, batch.rows) == (10, 12, 8)
    assert batch.inserts() == []
    ((table, raw, token),) = batch.raw_inserts()
    assert (table, token) == ("readings", "ioc.readings/1/10-12/readings")
    assert batch.full(Limits(8, 1 << 20, 1.0))
    assert not batch.full(Limits(9, 1 << 20, 1.0))
    assert body([(o, n, v) for o, n, v, _ in raw]).count(b"\n") == 3


def test_decoding_here_gives_what_a_batch_without_the_fast_path_holds() -> None:
    messages = [_readings(3), b'{"schema":"ioc.readings/v1","readings":[1]}', _readings(2, 3)]
    fast, slow = _batch(server_side=True), _batch(server_side=False)
    for offset, value in enumerate(messages, start=7):
        fast.add(value, offset, 1_700_000_000_000)
        slow.add(value, offset, 1_700_000_000_000)
    assert fast.raw  # the poison begins like a canonical value: only the server can tell
    poisoned = fast.decode_raw()
    assert [o for o, _ in poisoned] == [8]
    assert fast.raw == []
    assert fast.raw_inserts() == []
    assert _state(fast) == _state(slow)


def test_a_value_not_in_the_canonical_form_decodes_the_batch_at_once() -> None:
    spaced = b'{"schema": "ioc.readings/v1", "readings": []}'
    assert readings_hint(spaced) is None
    fast, slow = _batch(server_side=True), _batch(server_side=False)
    for offset, value in enumerate([_readings(2), spaced, _readings(4, 2)]):
        fast.add(value, offset)
        slow.add(value, offset)
    assert fast.raw == []
    assert _state(fast) == _state(slow)


def test_decode_mode_is_checked_and_chooses_the_batch_kind() -> None:
    assert SinkConfig().decode == "server"
    assert SinkConfig(decode="sink").decode == "sink"
    with pytest.raises(ValueError, match="decode must be one of server, sink"):
        SinkConfig(decode="split")
