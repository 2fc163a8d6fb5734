"""Devices reporting per district and window: families, edges, local days, late minutes
(streams/district_health.py and its windows in streams/district_partition.py), fixed times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas.indicator_values import IndicatorValue
from schemas.indicators import WindowResult, encode_indicator
from schemas.readings import format_time
from streams.district_health import health_families, health_windows
from streams.district_partition import DistrictState, MinuteRepeats, encode_tick
from streams.window_specs import CalendarDays
from streams.windows import to_ms

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)
CITY = ZoneInfo("Asia/Ho_Chi_Minh")
REGISTRY = [
    ("aq-1", "lx", 60.0),
    ("aq-2", "lx", 60.0),
    ("wx-1", "lx", 600.0),  # expected in 15-minute and hourly windows only
    ("aq-3", "cd", 60.0),
    ("wx-9", "tt", 600.0),
]
HEALTH = health_families(REGISTRY)
NAMES = ["devices_reporting_1m", "devices_reporting_5m_hop1m", "devices_reporting_15m_hop5m",
         "devices_reporting_1h"]  # fmt: skip


def minute(device: str, district: str, start: datetime, metric: str = "pm25") -> bytes:
    return encode_indicator(WindowResult(
        indicator="reading_stats_1m", device_id=device, device_kind="x", district=district,
        ward="", metric=metric, unit="u", window_start=start, window_end=start + M,
        count=1, mean=1.0, min=1.0, max=1.0, last=1.0, stddev=0.0,
    ))  # fmt: skip


def tick(at: datetime) -> bytes:
    return encode_tick(to_ms(at))


def new(grace: timedelta = timedelta(0), keep: timedelta = timedelta(days=1)) -> DistrictState:
    return DistrictState({}, HEALTH, grace_ms=to_ms(T0 + grace) - to_ms(T0),
                         health_keep_ms=to_ms(T0 + keep) - to_ms(T0))  # fmt: skip


class Feed:
    """A state and every record it emitted, by offset."""

    def __init__(self, state: DistrictState) -> None:
        self.state = state
        self.offset = 0
        self.values: list[IndicatorValue] = []

    def __call__(self, *messages: bytes) -> list[IndicatorValue]:
        out: list[IndicatorValue] = []
        for m in messages:
            out += self.state.apply(self.offset, m).values
            self.offset += 1
        self.values += out
        return out

    def latest(self, name: str, district: str, start: datetime) -> IndicatorValue:
        key = f"{name}|district:{district}|{format_time(start)}"
        return max((v for v in self.values if v.key == key), key=lambda v: v.revision)


def test_the_families_follow_the_worker_windows() -> None:
    assert [(s.name, s.size_ms // 60_000, s.hop_ms // 60_000) for s in health_windows()] == [
        ("devices_reporting_1m", 1, 1),
        ("devices_reporting_5m_hop1m", 5, 1),
        ("devices_reporting_15m_hop5m", 15, 5),
        ("devices_reporting_1h", 60, 60),
    ]
    assert [s.name for s in health_windows("600/120,60/60,3600/3600")] == [
        "devices_reporting_1m",
        "devices_reporting_10m_hop2m",
        "devices_reporting_1h",
    ]
    with pytest.raises(ValueError, match="SIZE/HOP"):
        health_windows("300")
    with pytest.raises(ValueError, match="multiples"):
        health_windows("90/30")  # not whole minutes


def test_expected_devices_depend_on_the_window_size() -> None:
    expected = {f.name: f.expected for f in HEALTH}
    assert expected["devices_reporting_1m"]["lx"] == {"aq-1", "aq-2"}
    assert expected["devices_reporting_5m_hop1m"]["lx"] == {"aq-1", "aq-2"}
    assert expected["devices_reporting_15m_hop5m"]["lx"] == {"aq-1", "aq-2", "wx-1"}
    assert expected["devices_reporting_1h"]["tt"] == {"wx-9"}
    assert expected["devices_reporting_1m"]["tt"] == frozenset()  # still a district


def test_window_enumeration_at_the_edges() -> None:
    five = HEALTH[1]
    t0 = to_ms(T0)
    # ends strictly after ``after`` and up to ``upto`` inclusive
    assert five.ending(t0, t0 + 60_000) == [(t0 - 240_000, t0 + 60_000)]
    assert five.ending(t0 - 1, t0) == [(t0 - 300_000, t0)]
    assert five.ending(t0, t0 + 59_999) == []
    assert five.containing(t0) == [(t0 - 240_000 + i * 60_000, t0 + 60_000 + i * 60_000)
                                   for i in range(5)]  # fmt: skip
    fifteen = HEALTH[2]
    assert fifteen.containing(t0 + 14 * 60_000) == [
        (t0, t0 + 900_000),
        (t0 + 300_000, t0 + 1_200_000),
        (t0 + 600_000, t0 + 1_500_000),
    ]


def test_a_window_closes_exactly_at_its_end_plus_grace() -> None:
    feed = Feed(new(grace=timedelta(seconds=30)))
    assert feed(minute("aq-1", "lx", T0)) == []
    assert feed(tick(T0 + M + timedelta(seconds=30) - timedelta(milliseconds=1))) == []
    got = feed(tick(T0 + M + timedelta(seconds=30)))
    assert sorted((v.indicator, v.subject_id, v.window_start) for v in got) == sorted(
        [("devices_reporting_1m", d, T0) for d in ("cd", "lx", "tt")]
        + [("devices_reporting_5m_hop1m", d, T0 - 4 * M) for d in ("cd", "lx", "tt")]
    )
    lx = feed.latest("devices_reporting_1m", "lx", T0)
    assert (lx.value, lx.labels["silent_devices"]) == (0.5, "aq-2")
    assert lx.components == {"reporting": 1, "expected": 2, "silent": 1, "unexpected": 0}
    assert feed.latest("devices_reporting_1m", "tt", T0).value == 1.0  # nothing expected


def test_windows_at_the_local_midnight_utc_plus_7() -> None:
    midnight = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)  # 2026-11-29 00:00 in the city
    assert midnight.astimezone(CITY).hour == 0
    feed = Feed(new())
    feed(minute("aq-1", "lx", midnight - M), minute("aq-2", "lx", midnight), tick(midnight + H))

    def reporting(name: str, start: datetime) -> set[str]:
        silent = feed.latest(name, "lx", start).labels["silent_devices"].split(",")
        expected = next(f.expected["lx"] for f in HEALTH if f.name == name)
        return set(expected) - set(silent)

    assert reporting("devices_reporting_1h", midnight - H) == {"aq-1"}  # 23:00-24:00 local
    assert reporting("devices_reporting_1h", midnight) == {"aq-2"}  # 00:00-01:00 local
    assert reporting("devices_reporting_15m_hop5m", midnight - 10 * M) == {"aq-1", "aq-2"}
    assert reporting("devices_reporting_5m_hop1m", midnight - 4 * M) == {"aq-1", "aq-2"}
    assert reporting("devices_reporting_5m_hop1m", midnight - 5 * M) == {"aq-1"}
    assert reporting("devices_reporting_5m_hop1m", midnight) == {"aq-2"}
    assert reporting("devices_reporting_1m", midnight - M) == {"aq-1"}
    assert reporting("devices_reporting_1m", midnight) == {"aq-2"}
    first = feed.latest("devices_reporting_1h", "lx", midnight)
    assert first.window_start.astimezone(CITY).date() == first.window_end.astimezone(CITY).date()


@pytest.mark.parametrize("family", [0, 3])
def test_tumbling_windows_tile_the_local_day(family: int) -> None:
    day_start, day_end = CalendarDays().day_bounds(to_ms(T0))
    assert day_start == to_ms(datetime(2026, 11, 27, 17, 0, tzinfo=UTC))
    windows = HEALTH[family].ending(day_start, day_end)
    assert windows[0][0] == day_start
    assert windows[-1][1] == day_end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))


def test_a_late_minute_revises_only_the_closed_windows_it_changes() -> None:
    feed = Feed(new())
    feed(minute("aq-1", "lx", T0), minute("aq-1", "lx", T0 + M),
         minute("aq-1", "lx", T0 + M, "pm10"), tick(T0 + 20 * M))  # fmt: skip
    late = feed(minute("aq-2", "lx", T0 + 2 * M))
    assert all((v.subject_id, v.revision) == ("lx", 1) for v in late)
    # windows with aq-1 (minutes 0 and 1) now have both; the hour is still open: no record
    assert sorted((v.indicator, v.window_start, v.components["reporting"]) for v in late) == sorted(
        [("devices_reporting_1m", T0 + 2 * M, 1)]
        + [("devices_reporting_5m_hop1m", T0 + (i - 2) * M, 2 if i < 4 else 1) for i in range(5)]
        + [("devices_reporting_15m_hop5m", T0 + i * 5 * M, 2) for i in (-2, -1, 0)]
    )
    # a minute of aq-2 next to the last: only the windows without T0+2m change
    again = feed(minute("aq-2", "lx", T0 + 3 * M))
    assert [(v.indicator, v.window_start, v.revision) for v in again] == [
        ("devices_reporting_1m", T0 + 3 * M, 1),
        ("devices_reporting_5m_hop1m", T0 + 3 * M, 1),
    ]
    assert feed(minute("aq-2", "lx", T0 + 3 * M, "pm10")) == []  # a repeat
    hour = [v for v in feed(tick(T0 + H)) if v.indicator == "devices_reporting_1h"]
    lx = next(v for v in hour if v.subject_id == "lx")
    assert (lx.components["reporting"], lx.revision) == (2, 0)


def test_minutes_older_than_the_kept_windows_are_late() -> None:
    st = new(keep=H)
    st.apply(0, minute("aq-1", "lx", T0))
    st.apply(1, tick(T0 + 2 * H))
    assert st.apply(2, minute("aq-2", "lx", T0 + H - M)).late
    kept = st.apply(3, minute("aq-2", "lx", T0 + H))
    assert not kept.late
    assert {v.indicator for v in kept.values} == set(NAMES)


def test_a_jump_of_the_watermark_emits_only_the_kept_windows() -> None:
    feed = Feed(new(keep=H))
    feed(minute("aq-1", "lx", T0))
    got = feed(tick(T0 + timedelta(days=1)))
    per_family = {n: sum(v.indicator == n for v in got) for n in NAMES}
    assert per_family == {n: k * 3 for n, k in zip(NAMES, (60, 60, 12, 1), strict=True)}
    assert min(v.window_end for v in got) > T0 + timedelta(days=1) - H


def test_a_district_outside_the_registry_gets_the_windows_it_reported_in() -> None:
    feed = Feed(new())
    feed(minute("zz-1", "nowhere", T0), tick(T0 + 2 * M))
    nowhere = [v for v in feed.values if v.subject_id == "nowhere"]
    assert {(v.indicator, v.window_start) for v in nowhere} == {
        ("devices_reporting_1m", T0),
        ("devices_reporting_5m_hop1m", T0 - 4 * M),
        ("devices_reporting_5m_hop1m", T0 - 3 * M),
    }
    assert all(v.value == 1.0 and v.components["unexpected"] == 1 for v in nowhere)


def test_no_empty_window_before_the_first_input_even_with_a_grace() -> None:
    # the watermark limit (watermark - grace) starts before the first input's minute; the
    # clock still opens at that minute (it used to open at the limit, one grace earlier)
    feed = Feed(new(grace=10 * M))
    feed(minute("aq-1", "lx", T0 + 30 * M), minute("aq-1", "lx", T0 + 50 * M))
    assert feed.values
    assert min(v.window_end for v in feed.values) == T0 + 31 * M


def test_a_restored_state_opens_no_earlier_windows() -> None:
    first = new()
    first.apply(0, minute("aq-1", "lx", T0 + 30 * M))
    table = {k: v for k, v in first.checkpoint() if v is not None}
    restored = new()
    restored.restore(table.items())
    after = restored.apply(1, tick(T0 + 2 * H)).values
    assert after == first.apply(1, tick(T0 + 2 * H)).values
    assert min(v.window_end for v in after) == T0 + 32 * M  # T0+31m closed with the minute


def test_families_need_distinct_names() -> None:
    with pytest.raises(ValueError, match="distinct names"):
        DistrictState({}, [HEALTH[0], HEALTH[0]])


def test_repeated_minutes_of_a_device_are_recognised() -> None:
    repeats = MinuteRepeats()
    a = b"reading_stats_1m|aq-1|pm25|2026-11-28T09:00:00.000Z"
    assert not repeats.repeated(a)
    assert repeats.repeated(b"reading_stats_1m|aq-1|pm10|2026-11-28T09:00:00.000Z")
    assert not repeats.repeated(b"reading_stats_1m|aq-2|pm10|2026-11-28T09:00:00.000Z")
    assert not repeats.repeated(b"reading_stats_1m|aq-1|pm25|2026-11-28T09:01:00.000Z")
    assert not repeats.repeated(a)  # an older minute again: forwarded (a harmless repeat)
    assert not repeats.repeated(b"vn_aqi_1h|device:aq-1|2026-11-28T09:00:00.000Z")
