"""State records of a readings partition (``streams/agents/state_records.py``): the record
format, checkpoint -> restore round trips, and the records restore accepts and rejects."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.readings import format_time
from streams.agents import partition, state_records
from streams.agents.partition import BatchOutcome, PartitionState
from streams.agents.state_records import (
    RECORD_VERSION,
    StateFormatError,
    checkpoint,
    device_record,
    partition_key,
    partition_record,
    restore,
)
from streams.window_specs import default_specs
from streams.windows import MINUTE_MS, TumblingWindows, to_ms

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # 16:00 local
PANES = TumblingWindows(MINUTE_MS, 10_000)
SPECS = default_specs()


def reading(device: str, at_s: float, value: Any, metric: str = "pm25") -> dict[str, Any]:
    return {"device_id": device, "device_kind": "air_quality", "district": "long-xuyen",
            "ward": "my-binh", "metric": metric, "value": value, "unit": "ug/m3",
            "event_time": format_time(T0 + timedelta(seconds=at_s))}  # fmt: skip


def scenario(seed: int, messages: int = 300) -> list[list[dict[str, Any]]]:
    """Three stations, two pollutants, readings every few seconds over about 3 hours with some
    out of order and some late (so panes, hours, days and station history are all open)."""
    rnd = random.Random(seed)
    batches, clock = [], 0.0
    for _ in range(messages):
        batch = []
        for _ in range(rnd.randrange(0, 8)):
            clock += rnd.uniform(0, 9)
            at = clock - rnd.choice([0] * 20 + [5, 30, 200])
            batch.append(reading(f"aq-{rnd.randrange(3)}", max(at, 0), rnd.uniform(5, 80),
                                 rnd.choice(["pm25", "pm10"])))  # fmt: skip
        batches.append(batch)
    return batches


def configured(specs: Any = SPECS) -> Callable[[int], PartitionState]:
    return lambda p: PartitionState(p, PANES, specs=specs)


def outcome(out: BatchOutcome) -> tuple[Any, ...]:
    return (out.replayed, out.accepted, out.skipped, out.results, out.values,
            [(r.reason, r.payload) for r in out.rejected], out.dirty)  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_checkpoint_then_restore_round_trips(seed: int) -> None:
    batches = scenario(seed)
    cut = len(batches) // 2
    state = PartitionState(0, PANES, specs=SPECS)
    table: dict[bytes, bytes] = {}  # a compacted changelog: the last record per key
    rnd = random.Random(seed)
    for offset, batch in enumerate(batches[:cut]):
        state.apply(offset, batch)
        if rnd.random() < 0.2 or offset == cut - 1:
            table.update(checkpoint(state))
    assert any(dev.partials for dev in state.devices.values())
    assert any(dev.hours for dev in state.devices.values())

    restored = restore(table.items(), configured())[0]
    assert partition_record(restored) == partition_record(state)
    assert sorted(restored.devices) == sorted(state.devices)
    for device in state.devices:
        assert device_record(restored, device) == device_record(state, device)
    for offset in range(cut, len(batches)):
        assert outcome(restored.apply(offset, batches[offset])) == outcome(
            state.apply(offset, batches[offset])
        )
    assert checkpoint(restored) == checkpoint(state)


def test_records_carry_version_partition_offset_and_watermark() -> None:
    state = PartitionState(3, PANES, specs=SPECS)
    state.apply(7, [reading("aq-1", 1, 10.0), reading("aq-2", 2, 20.0)])
    records = checkpoint(state)
    assert [key for key, _ in records] == [b"aq-1", b"aq-2", partition_key(3)]
    assert partition_key(3) == b"\x00partition:3"
    device, part = orjson.loads(records[0][1]), orjson.loads(records[-1][1])
    assert (device["v"], device["p"], device["o"]) == (RECORD_VERSION, 3, 7)
    pane = ["pm25", to_ms(T0), "ug/m3", "air_quality", "long-xuyen", "my-binh"]
    assert [(w[:6], w[6]) for w in device["w"]] == [(pane, 1)]  # then the aggregate: count 1
    assert device["d"] == []  # no pane closed yet: no derived window open
    assert part == {"v": RECORD_VERSION, "p": 3, "o": 7, "wm": state.watermark.value_ms}


def test_checkpoint_is_empty_until_something_changes() -> None:
    state = PartitionState(0, PANES)
    assert checkpoint(state) == []
    state.apply(0, [reading("aq-1", 1, 10.0)])
    assert len(checkpoint(state)) == 2
    assert checkpoint(state) == []
    state.apply(1, [])  # nothing changed but the offset: only the partition record
    assert [key for key, _ in checkpoint(state)] == [partition_key(0)]


def _records() -> list[tuple[bytes, bytes]]:
    state = PartitionState(0, PANES, specs=SPECS)
    for i in range(130):  # two hours of one station: closed panes, open hour and day
        state.apply(i, [reading("aq-1", 60 * i, 10.0 + i % 7)])
    return checkpoint(state)


def _edit(value: bytes, **changes: Any) -> bytes:
    obj = orjson.loads(value)
    obj.update(changes)
    return orjson.dumps({k: v for k, v in obj.items() if v is not None})


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (b"aq-1", b"{not json", "unreadable"),
        (b"aq-1", b"[]", "unreadable"),
        (b"aq-1", b'{"v": 99, "p": 0}', "unknown record version 99"),
        (b"aq-1", b'{"p": 0, "o": 1, "w": []}', "unknown record version None"),
        (b"aq-1", b'{"v": 2, "p": "zero", "o": 1, "w": []}', "unreadable"),
        (b"aq-1", b'{"v": 2, "p": 0, "w": []}', "'o'"),
        (b"aq-1", b'{"v": 2, "p": 0, "o": 1, "w": [["pm25", 0, "", "", "", "", 1]]}', "aggregate"),
        (b"\xff\xfe", b'{"v": 2, "p": 0, "o": 1, "w": []}', "utf-8"),
        (partition_key(0), b'{"v": 2, "p": 0, "o": 1}', "'wm'"),
    ],
)
def test_restore_rejects_records_it_cannot_read(key: bytes, value: bytes, match: str) -> None:
    with pytest.raises(StateFormatError, match=match) as info:
        restore([*_records(), (key, value)], configured())
    assert repr(key) in str(info.value)


def test_restore_reads_version_1_records_without_derived_windows() -> None:
    records = dict(_records())
    old = _edit(records[b"aq-1"], v=1, d=None, x=None)
    restored = restore([(b"aq-1", old), (partition_key(0), records[partition_key(0)])],
                       configured())[0]  # fmt: skip
    dev = restored.devices["aq-1"]
    assert dev.windows
    assert (dev.partials, dev.hours) == ({}, None)
    assert restored.dropped_partials == 0


def test_restore_drops_derived_windows_of_specs_no_longer_configured() -> None:
    records = _records()
    full = restore(records, configured())[0]
    open_derived = len(full.devices["aq-1"].partials)
    assert open_derived > 1
    fewer = restore(records, configured(SPECS[:1]))[0]  # 1 h only
    kept = len(fewer.devices["aq-1"].partials)
    assert 0 < kept < open_derived
    assert fewer.dropped_partials == open_derived - kept
    assert {name for name, *_ in orjson.loads(device_record(fewer, "aq-1"))["d"]} == {SPECS[0].name}


def test_restore_skips_the_records_of_partitions_not_owned() -> None:
    zero, one = PartitionState(0, PANES), PartitionState(1, PANES)
    zero.apply(4, [reading("a", 1, 1.0)])
    one.apply(9, [reading("b", 2, 2.0)])
    records = [*checkpoint(zero), *checkpoint(one)]
    assert sorted(restore(records, configured())) == [0, 1]
    only_one = restore(records, configured(), owned={1})
    assert (list(only_one), only_one[1].offset, sorted(only_one[1].devices)) == ([1], 9, ["b"])
    assert restore(records, configured(), owned=()) == {}


def test_partition_module_still_exports_the_record_names() -> None:
    for name in ("StateFormatError", "partition_key", "RECORD_VERSION", "PARTITION_KEY_PREFIX",
                 "READABLE_VERSIONS"):  # fmt: skip
        assert getattr(partition, name) is getattr(state_records, name)
    state = PartitionState(0, PANES)
    state.apply(0, [reading("aq-1", 1, 10.0)])
    assert state.device_record("aq-1") == device_record(state, "aq-1")
    assert state.partition_record() == partition_record(state)
    restored = PartitionState.restore(state.checkpoint(), PANES)[0]
    assert restored.device_record("aq-1") == device_record(state, "aq-1")
