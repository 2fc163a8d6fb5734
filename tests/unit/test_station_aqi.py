"""Per-station VN_AQI from closed windows: NowCast history, hourly and daily records, local-day
boundaries, persistence, and the derivation inside the partition state (fixed timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.indicator_values import decode_value, encode_value
from schemas.indicators import WindowResult
from schemas.readings import format_time
from streams.agents.partition import PartitionState
from streams.aqi import daily_aqi, hourly_aqi, nowcast
from streams.station_aqi import StationHours, station_values
from streams.window_specs import HOUR_MS, default_specs
from streams.windows import MINUTE_MS, TumblingWindows, to_ms

# the decision's worked example: PM2.5 hourly means 09:00 .. 20:00 (20:00 is the current hour)
PM25 = [26.9, 24.7, 20.5, 23.5, 19.5, 16.5, 19.0, 16.5, 20.3, 22.4, 19.6, 20.6]
H20 = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)  # 20:00 local (UTC+7)


def window(
    indicator: str, metric: str, start: datetime, mean: float, size: timedelta
) -> WindowResult:
    return WindowResult(
        indicator=indicator,
        device_id="aq-1",
        device_kind="air_quality",
        district="long-xuyen",
        ward="my-binh",
        metric=metric,
        unit="ug/m3",
        window_start=start,
        window_end=start + size,
        count=60,
        mean=mean,
        min=mean,
        max=mean,
        last=mean,
        stddev=0.0,
    )


def test_hourly_record_uses_the_nowcast_of_the_last_twelve_hours() -> None:
    hours = StationHours()
    out = []
    for i, mean in enumerate(PM25):
        start = H20 - timedelta(hours=11 - i)
        closed = [window("reading_stats_1h", "pm25", start, mean, timedelta(hours=1))]
        if i == 11:
            closed += [
                window("reading_stats_1h", "o3", start, 136.1, timedelta(hours=1)),
                window("reading_stats_1h", "no2", start, 118.7, timedelta(hours=1)),
            ]
        out = station_values(hours, closed)
        if i == 0:
            assert out == []  # NowCast needs 2 of the last 3 hours
    assert len(out) == 1
    value = out[0]
    want = hourly_aqi({"pm25": nowcast(list(reversed(PM25))), "o3": 136.1, "no2": 118.7})
    assert abs(value.value - 60) <= 1  # the decision's AQI_h = 60 (NO2 dominant)
    assert value.value == want.aqi
    assert value.labels["dominant"] == "no2"
    assert value.level == want.band
    assert {k: int(v) for k, v in value.components.items()} == dict(want.sub_indices)
    assert (value.indicator, value.subject_kind, value.subject_id) == (
        "vn_aqi_1h",
        "device",
        "aq-1",
    )
    assert decode_value(encode_value(value)) == value


def test_daily_record_uses_day_means_for_pm_and_maxima_for_gases() -> None:
    day = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)  # local 2026-11-28 00:00
    hours = StationHours()
    for h in range(24):
        start = day + timedelta(hours=h)
        closed = [
            window("reading_stats_1h", "o3", start, 80.0 + h, timedelta(hours=1)),
            window("reading_stats_1h", "no2", start, 130.8 if h == 9 else 40.0, timedelta(hours=1)),
        ]
        if h == 23:
            closed.append(window("reading_stats_1d", "pm25", day, 55.7, timedelta(days=1)))
        out = station_values(hours, closed)
    daily = [v for v in out if v.indicator == "vn_aqi_1d"]
    assert len(daily) == 1
    o3_8h = sum(80.0 + h for h in range(16, 24)) / 8
    want = daily_aqi({"pm25": 55.7, "no2": 130.8, "o3": 103.0, "o3_8h": o3_8h})
    assert daily[0].value == want.aqi
    assert abs(daily[0].value - 110) <= 1  # PM2.5 24-hour 55.7 -> 110, as in the decision
    assert daily[0].labels["dominant"] == "pm25"
    assert (daily[0].window_start, daily[0].window_end) == (day, day + timedelta(days=1))


def test_no_aqi_without_particulates_and_history_round_trips() -> None:
    hours = StationHours()
    start = H20
    assert (
        station_values(hours, [window("reading_stats_1h", "o3", start, 90, timedelta(hours=1))])
        == []
    )
    hours.add("pm25", to_ms(start), 20.0)
    hours.add("pm25", to_ms(start) + 40 * HOUR_MS, 21.0)  # forgets hours older than 36 h
    assert hours.means["pm25"] == {to_ms(start) + 40 * HOUR_MS: 21.0}
    assert StationHours.from_obj(hours.to_obj()).means == hours.means


def _reading(device: str, at: datetime, metric: str, value: float) -> dict[str, Any]:
    return {"device_id": device, "device_kind": "air_quality", "district": "long-xuyen",
            "ward": "my-binh", "metric": metric, "value": value, "unit": "ug/m3",
            "event_time": format_time(at)}  # fmt: skip


def test_partition_state_derives_station_aqi_and_restores_its_history() -> None:
    panes = TumblingWindows(MINUTE_MS, 10_000)
    specs = default_specs()
    state = PartitionState(0, panes, specs=specs)
    first = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    offset = 0
    values = []
    for h in range(3):  # three hours of PM2.5 every 10 minutes
        for m in range(0, 60, 10):
            at = first + timedelta(hours=h, minutes=m)
            values += state.apply(offset, [_reading("aq-1", at, "pm25", 20.0 + h)]).values
            offset += 1
    # hour 09 closes at 10:00:10 (no NowCast yet: one hour), hour 10 at 11:00:10 (NowCast)
    assert [v.indicator for v in values] == ["vn_aqi_1h"]
    assert values[0].window_start == first + timedelta(hours=1)
    records = dict(state.checkpoint())
    restored = PartitionState.restore(records.items(), panes, specs=specs)[0]
    later = first + timedelta(hours=3, seconds=11)
    a = state.apply(offset, [_reading("aq-1", later, "pm25", 1.0)]).values
    b = restored.apply(offset, [_reading("aq-1", later, "pm25", 1.0)]).values
    assert a == b
    assert [v.window_start for v in a] == [first + timedelta(hours=2)]
    assert a[0].value == hourly_aqi({"pm25": nowcast([22.0, 21.0, 20.0])}).aqi
    assert to_ms(a[0].window_end) == to_ms(first) + 3 * HOUR_MS
