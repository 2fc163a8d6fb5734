"""The whole-batch fast path of the partition state gives exactly what the per-reading rules
give, and the fast murmur2 partitioner places keys where Kafka's default partitioner does."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as reference_murmur2

from connectors.kafka.partitioning import key_partition, murmur2, partition_for
from schemas.readings import format_time
from streams.agents.partition import BatchOutcome, PartitionState
from streams.window_specs import default_specs
from streams.windows import MINUTE_MS, TumblingWindows

T0 = datetime(2026, 11, 28, 16, 58, tzinfo=UTC)  # two minutes before a local midnight
WINDOWS = TumblingWindows(MINUTE_MS, 10_000)
SPECS = default_specs()
PARTITIONS = 2
DEVICES = [f"dev-{i}" for i in range(12)]
MINE = [d for d in DEVICES if partition_for(d, PARTITIONS) == 0]


class PerReading(PartitionState):
    """The reference: every message applied reading by reading."""

    def _admit_all(self, offset: int, readings: Any) -> None:
        return None


def _reading(device: str, at_s: float, value: Any, metric: str = "pm25") -> dict[str, Any]:
    return {
        "device_id": device,
        "device_kind": "air_quality",
        "district": "long-xuyen",
        "ward": "my-binh",
        "metric": metric,
        "value": value,
        "unit": "ug/m3",
        "event_time": format_time(T0 + timedelta(seconds=at_s)),
    }


def _batches(seed: int, messages: int) -> list[list[Any]]:
    """Readings moving forward in time with jitter, a few late or bad ones, devices of both
    partitions (so some are misrouted for partition 0)."""
    rnd = random.Random(seed)
    batches: list[list[Any]] = []
    clock = 0.0
    for _ in range(messages):
        batch: list[Any] = []
        for _ in range(rnd.randrange(0, 6)):
            clock += rnd.uniform(0, 9)
            at = clock - rnd.choice([0] * 20 + [3, 5, 40, 200])  # some out of order or late
            value: Any = rnd.choice([rnd.uniform(0, 100), rnd.randrange(100)])
            if rnd.random() < 0.01:
                value = rnd.choice([float("nan"), "12", True, None])
            device = rnd.choice(DEVICES if rnd.random() < 0.03 else MINE)
            reading = _reading(device, at, value, rnd.choice(["pm25", "pm10"]))
            if rnd.random() < 0.01:
                del reading["event_time"]
            batch.append(reading)
        batches.append(batch)
    return batches


def _run(state: PartitionState, batches: list[list[Any]]) -> list[tuple[Any, ...]]:
    seen = []
    for offset, batch in enumerate(batches):
        out: BatchOutcome = state.apply(offset, batch)
        seen.append(
            (
                out.accepted,
                out.skipped,
                out.results,
                out.values,
                [(r.reason, r.device_id, r.payload) for r in out.rejected],
                out.dirty,
                state.watermark.value_ms,
                state.checkpoint(),
            )
        )
    return seen


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40))
def test_fast_path_equals_reading_by_reading(seed: int, messages: int) -> None:
    batches = _batches(seed, messages)
    fast = PartitionState(0, WINDOWS, PARTITIONS, SPECS)
    slow = PerReading(0, WINDOWS, PARTITIONS, SPECS)
    assert _run(fast, batches) == _run(slow, batches)


def test_fast_path_takes_clean_batches_and_leaves_the_rest() -> None:
    mine = MINE
    state = PartitionState(0, WINDOWS, PARTITIONS)
    clean = [_reading(mine[0], 1, 1.0), _reading(mine[1], 2, 2)]  # an int value is fine
    assert PartitionState(0, WINDOWS, PARTITIONS)._admit_all(0, clean) is not None
    assert state.apply(0, clean).accepted == 2
    for bad in (
        [_reading(mine[0], 3, True)],
        [_reading(mine[0], 3, float("inf"))],
        [{"device_id": mine[0]}],
        ["not an object"],
        [_reading(mine[0], -100, 1.0)],  # late
        [_reading(next(d for d in DEVICES if d not in mine), 3, 1.0)],  # misrouted
    ):
        before = (state.watermark.value_ms, sorted(state.devices))
        assert state._admit_all(1, bad) is None
        assert (state.watermark.value_ms, sorted(state.devices)) == before


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_murmur2_equals_kafka_python(data: bytes) -> None:
    assert murmur2(data) == reference_murmur2(data)


def test_key_partition_of_indicator_keys() -> None:
    for i in range(300):
        key = f"reading_stats_1m|aq-{i:04d}|pm25|2026-11-28T09:{i % 60:02d}:00.000Z".encode()
        expected = (reference_murmur2(key) & 0x7FFFFFFF) % 6
        assert key_partition(key, 6) == expected
        assert key_partition(key, 6) == expected  # from the word cache too
