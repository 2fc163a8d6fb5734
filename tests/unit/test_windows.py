"""1-minute event-time windows: edges, grace and lateness, closing by watermark, statistics,
the indicator wire format, and replay safety of the partition state after a crash."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.kafka.partitioning import partition_for
from schemas.indicators import (
    IndicatorFormatError,
    WindowResult,
    decode_indicator,
    encode_indicator,
    indicator_key,
)
from schemas.readings import format_time
from streams.agents.partition import (
    BatchOutcome,
    PartitionState,
    StateFormatError,
    partition_key,
)
from streams.windows import (
    MINUTE_MS,
    Aggregate,
    TumblingWindows,
    Watermark,
    from_ms,
    to_ms,
    window_start,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # a window start
T0_MS = to_ms(T0)
GRACE_MS = 10_000
WINDOWS = TumblingWindows(MINUTE_MS, GRACE_MS)


def reading(
    device: str, at: datetime | str, value: float, metric: str = "pm25", **extra: Any
) -> dict[str, Any]:
    """A reading object as it appears in a decoded ``ioc.readings`` batch."""
    return {
        "device_id": device,
        "device_kind": "air_quality",
        "district": "long-xuyen",
        "ward": "my-binh",
        "metric": metric,
        "value": value,
        "unit": "ug/m3",
        "event_time": at if isinstance(at, str) else format_time(at),
        "receive_time": format_time(T0),
        "time_source": "device",
        "source": "test",
        **extra,
    }


def sec(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def results_by_key(outcomes: list[BatchOutcome]) -> dict[str, WindowResult]:
    return {r.key: r for o in outcomes for r in o.results}


# --- window assignment --------------------------------------------------------------------------


def test_window_edges_are_half_open() -> None:
    assert window_start(T0_MS, MINUTE_MS) == T0_MS  # exactly at start
    assert window_start(T0_MS + MINUTE_MS - 1, MINUTE_MS) == T0_MS  # end - 1 ms
    assert window_start(T0_MS + MINUTE_MS, MINUTE_MS) == T0_MS + MINUTE_MS  # at end: next window
    assert WINDOWS.end(T0_MS + MINUTE_MS - 1) == T0_MS + MINUTE_MS
    assert WINDOWS.end(T0_MS + MINUTE_MS) == T0_MS + 2 * MINUTE_MS


def test_window_start_floors_before_the_epoch() -> None:
    assert window_start(-1, MINUTE_MS) == -MINUTE_MS
    assert window_start(-MINUTE_MS, MINUTE_MS) == -MINUTE_MS


def test_times_convert_exactly_and_windows_are_utc_minutes() -> None:
    # 16:00:59.999 in Vietnam (UTC+7) is 09:00:59.999 UTC: the 09:00 UTC window.
    local = datetime(2026, 11, 28, 16, 0, 59, 999000, tzinfo=timezone(timedelta(hours=7)))
    assert to_ms(local) == T0_MS + 59_999
    assert from_ms(to_ms(local)) == local
    assert window_start(to_ms(local), MINUTE_MS) == T0_MS
    # a millisecond value whose float timestamp() * 1000 is not exact
    odd = datetime(2026, 11, 28, 9, 0, 0, 123000, tzinfo=UTC)
    assert to_ms(odd) == T0_MS + 123
    with pytest.raises(ValueError, match="naive"):
        to_ms(datetime(2026, 11, 28, 9, 0))  # noqa: DTZ001 - the point of the test


def test_closing_and_lateness_rules_at_their_edges() -> None:
    end = T0_MS + MINUTE_MS
    assert not WINDOWS.is_closed(end, None)
    assert not WINDOWS.is_closed(end, end + GRACE_MS - 1)
    assert WINDOWS.is_closed(end, end + GRACE_MS)
    assert not WINDOWS.is_late(T0_MS, end + GRACE_MS - 1)
    assert WINDOWS.is_late(T0_MS, end + GRACE_MS)
    assert not WINDOWS.is_late(end, end + GRACE_MS)  # next window is open
    with pytest.raises(ValueError, match="positive"):
        TumblingWindows(0, 0)
    with pytest.raises(ValueError, match="grace"):
        TumblingWindows(MINUTE_MS, -1)


def test_watermark_only_moves_forward() -> None:
    wm = Watermark()
    assert wm.observe(5)
    assert not wm.observe(3)
    assert wm.value_ms == 5
    assert wm.observe(9)
    assert wm.value_ms == 9


# --- aggregates ---------------------------------------------------------------------------------

values_st = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=60,
)


@given(values_st)
def test_aggregate_matches_statistics_module(values: list[float]) -> None:
    agg = Aggregate()
    for i, v in enumerate(values):
        agg.add(v, i)
    assert agg.count == len(values)
    assert agg.min == min(values)
    assert agg.max == max(values)
    assert agg.last == values[-1]
    assert math.isclose(agg.total / agg.count, statistics.fmean(values), rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(agg.stddev, statistics.pstdev(values), rel_tol=1e-6, abs_tol=1e-6)


@given(values_st, values_st)
def test_merge_equals_adding_everything(left: list[float], right: list[float]) -> None:
    a, b, both = Aggregate(), Aggregate(), Aggregate()
    for i, v in enumerate(left):
        a.add(v, i)
        both.add(v, i)
    for i, v in enumerate(right, start=len(left)):
        b.add(v, i)
        both.add(v, i)
    a.merge(b)
    assert (a.count, a.min, a.max, a.last) == (both.count, both.min, both.max, both.last)
    assert math.isclose(a.total, both.total, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(a.stddev, both.stddev, rel_tol=1e-6, abs_tol=1e-6)


def test_merge_into_empty_and_of_empty() -> None:
    a, b = Aggregate(), Aggregate()
    b.add(3.0, 7)
    a.merge(Aggregate())
    a.merge(b)
    assert (a.count, a.total, a.min, a.max, a.last, a.last_ms) == (1, 3.0, 3.0, 3.0, 3.0, 7)


def test_last_is_the_value_with_the_greatest_event_time() -> None:
    agg = Aggregate()
    agg.add(1.0, 200)
    agg.add(2.0, 100)  # older, arrives later
    assert agg.last == 1.0
    agg.add(3.0, 200)  # tie: the later one wins
    assert agg.last == 3.0


def test_single_value_has_zero_stddev_and_empty_has_no_result() -> None:
    agg = Aggregate()
    with pytest.raises(ValueError, match="empty"):
        agg.result(device_id="d", device_kind="k", district="x", ward="", metric="m", unit="u",
                   start_ms=0)  # fmt: skip
    agg.add(42.0, 0)
    assert agg.stddev == 0.0


def test_aggregate_storage_round_trips_exactly() -> None:
    agg = Aggregate()
    for i, v in enumerate([0.1, 0.2, 0.30000000000000004, 1e-300, 7.5]):
        agg.add(v, i)
    back = Aggregate.from_list(orjson.loads(orjson.dumps(agg.to_list())))
    assert back.to_list() == agg.to_list()
    with pytest.raises(ValueError, match="stored aggregate"):
        Aggregate.from_list([0, 0.0])


# --- the partition state: windows, grace, lateness, closing -------------------------------------


def test_out_of_order_readings_inside_a_window_and_edge_readings() -> None:
    state = PartitionState(0, WINDOWS)
    out1 = state.apply(0, [reading("d1", sec(30), 3.0), reading("d1", sec(0), 1.0)])
    out2 = state.apply(1, [reading("d1", sec(59.999), 5.0), reading("d1", sec(60), 100.0)])
    assert (out1.accepted, out2.accepted) == (2, 2)
    flush = state.apply(2, [reading("d1", sec(60 + 60 + 10), 0.0)])  # wm = 09:02:10
    got = results_by_key([out1, out2, flush])
    first = got[indicator_key("reading_stats_1m", "d1", "pm25", T0)]
    assert (first.count, first.min, first.max, first.last) == (3, 1.0, 5.0, 5.0)
    assert first.mean == pytest.approx(3.0)
    assert first.stddev == pytest.approx(statistics.pstdev([3.0, 1.0, 5.0]))
    assert (first.window_start, first.window_end) == (T0, sec(60))
    second = got[indicator_key("reading_stats_1m", "d1", "pm25", sec(60))]
    assert (second.count, second.mean) == (1, 100.0)  # the reading exactly at 09:01:00


def test_late_within_grace_updates_the_window() -> None:
    state = PartitionState(0, WINDOWS)
    state.apply(0, [reading("d1", sec(10), 1.0)])
    # watermark 09:01:09.999 < end + grace = 09:01:10: the 09:00 window is still open
    out = state.apply(1, [reading("d1", sec(69.999), 2.0), reading("d1", sec(50), 3.0)])
    assert (out.rejected, out.results) == ([], [])
    out = state.apply(2, [reading("d1", sec(70), 9.0)])  # watermark reaches end + grace
    (closed,) = out.results
    assert (closed.window_start, closed.count, closed.mean) == (T0, 2, 2.0)


def test_late_beyond_grace_is_rejected_with_the_reading_as_payload() -> None:
    state = PartitionState(0, WINDOWS)
    state.apply(0, [reading("d1", sec(10), 1.0)])
    closing = state.apply(1, [reading("d1", sec(70), 2.0)])
    assert [r.window_start for r in closing.results] == [T0]
    late_obj = reading("d1", sec(59), 5.0)
    out = state.apply(2, [late_obj, reading("d2", sec(71), 1.0)])
    assert out.late == 1
    (rej,) = out.rejected
    assert (rej.reason, rej.device_id) == ("late", "d1")
    assert orjson.loads(rej.payload) == late_obj
    assert out.accepted == 1
    # the late reading changed nothing: the closed window is not emitted again
    flush = state.apply(3, [reading("d2", sec(300), 1.0)])
    assert T0 not in {r.window_start for r in flush.results if r.device_id == "d1"}


def test_lateness_is_judged_reading_by_reading_within_a_batch() -> None:
    state = PartitionState(0, WINDOWS)
    out = state.apply(0, [reading("d1", sec(10), 1.0), reading("d2", sec(70), 2.0),
                          reading("d1", sec(20), 3.0)])  # fmt: skip
    assert [r.reason for r in out.rejected] == ["late"]
    (closed,) = out.results
    assert (closed.device_id, closed.count) == ("d1", 1)


def test_silent_device_windows_close_when_others_advance_the_watermark() -> None:
    state = PartitionState(0, WINDOWS)
    state.apply(0, [reading("quiet", sec(5), 1.0, metric="pm25"),
                    reading("quiet", sec(6), 2.0, metric="pm10")])  # fmt: skip
    for i in range(1, 5):
        out = state.apply(i, [reading("busy", sec(15 * i), float(i))])
    # busy reached 09:01:00; quiet's window closes only at 09:01:10
    assert out.results == []
    out = state.apply(5, [reading("busy", sec(70), 0.0)])
    closed = sorted((r.device_id, r.metric) for r in out.results)
    assert closed == [("busy", "pm25"), ("quiet", "pm10"), ("quiet", "pm25")]
    assert "quiet" in out.dirty  # its record must be rewritten without the closed windows
    assert state.devices["quiet"].windows == {}


def test_bad_readings_are_rejected_not_raised() -> None:
    state = PartitionState(0, WINDOWS, partitions=4)
    mine = next(f"dev-{i}" for i in range(100) if partition_for(f"dev-{i}", 4) == 0)
    other = next(f"dev-{i}" for i in range(100) if partition_for(f"dev-{i}", 4) != 0)
    objs: list[Any] = [
        reading(mine, sec(1), 1.0),
        reading(mine, "yesterday", 1.0),
        reading(mine, "2026-11-28T09:00:00", 1.0),  # no timezone
        reading(mine, sec(2), float("inf")),
        reading(mine, sec(2), "12"),  # type: ignore[arg-type]
        reading(mine, sec(2), True),
        {"device_id": mine},
        "not an object",
        reading(other, sec(3), 1.0),
    ]
    out = state.apply(0, objs)
    reasons = [r.reason for r in out.rejected]
    assert reasons == ["malformed_payload"] * 2 + ["non_finite_value"] + [
        "malformed_payload"
    ] * 4 + ["schema_violation"]
    assert out.accepted == 1
    assert orjson.loads(out.rejected[-1].payload)["device_id"] == other


def test_readings_with_offsets_in_any_timezone_use_utc_windows() -> None:
    state = PartitionState(0, WINDOWS)
    state.apply(0, [reading("d1", "2026-11-28T16:00:30.000+07:00", 1.0)])
    out = state.apply(1, [reading("d1", "2026-11-28T09:05:00.000Z", 1.0)])
    assert [r.window_start for r in out.results] == [T0]


# --- indicator wire format ----------------------------------------------------------------------


def test_indicator_record_round_trips_and_has_the_documented_key() -> None:
    state = PartitionState(0, WINDOWS)
    state.apply(0, [reading("aq-1", sec(1), 1.5), reading("aq-1", sec(2), 2.5)])
    (result,) = state.apply(1, [reading("aq-1", sec(100), 0.0)]).results
    data = encode_indicator(result)
    assert decode_indicator(data) == result
    obj = orjson.loads(data)
    assert obj["schema"] == "ioc.indicators/v1"
    assert obj["window_start"] == "2026-11-28T09:00:00.000Z"
    assert obj["window_end"] == "2026-11-28T09:01:00.000Z"
    assert obj["revision"] == 0
    assert result.key == "reading_stats_1m|aq-1|pm25|2026-11-28T09:00:00.000Z"


@pytest.mark.parametrize(
    "data",
    [b"{", b"[]", b'{"schema": "ioc.indicators/v0"}', b'{"schema": "ioc.indicators/v1"}'],
)
def test_malformed_indicator_records_raise_a_clear_error(data: bytes) -> None:
    with pytest.raises(IndicatorFormatError):
        decode_indicator(data)


def test_indicator_record_rejects_naive_or_empty_windows() -> None:
    base: dict[str, Any] = {
        "indicator": "reading_stats_1m", "device_id": "d", "device_kind": "k", "district": "x",
        "ward": "", "metric": "m", "unit": "u", "window_start": T0, "window_end": sec(60),
        "count": 1, "mean": 1.0, "min": 1.0, "max": 1.0, "last": 1.0, "stddev": 0.0,
    }  # fmt: skip
    WindowResult(**base)
    with pytest.raises(ValueError, match="aware"):
        WindowResult(**{**base, "window_start": datetime(2026, 1, 1)})  # noqa: DTZ001
    with pytest.raises(ValueError, match="at least one"):
        WindowResult(**{**base, "count": 0})


# --- replay safety: crash at any point of the changelog, restore, replay -----------------------


def scenario(seed: int) -> list[list[dict[str, Any]]]:
    """Batches of one partition: 4 devices, 2 metrics, jitter, late readings, 6 minutes."""
    rng = random.Random(seed)
    readings = []
    for i in range(6 * 60 // 5):
        for d in range(4):
            for metric in ("pm25", "pm10"):
                t = 5 * i + rng.uniform(-4, 4)
                if rng.random() < 0.04:
                    t -= rng.uniform(5, 90)  # straggler: within grace or late
                readings.append(reading(f"d{d}", sec(max(t, 0)), round(rng.gauss(30, 8), 3),
                                        metric=metric))  # fmt: skip
    batches: list[list[dict[str, Any]]] = []
    while readings:
        n = rng.randint(1, 12)
        batches.append(readings[:n])
        readings = readings[n:]
    batches.append([reading("flush", sec(3600), 0.0)])
    return batches


def run(
    state: PartitionState, batches: list[list[dict[str, Any]]], first: int = 0
) -> Iterator[tuple[int, BatchOutcome, list[tuple[bytes, bytes]]]]:
    """Apply batches from offset ``first``; yields each outcome and the records written."""
    for offset in range(first, len(batches)):
        out = state.apply(offset, batches[offset])
        records = [] if out.replayed else [
            *((d.encode(), state.device_record(d)) for d in out.dirty),
            (partition_key(state.partition), state.partition_record()),
        ]  # fmt: skip
        yield offset, out, records


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    crash_at=st.floats(0, 1),
    commit_at=st.floats(0, 1),
    crash_again=st.floats(0, 1),
)
def test_crash_restore_and_replay_count_every_reading_exactly_once(
    seed: int, crash_at: float, commit_at: float, crash_again: float
) -> None:
    batches = scenario(seed)
    reference = list(run(PartitionState(0, WINDOWS), batches))
    expected = results_by_key([o for _, o, _ in reference])
    expected_late = sorted(r.payload for _, o, _ in reference for r in o.rejected)
    # the scenario exercises closing and lateness
    assert len(expected) > 40
    assert expected_late

    emitted: list[WindowResult] = []
    late: list[bytes] = []
    durable: list[tuple[bytes, bytes]] = []  # the changelog as it survived the crashes
    start = 0
    state = PartitionState(0, WINDOWS)
    for crash_fraction in (crash_at, crash_again, None):
        steps = list(run(state, batches, start))
        outcomes = {offset: out for offset, out, _ in steps}
        log = [(offset, rec) for offset, _, records in steps for rec in records]
        # crash: a prefix of this run's changelog writes survives (all of it at the end)
        cut = len(log) if crash_fraction is None else int(len(log) * crash_fraction)
        durable += [rec for _, rec in log[:cut]]
        # the first message whose records are not all durable; its outputs were sent (and
        # are durable) only if one of its records is, since outputs go out before records
        incomplete = log[cut][0] if cut < len(log) else len(batches)
        sent_incomplete = cut > 0 and log[cut - 1][0] == incomplete
        for offset, out in outcomes.items():
            if offset < incomplete or (offset == incomplete and sent_incomplete):
                emitted += out.results
                late += [r.payload for r in out.rejected]
        if crash_fraction is None:
            break
        # committed offset: never backwards, never past the first incomplete message
        start = min(start + int((incomplete - start + 1) * commit_at), incomplete)
        table = dict(durable)  # compaction / restore: the last record per key
        restored = PartitionState.restore(table.items(), WINDOWS)
        state = restored.get(0) or PartitionState(0, WINDOWS)

    got: dict[str, WindowResult] = {}
    for r in emitted:
        assert got.setdefault(r.key, r) == r, f"two different results for {r.key}"
    assert got == expected
    assert sorted(set(late)) == sorted(set(expected_late))


def test_a_fully_applied_message_is_skipped_after_restore() -> None:
    batches = scenario(7)
    state = PartitionState(0, WINDOWS)
    records = [rec for _, _, recs in run(state, batches[:20]) for rec in recs]
    restored = PartitionState.restore(dict(records).items(), WINDOWS)[0]
    assert restored.offset == 19
    assert restored.watermark.value_ms == state.watermark.value_ms
    assert restored.apply(19, batches[19]).replayed
    assert restored.apply(5, batches[5]).replayed


def test_restore_of_owned_partitions_skips_the_records_of_others() -> None:
    # a worker's table still holds partitions it owned before a rebalance: only the owned
    # ones may come back, or a stale state would write ticks and records to another's
    zero, one = PartitionState(0, WINDOWS), PartitionState(1, WINDOWS)
    zero.apply(4, [reading("a", sec(1), 1.0)])
    one.apply(9, [reading("b", sec(2), 2.0)])
    records = [*zero.checkpoint(), *one.checkpoint()]
    assert sorted(PartitionState.restore(records, WINDOWS)) == [0, 1]
    restored = PartitionState.restore(records, WINDOWS, owned={1})
    assert list(restored) == [1]
    assert (restored[1].offset, sorted(restored[1].devices)) == (9, ["b"])
    assert PartitionState.restore(records, WINDOWS, owned=set()) == {}


def test_partial_message_skips_only_devices_already_applied() -> None:
    state = PartitionState(0, WINDOWS)
    state.apply(0, [reading("a", sec(1), 1.0), reading("b", sec(1), 1.0)])
    base = [(partition_key(0), state.partition_record()), (b"a", state.device_record("a")),
            (b"b", state.device_record("b"))]  # fmt: skip
    out = state.apply(1, [reading("a", sec(2), 2.0), reading("b", sec(3), 2.0)])
    assert out.dirty == ["a", "b"]
    # crash after the record of "a" for offset 1, before "b" and the partition record
    restored = PartitionState.restore([*base, (b"a", state.device_record("a"))], WINDOWS)[0]
    again = restored.apply(1, [reading("a", sec(2), 2.0), reading("b", sec(3), 2.0)])
    assert (again.accepted, again.skipped, again.dirty) == (1, 1, ["b"])
    assert restored.watermark.value_ms == state.watermark.value_ms
    for device in ("a", "b"):
        assert restored.device_record(device) == state.device_record(device)


def test_skipped_readings_still_advance_the_watermark_on_replay() -> None:
    state = PartitionState(0, WINDOWS)
    state.apply(0, [reading("a", sec(1), 1.0), reading("b", sec(2), 1.0)])
    base = [(partition_key(0), state.partition_record()), (b"a", state.device_record("a")),
            (b"b", state.device_record("b"))]  # fmt: skip
    batch = [reading("a", sec(75), 2.0), reading("b", sec(30), 2.0)]  # b is late after a
    first = state.apply(1, batch)
    assert [r.reason for r in first.rejected] == ["late"]
    restored = PartitionState.restore([*base, (b"a", state.device_record("a"))], WINDOWS)[0]
    again = restored.apply(1, batch)
    assert (again.skipped, [r.reason for r in again.rejected]) == (1, ["late"])
    # a's 09:00 window was closed (and emitted) with a's durable record; b's is emitted again
    assert [r.device_id for r in first.results] == ["a", "b"]
    assert again.results == first.results[1:]


def test_corrupt_state_records_stop_the_restore() -> None:
    with pytest.raises(StateFormatError, match="unreadable"):
        PartitionState.restore([(b"d1", b"{not json")], WINDOWS)
    with pytest.raises(StateFormatError, match="version"):
        PartitionState.restore([(b"d1", b'{"v": 99, "p": 0}')], WINDOWS)
