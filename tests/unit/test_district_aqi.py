"""District VN_AQI and devices reporting (streams/district_aqi.py, district_health.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.indicator_values import IndicatorValue
from streams.district_aqi import district_aqi
from streams.district_health import expected_devices, reporting_values

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def station(sid: str, aqi: float, dominant: str, subs: dict[str, float]) -> IndicatorValue:
    return IndicatorValue(
        indicator="vn_aqi_1h", subject_kind="device", subject_id=sid, district="long-xuyen",
        window_start=T0, window_end=T0 + H, value=aqi, level="moderate" if aqi <= 100 else "poor",
        components=subs, labels={"dominant": dominant, "ward": "w", "table": "VN_AQI"},
    )  # fmt: skip


def test_the_district_takes_its_worst_station() -> None:
    stations = {
        "aq-1": station("aq-1", 60, "no2", {"no2": 60, "pm25": 41}),
        "aq-2": station("aq-2", 110, "pm25", {"pm25": 110, "o3": 36}),
        "aq-3": station("aq-3", 45, "o3", {"o3": 45}),
    }
    v = district_aqi("long-xuyen", stations, expected=4)
    assert v is not None
    assert (v.indicator, v.subject_kind, v.subject_id, v.district) == (
        "vn_aqi_1h", "district", "long-xuyen", "long-xuyen",
    )  # fmt: skip
    assert (v.value, v.level) == (110, "poor")
    assert v.labels == {"dominant": "pm25", "worst_station": "aq-2", "table": "VN_AQI"}
    assert v.components == {"no2": 60, "pm25": 110, "o3": 45, "stations": 3, "expected": 4}
    assert (v.window_start, v.window_end) == (T0, T0 + H)
    assert v.key == "vn_aqi_1h|district:long-xuyen|2026-11-28T09:00:00.000Z"


def test_ties_go_to_the_first_station_id_and_no_station_gives_nothing() -> None:
    stations = {
        "aq-9": station("aq-9", 80, "pm10", {"pm10": 80}),
        "aq-1": station("aq-1", 80, "pm25", {"pm25": 80}),
    }
    v = district_aqi("long-xuyen", stations, expected=2)
    assert v is not None
    assert v.labels["worst_station"] == "aq-1"
    assert v.labels["dominant"] == "pm25"
    assert district_aqi("long-xuyen", {}, expected=2) is None


def test_expected_devices_leave_out_slow_reporters() -> None:
    devices = [
        ("aq-1", "lx", 60.0),
        ("g-1", "lx", 600.0),
        ("w-1", "lx", 86400.0),
        ("x", "cd", 7200),
    ]
    assert expected_devices(devices, 3600) == {
        "lx": frozenset({"aq-1", "g-1"}),
        "cd": frozenset(),
    }


def test_every_district_gets_a_reporting_record_silent_ones_included() -> None:
    expected = {"lx": {"a", "b", "c", "d"}, "cd": {"e"}, "empty": set()}
    reported = {"lx": {"a", "b", "z"}}
    values = {v.subject_id: v for v in reporting_values(expected, reported, T0, T0 + H)}
    assert set(values) == {"lx", "cd", "empty"}
    lx = values["lx"]
    assert lx.indicator == "devices_reporting_1h"
    assert lx.value == 0.5
    assert lx.components == {"reporting": 2, "expected": 4, "silent": 2, "unexpected": 1}
    assert lx.labels == {"silent_devices": "c,d"}
    assert values["cd"].value == 0.0
    assert values["cd"].labels == {"silent_devices": "e"}
    assert values["empty"].value == 1.0
