"""River-gauge indicators from closed hourly windows (pure: no Faust, Kafka or clock).

When a gauge's hour closes (``reading_stats_1h`` of metric ``level``, metres against the
national datum), one ``ioc.indicator-values/v1`` record ``flood_level_1h`` (subject kind
``device``) is derived:

* ``value``: the hour's maximum level (m);
* ``level``: the flood alarm level that maximum reached — ``none``, ``bd1``, ``bd2``, ``bd3``
  (:func:`streams.flood.alarm_level`, thresholds per station from ``deploy/flood_levels.yaml``);
  ``""`` for a gauge without configured thresholds;
* ``components``: ``max_level_m``, ``mean_level_m``, ``alarm`` (0–3, absent without
  thresholds) and ``rise_cm_per_h`` — the least-squares slope of the hourly means (placed at
  mid-hour) over the last ``span_h`` hours (:func:`streams.flood.rise_rate_cm_per_h`, at least
  3 hours present), absent when there is not enough history;
* ``labels``: ``station`` (threshold station id) and ``alarm_vi`` when thresholds exist.

The hourly means are kept in the gauge's :class:`~streams.station_aqi.StationHours` (stored in
its device record), so a restart computes the same rise rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from schemas.indicator_values import IndicatorValue
from schemas.indicators import WindowResult
from streams.flood import GaugeThresholds, alarm_level, rise_rate_cm_per_h
from streams.station_aqi import StationHours
from streams.window_specs import HOUR_MS
from streams.windows import from_ms, to_ms

FLOOD_LEVEL_1H: Final = "flood_level_1h"
LEVEL_METRIC: Final = "level"


@dataclass(frozen=True)
class GaugeConfig:
    """Thresholds by *device id* and the span of the rise rate."""

    thresholds: Mapping[str, GaugeThresholds] = field(default_factory=dict)
    span_h: float = 3.0

    def __post_init__(self) -> None:
        if self.span_h <= 0:
            raise ValueError("the rise-rate span must be positive")


def thresholds_by_device(
    gauges: Mapping[str, Mapping[str, str]], stations: Mapping[str, GaugeThresholds]
) -> dict[str, GaugeThresholds]:
    """Map gauge device ids to station thresholds: by the device's ``station`` label, else by
    the device id without an ``rg-`` prefix. ``gauges``: device id -> labels."""
    out: dict[str, GaugeThresholds] = {}
    for device_id, labels in gauges.items():
        station = labels.get("station") or device_id.removeprefix("rg-")
        if station in stations:
            out[device_id] = stations[station]
    return out


def gauge_values(
    hours: StationHours, closed: list[WindowResult], config: GaugeConfig
) -> list[IndicatorValue]:
    """Feed one gauge's windows that closed together into ``hours``; return the hourly record."""
    hour = next(
        (r for r in closed if r.indicator == "reading_stats_1h" and r.metric == LEVEL_METRIC),
        None,
    )
    if hour is None:
        return []
    start = to_ms(hour.window_start)
    hours.add(LEVEL_METRIC, start, hour.mean)
    series = hours.means[LEVEL_METRIC]
    span = timedelta(hours=config.span_h)
    samples = [(from_ms(s + HOUR_MS // 2), v) for s, v in series.items()]
    rise = rise_rate_cm_per_h(samples, span=span, end=hour.window_end, min_samples=3)
    components = {"max_level_m": hour.max, "mean_level_m": hour.mean}
    if rise is not None:
        components["rise_cm_per_h"] = rise
    labels: dict[str, str] = {}
    level = ""
    thresholds = config.thresholds.get(hour.device_id)
    if thresholds is not None:
        reached = alarm_level(hour.max, thresholds)
        level = reached.name.lower()
        components["alarm"] = float(int(reached))
        labels = {"station": thresholds.station_id, "alarm_vi": reached.label_vi}
    return [
        IndicatorValue(
            indicator=FLOOD_LEVEL_1H,
            subject_kind="device",
            subject_id=hour.device_id,
            district=hour.district,
            window_start=hour.window_start,
            window_end=hour.window_end,
            value=hour.max,
            level=level,
            components=components,
            labels=labels,
        )
    ]
