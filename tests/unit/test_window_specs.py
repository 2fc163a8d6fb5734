"""Derived windows (1 h, hopping, local calendar days) merged from 1-minute panes, with fixed
timestamps: edges, local-day boundaries in UTC+7, grace and lateness, out-of-order readings,
quiet devices, idle ticks, and checkpointed state surviving crashes."""

from __future__ import annotations

import math
import random
import statistics
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.indicators import WindowResult
from schemas.readings import ReadingFormatError, format_time
from streams.agents.partition import PartitionState
from streams.agents.ticks import IdleTracker, decode_message, encode_tick
from streams.window_specs import (
    DAY_MS,
    HOUR_MS,
    CalendarDays,
    Hopping,
    default_specs,
    duration_label,
    parse_hopping,
    tumbling,
)
from streams.windows import MINUTE_MS, TumblingWindows, to_ms

ICT = timezone(timedelta(hours=7))
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # 16:00 local
T0_MS = to_ms(T0)
GRACE_MS = 10_000
PANES = TumblingWindows(MINUTE_MS, GRACE_MS)
SPECS = default_specs()  # 1h, 5m hop 1m, 15m hop 5m, local days


def reading(device: str, at: datetime, value: float, metric: str = "pm25") -> dict[str, Any]:
    return {
        "device_id": device,
        "device_kind": "air_quality",
        "district": "long-xuyen",
        "ward": "my-binh",
        "metric": metric,
        "value": value,
        "unit": "ug/m3",
        "event_time": format_time(at),
    }


def sec(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def by_key(results: list[WindowResult]) -> dict[str, WindowResult]:
    out: dict[str, WindowResult] = {}
    for r in results:
        assert out.setdefault(r.key, r) == r
    return out


# --- specs ---------------------------------------------------------------------------------------


def test_hopping_windows_covering_a_pane_at_the_edges() -> None:
    five = Hopping(5 * MINUTE_MS, MINUTE_MS)
    # the pane [09:00, 09:01) is in the windows starting 08:56 .. 09:00
    got = five.containing(T0_MS, T0_MS + MINUTE_MS)
    assert got == [(T0_MS + k * MINUTE_MS, T0_MS + (k + 5) * MINUTE_MS) for k in range(-4, 1)]
    fifteen = Hopping(15 * MINUTE_MS, 5 * MINUTE_MS)
    # [09:04, 09:05) is in 08:50-09:05, 08:55-09:10 and 09:00-09:15
    pane = T0_MS + 4 * MINUTE_MS
    assert [s for s, _ in fifteen.containing(pane, pane + MINUTE_MS)] == [
        T0_MS - 10 * MINUTE_MS,
        T0_MS - 5 * MINUTE_MS,
        T0_MS,
    ]
    hour = tumbling(HOUR_MS)
    last = T0_MS + 59 * MINUTE_MS
    assert hour.containing(last, last + MINUTE_MS) == [(T0_MS, T0_MS + HOUR_MS)]
    assert hour.name == "reading_stats_1h"


def test_spec_names_and_parsing() -> None:
    assert [s.name for s in SPECS] == [
        "reading_stats_1h",
        "reading_stats_5m_hop1m",
        "reading_stats_15m_hop5m",
        "reading_stats_1d",
    ]
    assert [s.name for s in parse_hopping("600/600, 1800/300")] == [
        "reading_stats_10m",
        "reading_stats_30m_hop5m",
    ]
    assert duration_label(90_000) == "90s"
    assert duration_label(DAY_MS) == "1d"


@pytest.mark.parametrize("text", ["300", "90/60", "300/90", "60/300", "abc/60", "0/0"], ids=repr)
def test_bad_hopping_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_hopping(text)


def test_duplicate_spec_names_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        default_specs("3600/3600")


def test_local_day_is_not_a_utc_day() -> None:
    days = CalendarDays()
    local_midnight = datetime(2026, 11, 28, tzinfo=ICT)  # = 2026-11-27T17:00Z
    start, end = days.day_bounds(to_ms(datetime(2026, 11, 28, 16, 59, 59, tzinfo=UTC)))
    assert (start, end) == (to_ms(local_midnight), to_ms(local_midnight) + DAY_MS)
    # 17:00Z is 00:00 of the next local day
    nxt = to_ms(datetime(2026, 11, 28, 17, 0, tzinfo=UTC))
    assert days.containing(nxt, nxt + MINUTE_MS) == [(end, end + DAY_MS)]
    # the last local minute 23:59 belongs to the old day, 00:00 to the new one
    assert days.containing(end - MINUTE_MS, end) == [(start, end)]
    with pytest.raises(ValueError, match="unknown time zone"):
        CalendarDays("Not/AZone")


# --- derived windows in the partition state ------------------------------------------------------


def _direct(values: list[tuple[datetime, float]]) -> dict[str, float]:
    vs = [v for _, v in values]
    newest = max(at for at, _ in values)
    return {
        "count": len(vs),
        "mean": statistics.fmean(vs),
        "min": min(vs),
        "max": max(vs),
        "last": [v for at, v in values if at == newest][-1],
        "stddev": statistics.pstdev(vs),
    }


def _assert_stats(result: WindowResult, want: dict[str, float]) -> None:
    assert result.count == want["count"]
    for name in ("mean", "min", "max", "last", "stddev"):
        assert math.isclose(getattr(result, name), want[name], rel_tol=1e-12, abs_tol=1e-12)


def test_derived_windows_equal_direct_statistics_with_out_of_order_and_in_grace_readings() -> None:
    rng = random.Random(4)
    state = PartitionState(0, PANES, specs=SPECS)
    accepted: list[tuple[datetime, float]] = []
    results: list[WindowResult] = []
    for i in range(0, 20 * 60, 3):  # 20 minutes, every 3 s, shuffled a little
        at = sec(i + rng.uniform(-2.5, 2.5)) if i else sec(0)
        value = round(rng.uniform(5, 90), 2)
        out = state.apply(i, [reading("d", at, value)])
        if not out.rejected:
            accepted.append((at, value))
        results += out.results
    # an in-grace straggler: 09:19:58 arrives after 09:20:05 was seen
    out = state.apply(10_000, [reading("d", sec(20 * 60 + 5), 1.0)])
    results += out.results
    accepted.append((sec(20 * 60 + 5), 1.0))
    out = state.apply(10_001, [reading("d", sec(20 * 60 - 2), 2.0)])
    assert not out.rejected
    accepted.append((sec(20 * 60 - 2), 2.0))
    results += out.results
    # closes everything up to 09:30
    results += state.apply(10_002, [reading("e", sec(30 * 60 + 11), 0.0)]).results
    got = by_key(results)
    kinds = {r.indicator for r in got.values()}
    assert kinds == {"reading_stats_1m", "reading_stats_5m_hop1m", "reading_stats_15m_hop5m"}
    for r in got.values():
        if r.device_id != "d":
            continue
        inside = [(at, v) for at, v in accepted if r.window_start <= at < r.window_end]
        _assert_stats(r, _direct(inside))
    fives = sorted(r.window_start for r in got.values() if r.indicator == "reading_stats_5m_hop1m")
    assert fives[0] == T0 - timedelta(minutes=4)
    assert fives[-1] == T0 + timedelta(minutes=20)  # 09:20-09:25 closed at 09:25:10


def test_hour_and_local_day_close_by_watermark_and_late_readings_count_nowhere() -> None:
    state = PartitionState(0, PANES, specs=SPECS)
    state.apply(0, [reading("d", sec(10), 10.0), reading("d", sec(3599), 20.0)])
    # 10:00:10 closes the 09:xx hour (end 10:00 + 10 s grace)
    out = state.apply(1, [reading("d", sec(3610), 30.0)])
    hours = [r for r in out.results if r.indicator == "reading_stats_1h"]
    assert [(r.window_start, r.count, r.mean) for r in hours] == [(T0, 2, 15.0)]
    # a reading of 09:59 now is late: dead-lettered, in no window
    late = state.apply(2, [reading("d", sec(3590), 99.0)])
    assert [r.reason for r in late.rejected] == ["late"]
    # 17:00:10Z closes the local day 2026-11-28 (UTC+7)
    day_end = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)
    out = state.apply(3, [reading("d", day_end + timedelta(seconds=10), 5.0)])
    days = [r for r in out.results if r.indicator == "reading_stats_1d"]
    assert [(r.window_start, r.window_end, r.count) for r in days] == [
        (day_end - timedelta(days=1), day_end, 3)
    ]
    assert days[0].mean == 20.0
    assert days[0].last == 30.0


def test_quiet_device_derived_windows_close_when_others_advance_the_watermark() -> None:
    state = PartitionState(0, PANES, specs=SPECS)
    state.apply(0, [reading("quiet", sec(1), 1.0), reading("busy", sec(1), 1.0)])
    results: list[WindowResult] = []
    for i in range(1, 80):
        results += state.apply(i, [reading("busy", sec(60 * i), 1.0)]).results
    quiet = {r.indicator for r in results if r.device_id == "quiet"}
    assert quiet == {
        "reading_stats_1m",
        "reading_stats_5m_hop1m",
        "reading_stats_15m_hop5m",
        "reading_stats_1h",
    }
    # only the local day (ends 17:00Z) is still open, for both devices
    assert {k[0] for k in state.devices["quiet"].partials} == {SPECS.index(SPECS[-1])}
    assert state.devices["quiet"].windows == {}


def test_idle_tick_advances_the_watermark_and_is_replayed_identically() -> None:
    state = PartitionState(0, PANES, specs=SPECS)
    state.apply(0, [reading("d", sec(5), 7.0)])
    objs, tick = decode_message(encode_tick(T0_MS + 5 * MINUTE_MS + GRACE_MS))
    assert objs == []
    out = state.apply(1, objs, tick)
    assert {r.indicator for r in out.results} == {
        "reading_stats_1m",
        "reading_stats_5m_hop1m",
        "reading_stats_15m_hop5m",  # 08:50-09:05
    }
    assert state.watermark.value_ms == tick
    # a tick behind the watermark does nothing
    assert state.apply(2, [], T0_MS).results == []
    assert state.watermark.value_ms == tick


@pytest.mark.parametrize(
    "data",
    [b'{"schema": "ioc.readings/v1", "readings": [], "watermark": "yesterday"}', b"[]", b"{"],
)
def test_malformed_ticks_are_format_errors(data: bytes) -> None:
    with pytest.raises(ReadingFormatError):
        decode_message(data)


def test_idle_tracker_sends_one_tick_per_idle_period() -> None:
    idle = IdleTracker(30.0)
    assert idle.due(0, None, 0.0) is None
    assert idle.due(0, None, 100.0) is None  # nothing seen yet: nothing to advance
    assert idle.due(0, 1_000, 100.0) is None  # moved: clock restarts
    assert idle.due(0, 1_000, 129.0) is None
    assert idle.due(0, 1_000, 130.5) == 1_000 + 30_500
    assert idle.due(0, 1_000, 131.0) is None  # not again until another idle period
    off = IdleTracker(0)
    assert off.due(0, 5, 0) is None
    assert off.due(0, 5, 1e9) is None


# --- checkpointed state: crash anywhere, restore, replay -----------------------------------------


def scenario(seed: int) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    readings = []
    for i in range(0, 25 * 60, 6):
        for d in range(3):
            for metric in ("pm25", "pm10"):
                t = i + rng.uniform(-5, 5)
                if rng.random() < 0.04:
                    t -= rng.uniform(5, 90)
                readings.append(reading(f"d{d}", sec(max(t, 0)), round(rng.gauss(30, 8), 3),
                                        metric))  # fmt: skip
    batches: list[list[dict[str, Any]]] = []
    while readings:
        n = rng.randint(1, 15)
        batches.append(readings[:n])
        readings = readings[n:]
    batches.append([reading("flush", sec(8 * 3600 + 60), 0.0)])  # past 17:00Z: closes the day
    return batches


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    every=st.integers(1, 25),
    crashes=st.lists(st.floats(0, 1), min_size=1, max_size=3),
)
def test_checkpointed_state_survives_crashes_with_every_window_exactly_once(
    seed: int, every: int, crashes: list[float]
) -> None:
    """Records are written every ``every`` messages (a checkpoint); a crash keeps a prefix of
    the written records; the committed offset is at most one past the last complete
    checkpoint; outputs of a message were sent (durable) before any checkpoint including it."""
    batches = scenario(seed)
    reference = PartitionState(0, PANES, specs=SPECS)
    expected = by_key([r for o, b in enumerate(batches) for r in reference.apply(o, b).results])
    assert {r.indicator for r in expected.values()} >= {"reading_stats_1h", "reading_stats_1d"}

    emitted: list[WindowResult] = []
    durable: list[tuple[bytes, bytes]] = []
    state = PartitionState(0, PANES, specs=SPECS)
    start = 0
    for crash in [*crashes, None]:
        written: list[tuple[bytes, bytes]] = []
        complete = start  # first offset not covered by a complete checkpoint
        cut_at = None if crash is None else start + int((len(batches) - start) * crash)
        for offset in range(start, len(batches)):
            if cut_at is not None and offset >= cut_at:
                break
            emitted += state.apply(offset, batches[offset]).results
            if (offset + 1) % every == 0 or offset == len(batches) - 1:
                written += state.checkpoint()
                complete = offset + 1
        if crash is None:
            break
        # a prefix of the writes since the last complete checkpoint may be lost too
        keep = len(written) - int(len(written) * crash * 0.5)
        durable += written[:keep]
        if keep < len(written):
            complete = start  # the last checkpoint is incomplete: commit nothing new
        start = complete
        restored = PartitionState.restore(dict(durable).items(), PANES, specs=SPECS)
        state = restored.get(0) or PartitionState(0, PANES, specs=SPECS)
    assert by_key(emitted) == expected
