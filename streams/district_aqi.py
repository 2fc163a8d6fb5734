"""District VN_AQI from per-station VN_AQI records (pure: no Faust, Kafka or clock).

DOMAIN.md defines the AQI of a station (the largest sub-index) but not of a district. The
district figure here is the **worst station**: the largest station AQI of the window, with
that station's colour band and dominant pollutant (ties: the station id that sorts first), as
an operator reads a district map coloured by its worst station and as the ClickHouse view
``vn_aqi_district_hourly`` already computes it. Components: each pollutant's largest
sub-index over the stations, ``stations`` (how many stations gave an AQI) and ``expected``
(air-quality stations of the district in the device registry); labels: ``dominant``,
``worst_station`` and the index ``table``.

Inputs are ``ioc.indicator-values/v1`` records of the station indicators ``vn_aqi_1h`` and
``vn_aqi_1d`` (subject kind ``device``, ``streams/station_aqi.py``); the district record
keeps the station records' indicator and window, with subject kind ``district``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from schemas.indicator_values import IndicatorValue

STATION_INDICATORS: Final = frozenset({"vn_aqi_1h", "vn_aqi_1d"})


def district_aqi(
    district: str, stations: Mapping[str, IndicatorValue], expected: int, revision: int = 0
) -> IndicatorValue | None:
    """The district record of one window from its stations' records (by station id, all of
    one indicator and window); ``None`` without any station."""
    if not stations:
        return None
    worst_id = min(stations, key=lambda sid: (-stations[sid].value, sid))
    worst = stations[worst_id]
    components: dict[str, float] = {}
    for record in stations.values():
        for pollutant, sub in record.components.items():
            components[pollutant] = max(components.get(pollutant, sub), sub)
    components["stations"] = float(len(stations))
    components["expected"] = float(expected)
    labels = {"dominant": worst.labels.get("dominant", ""), "worst_station": worst_id}
    if "table" in worst.labels:
        labels["table"] = worst.labels["table"]
    return IndicatorValue(
        indicator=worst.indicator,
        subject_kind="district",
        subject_id=district,
        district=district,
        window_start=worst.window_start,
        window_end=worst.window_end,
        value=worst.value,
        level=worst.level,
        components=components,
        labels=labels,
        revision=revision,
    )
