"""Traffic-segment indicators from closed 15-minute windows: count, speed, occupancy and the
congestion level, by occupancy alone or with a free-flow speed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.indicators import WindowResult
from streams.traffic_flow import traffic_values

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


def window(
    metric: str, mean: float, count: int = 15, indicator: str = "reading_stats_15m_hop5m"
) -> WindowResult:
    return WindowResult(indicator=indicator, device_id="tf-1", device_kind="traffic",
                        district="long-xuyen", ward="my-binh", metric=metric, unit="",
                        window_start=T0, window_end=T0 + timedelta(minutes=15), count=count,
                        mean=mean, min=mean, max=mean, last=mean, stddev=0.0)  # fmt: skip


def test_count_speed_occupancy_and_congestion_by_occupancy() -> None:
    (value,) = traffic_values([window("vehicle_count", 42.0), window("speed", 31.5),
                               window("occupancy", 27.0)])  # fmt: skip
    assert value.indicator == "traffic_15m"
    assert value.components == {"vehicle_count": 630.0, "mean_speed_kmh": 31.5,
                                "occupancy_pct": 27.0}  # fmt: skip
    assert (value.level, value.value) == ("heavy", 2.0)  # occupancy 0.27 >= 0.25


def test_speed_ratio_counts_when_free_flow_is_known_and_no_signal_gives_nothing() -> None:
    closed = [window("speed", 12.0), window("occupancy", 5.0)]
    assert traffic_values(closed)[0].level == "free"  # occupancy only
    assert traffic_values(closed, {"tf-1": 50.0})[0].level == "jammed"  # 12/50 = 0.24
    assert traffic_values([window("vehicle_count", 3.0)]) == []
    assert traffic_values([window("speed", 30.0, indicator="reading_stats_1m")]) == []
