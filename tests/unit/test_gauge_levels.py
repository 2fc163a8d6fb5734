"""River-gauge hourly indicators: maximum level, rise rate over a span, flood alarm level,
threshold lookup by device, and the derivation inside the partition state."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.indicators import WindowResult
from schemas.readings import format_time
from streams.agents.partition import PartitionState
from streams.flood import GaugeThresholds
from streams.gauge_levels import GaugeConfig, gauge_values, thresholds_by_device
from streams.station_aqi import StationHours
from streams.window_specs import default_specs
from streams.windows import MINUTE_MS, TumblingWindows

T0 = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
TAN_CHAU = GaugeThresholds("tan-chau", "Tân Châu", 3.5, 4.0, 4.5)
CONFIG = GaugeConfig({"rg-tan-chau": TAN_CHAU}, span_h=3.0)


def hour(h: int, mean: float, top: float, device: str = "rg-tan-chau") -> WindowResult:
    start = T0 + timedelta(hours=h)
    return WindowResult(
        indicator="reading_stats_1h",
        device_id=device,
        device_kind="river_gauge",
        district="tan-chau",
        ward="",
        metric="level",
        unit="m",
        window_start=start,
        window_end=start + timedelta(hours=1),
        count=6,
        mean=mean,
        min=mean,
        max=top,
        last=mean,
        stddev=0.0,
    )


def test_alarm_level_of_the_hourly_maximum_and_rise_rate_over_the_span() -> None:
    hours = StationHours()
    first = gauge_values(hours, [hour(0, 3.40, 3.45)], CONFIG)[0]
    assert (first.indicator, first.value, first.level) == ("flood_level_1h", 3.45, "none")
    assert "rise_cm_per_h" not in first.components  # one hour: no rate yet
    gauge_values(hours, [hour(1, 3.50, 3.55)], CONFIG)
    third = gauge_values(hours, [hour(2, 3.60, 4.02)], CONFIG)[0]
    assert third.level == "bd2"  # 4.02 m reached BĐ II (4.00 m)
    assert third.labels == {"station": "tan-chau", "alarm_vi": "BĐ II"}
    assert third.components["alarm"] == 2.0
    assert math.isclose(third.components["rise_cm_per_h"], 10.0)  # 3.40 -> 3.60 in 2 h
    assert third.components["max_level_m"] == 4.02


def test_gauge_without_thresholds_and_other_metrics() -> None:
    hours = StationHours()
    other = hour(0, 1.0, 1.2, device="rg-unknown")
    (value,) = gauge_values(hours, [other], CONFIG)
    assert value.level == ""
    assert value.labels == {}
    assert "alarm" not in value.components
    salinity = WindowResult(**_as_dict(other, metric="salinity"))
    assert gauge_values(StationHours(), [salinity], CONFIG) == []


def _as_dict(r: WindowResult, **changes: Any) -> dict[str, Any]:
    fields = {name: getattr(r, name) for name in WindowResult.__dataclass_fields__}
    return {**fields, **changes}


def test_thresholds_by_label_or_id_and_bad_span() -> None:
    stations = {"tan-chau": TAN_CHAU}
    got = thresholds_by_device({"rg-tan-chau": {}, "gauge-7": {"station": "tan-chau"},
                                "rg-nowhere": {}}, stations)  # fmt: skip
    assert got == {"rg-tan-chau": TAN_CHAU, "gauge-7": TAN_CHAU}
    with pytest.raises(ValueError, match="span"):
        GaugeConfig(span_h=0)


def test_partition_state_derives_flood_levels_from_closed_hours() -> None:
    state = PartitionState(0, TumblingWindows(MINUTE_MS, 10_000), specs=default_specs(),
                           gauges=CONFIG)  # fmt: skip
    values = []
    for i in range(0, 4 * 60, 10):  # a reading every 10 minutes for four hours, rising
        at = T0 + timedelta(minutes=i)
        reading = {"device_id": "rg-tan-chau", "device_kind": "river_gauge",
                   "district": "tan-chau", "ward": "", "metric": "level",
                   "value": 3.0 + i / 200, "unit": "m", "event_time": format_time(at)}  # fmt: skip
        values += state.apply(i, [reading]).values
    assert [v.window_start for v in values] == [T0 + timedelta(hours=h) for h in range(3)]
    assert [v.level for v in values] == ["none", "bd1", "bd1"]  # maxima 3.25, 3.55, 3.85 m
    assert math.isclose(values[-1].components["rise_cm_per_h"], 30.0)  # 0.3 m per hour
