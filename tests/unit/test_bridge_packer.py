"""Packing readings per partition and releasing MQTT acks in order (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from connectors.bridge.packer import AckTracker, Packer
from connectors.kafka.partitioning import partition_for
from schemas.readings import SCHEMA, Reading

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def reading(device: str, value: float = 1.0) -> Reading:
    return Reading(
        device_id=device,
        device_kind="air_quality",
        district="long-xuyen",
        metric="pm25",
        value=value,
        unit="ug/m3",
        event_time=T0,
        receive_time=T0,
        time_source="device",
        source="mqtt:test",
    )


@pytest.mark.parametrize(
    ("key", "partition"),
    [("", 681), ("a", 524), ("ab", 434), ("abc", 107), ("123456789", 566), ("\x00 ", 742)],
)
def test_partition_for_matches_the_java_default_partitioner(key: str, partition: int) -> None:
    # Partitions among 1000 that Kafka's Java DefaultPartitioner chooses for these keys.
    assert partition_for(key, 1000) == partition


def test_partition_for_rejects_no_partitions() -> None:
    with pytest.raises(ValueError, match="partitions"):
        partition_for("x", 0)


def test_every_batch_holds_only_devices_of_its_partition() -> None:
    packer = Packer(partitions=4, max_readings=1000, linger_s=0.0)
    devices = [f"dev-{i}" for i in range(40)]
    for i, d in enumerate(devices):
        packer.add(i, [reading(d, float(i))], now=0.0)
    batches = packer.ready(now=1.0)
    assert sum(len(b.objects) for b in batches) == 40
    for batch in batches:
        assert {partition_for(str(o["device_id"]), 4) for o in batch.objects} == {batch.partition}
        envelope = orjson.loads(batch.encode())
        assert envelope["schema"] == SCHEMA
    assert len(packer) == 0


def test_batches_are_bounded_by_count_and_linger() -> None:
    packer = Packer(partitions=1, max_readings=3, linger_s=0.05)
    packer.add(1, [reading("a") for _ in range(7)], now=0.0)
    full = packer.ready(now=0.01)
    assert [len(b.objects) for b in full] == [3, 3]
    assert packer.ready(now=0.02) == []  # the last reading lingers
    assert [len(b.objects) for b in packer.ready(now=0.06)] == [1]


def test_per_device_order_is_kept() -> None:
    packer = Packer(partitions=3, max_readings=2, linger_s=0.0)
    for i in range(9):
        packer.add(i, [reading("same-device", float(i))], now=0.0)
    values = [o["value"] for b in packer.drain() for o in b.objects]
    assert values == [float(i) for i in range(9)]


def test_acks_wait_for_every_record_and_keep_arrival_order() -> None:
    tracker = AckTracker()
    for mid in (1, 2, 3):
        tracker.open(mid)
    tracker.expect(1, 2)
    tracker.expect(2, 1)
    for mid in (1, 2, 3):
        tracker.seal(mid)  # message 3 produced nothing (e.g. empty payload): done at once
    tracker.done(2)
    assert tracker.releasable() == []  # 1 still waits, and 2 and 3 must not overtake it
    tracker.done(1)
    assert tracker.releasable() == []
    tracker.done(1)
    assert tracker.releasable() == [1, 2, 3]
    assert len(tracker) == 0


def test_unsealed_message_is_not_released_and_overacks_are_errors() -> None:
    tracker = AckTracker()
    tracker.open(7)
    assert tracker.releasable() == []
    tracker.seal(7)
    with pytest.raises(RuntimeError, match="more often"):
        tracker.done(7)


def test_remembered_partitions_follow_kafkas_rule_and_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("connectors.bridge.packer._MAX_REMEMBERED", 3)
    packer = Packer(partitions=6)
    devices = [f"aq-{i}" for i in range(10)]
    for _round in range(2):
        for device in devices:
            assert packer.partition(device) == partition_for(device, 6)
            assert len(packer._partition_of) <= 3
