"""Per-station VN_AQI from closed hourly and daily windows (pure: no Faust, Kafka or clock).

An air-quality station's hourly means (``reading_stats_1h``, µg/m³) are kept for the last
:data:`KEEP_HOURS` hours in :class:`StationHours`, stored in the station's device record so a
restart recovers them with the windows (``streams/agents/state_records.py``). From them:

* **hourly** (``vn_aqi_1h``, when a station's hour closes): PM2.5 and PM10 by NowCast over the
  last 12 hourly means (:func:`streams.aqi.nowcast`, which needs 2 of the last 3 hours); O3,
  NO2, SO2, CO by the hour's mean;
* **daily** (``vn_aqi_1d``, when the station's local day closes, 00:00–24:00 local time,
  i.e. VN_AQI's hours ending 01:00 … 24:00): PM by the day's mean of all readings (the
  ``reading_stats_1d`` window); O3 by the larger of the day's maximum hourly mean and maximum
  8-hour mean (8 consecutive hours of the day, at least 6 present, as the 8-hour windows
  ending at each hour of the day, that may start the previous evening); NO2, SO2, CO by the
  day's maximum hourly mean.

Results are ``ioc.indicator-values/v1`` records (``schemas/indicator_values.py``) with subject
kind ``device``: ``value`` the AQI, ``level`` the band key (``good`` … ``hazardous``),
``components`` the sub-indices, ``labels`` the dominant pollutant and the station's ward.
No AQI is emitted for an hour or day without PM2.5 or PM10 (Decision 1459/QĐ-TCMT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from schemas.indicator_values import IndicatorValue
from schemas.indicators import WindowResult
from streams.aqi import AqiInputError, AqiResult, daily_aqi, hourly_aqi, nowcast
from streams.window_specs import HOUR_MS
from streams.windows import to_ms

POLLUTANTS: Final = ("pm25", "pm10", "o3", "no2", "so2", "co")
PARTICULATES: Final = ("pm25", "pm10")
GASES: Final = ("o3", "no2", "so2", "co")
KEEP_HOURS: Final = 36  # NowCast needs 12; the daily O3 8-hour mean reaches 31 hours back
HOURLY: Final = "vn_aqi_1h"
DAILY: Final = "vn_aqi_1d"
HOUR_INDICATOR: Final = "reading_stats_1h"
DAY_INDICATOR: Final = "reading_stats_1d"


class StationHours:
    """Hourly means per pollutant of one station, by hour start (epoch ms)."""

    __slots__ = ("means",)

    def __init__(self) -> None:
        self.means: dict[str, dict[int, float]] = {}

    def add(self, metric: str, hour_start_ms: int, mean: float) -> None:
        """Record a closed hour's mean and forget hours older than :data:`KEEP_HOURS`."""
        series = self.means.setdefault(metric, {})
        series[hour_start_ms] = mean
        oldest = hour_start_ms - KEEP_HOURS * HOUR_MS
        for start in [s for s in series if s < oldest]:
            del series[start]

    def hourly(self, hour_start_ms: int) -> AqiResult | None:
        """The station's hourly AQI for the hour starting at ``hour_start_ms``, if computable."""
        conc: dict[str, float | None] = {}
        for pm in PARTICULATES:
            series = self.means.get(pm)
            if series:
                conc[pm] = nowcast([series.get(hour_start_ms - i * HOUR_MS) for i in range(12)])
        for gas in GASES:
            series = self.means.get(gas)
            if series and hour_start_ms in series:
                conc[gas] = series[hour_start_ms]
        return _safe(hourly_aqi, conc)

    def daily(
        self, day_start_ms: int, day_end_ms: int, day_means: Mapping[str, float]
    ) -> AqiResult | None:
        """The station's daily AQI for ``[day_start_ms, day_end_ms)``; ``day_means`` are the
        day windows' means by metric (used for PM)."""
        conc: dict[str, float | None] = {
            pm: day_means[pm] for pm in PARTICULATES if pm in day_means
        }
        hours = range(day_start_ms, day_end_ms, HOUR_MS)
        for gas in GASES:
            series = self.means.get(gas, {})
            values = [series[h] for h in hours if h in series]
            if values:
                conc[gas] = max(values)
        o3 = self.means.get("o3", {})
        eights = []
        for h in hours:
            span = [o3[s] for s in range(h - 7 * HOUR_MS, h + HOUR_MS, HOUR_MS) if s in o3]
            if len(span) >= 6:
                eights.append(sum(span) / len(span))
        if eights:
            conc["o3_8h"] = max(eights)
        return _safe(daily_aqi, conc)

    def to_obj(self) -> dict[str, list[list[float]]]:
        """Compact, exact state for the device record."""
        return {m: [[s, v] for s, v in sorted(series.items())] for m, series in self.means.items()}

    @classmethod
    def from_obj(cls, obj: Mapping[str, Iterable[list[float]]]) -> StationHours:
        """Inverse of :meth:`to_obj`; raises ``ValueError``/``TypeError`` if malformed."""
        hours = cls()
        for metric, pairs in obj.items():
            hours.means[str(metric)] = {int(s): float(v) for s, v in pairs}
        return hours


def _safe(
    fn: Callable[[Mapping[str, float | None]], AqiResult], conc: dict[str, float | None]
) -> AqiResult | None:
    values: dict[str, float | None] = {k: v for k, v in conc.items() if v is not None}
    if not values.keys() & set(PARTICULATES):
        return None
    try:
        return fn(values)
    except AqiInputError:
        return None


def _value(indicator: str, window: WindowResult, result: AqiResult) -> IndicatorValue:
    return IndicatorValue(
        indicator=indicator,
        subject_kind="device",
        subject_id=window.device_id,
        district=window.district,
        window_start=window.window_start,
        window_end=window.window_end,
        value=float(result.aqi),
        level=result.band,
        components={k: float(v) for k, v in result.sub_indices.items()},
        labels={"dominant": result.dominant, "ward": window.ward, "table": result.table},
    )


def station_values(hours: StationHours, closed: list[WindowResult]) -> list[IndicatorValue]:
    """Feed one station's windows that closed together (same end) into ``hours`` and return
    the hourly and daily AQI records they complete, hourly first."""
    out: list[IndicatorValue] = []
    hourly = [r for r in closed if r.indicator == HOUR_INDICATOR and r.metric in POLLUTANTS]
    for r in hourly:
        hours.add(r.metric, to_ms(r.window_start), r.mean)
    if hourly:
        result = hours.hourly(to_ms(hourly[0].window_start))
        if result is not None:
            out.append(_value(HOURLY, hourly[0], result))
    daily = [r for r in closed if r.indicator == DAY_INDICATOR and r.metric in POLLUTANTS]
    if daily:
        means = {r.metric: r.mean for r in daily}
        first = daily[0]
        result = hours.daily(to_ms(first.window_start), to_ms(first.window_end), means)
        if result is not None:
            out.append(_value(DAILY, first, result))
    return out
