"""Indicator tiles per district, read from ClickHouse: VN_AQI, river level, services, devices.

One tile per district of the device registry (plus any district found in the data):

* **VN_AQI** — the latest district value of the official hourly index (view
  ``vn_aqi_district_hourly`` over ``indicator_values``, indicator ``vn_aqi_1h``), coloured by
  Decision 1459/QĐ-TCMT's band. When that view is missing or has no row of the last 6 hours, an
  *indicative* value is computed from the last hour's PM2.5/PM10 means in ``indicator_windows``
  (1-hour means instead of NowCast) and marked so.
* **River** — the highest gauge of the district (latest ``level`` reading of the last day)
  against its flood alarm levels BĐ I–III (``deploy/flood_levels.yaml`` via the registry's
  ``station`` label).
* **Services** — the on-time rate (%) of public-service applications resolved in the last 7
  days (local time), from the view ``service_applications_daily`` over ``events``.
* **Devices** — devices that reported in the last 15 minutes against the registered ones.

Guarantees: every query is parameterised; a missing table (``UNKNOWN_TABLE``) gives an empty
part (``None``) silently, any other query error gives an empty part, is logged and counted;
:func:`build_tiles` is pure and never raises on odd rows (non-finite values are skipped).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from clickhouse_connect.driver.exceptions import ClickHouseError

from connectors.registry import Registry
from schemas.alerts import format_time_us
from streams.aqi import AQI_MAX, AqiInputError, band_for, hourly_aqi, round_half_up
from streams.flood import GaugeThresholds, alarm_level

log = logging.getLogger(__name__)

REPORTING_WINDOW_MIN: Final = 15

AQI_OFFICIAL_SQL: Final = """
SELECT district, argMax(vn_aqi, time) AS aqi, max(time) AS at
FROM vn_aqi_district_hourly
WHERE time >= now() - INTERVAL 6 HOUR
GROUP BY district
"""
AQI_INDICATIVE_SQL: Final = """
SELECT district, metric, avg(mean) AS mean, max(window_end) AS at
FROM indicator_windows FINAL
WHERE metric IN ('pm25', 'pm10') AND window_end >= now64(3) - INTERVAL 1 HOUR
GROUP BY district, metric
"""
RIVER_SQL: Final = """
SELECT district, device_id, argMax(value, event_time) AS level, max(event_time) AS at
FROM readings
WHERE device_kind = 'river_gauge' AND metric = 'level'
  AND event_time >= now64(3) - INTERVAL 1 DAY
GROUP BY district, device_id
"""
SERVICES_SQL: Final = """
SELECT district, 100 * sum(on_time) / sum(resolved) AS rate, max(day) AS at
FROM service_applications_daily
WHERE day >= toDate(now(), 'Asia/Ho_Chi_Minh') - 6 AND district != ''
GROUP BY district
HAVING sum(resolved) > 0
"""
DEVICES_SQL: Final = """
SELECT district, uniqExact(device_id) AS devices
FROM readings
WHERE receive_time >= now64(3) - INTERVAL {minutes:UInt32} MINUTE
GROUP BY district
"""

Rows = Sequence[Sequence[Any]]
Query = Callable[[str, Mapping[str, Any]], Rows]


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _when(value: Any) -> str | None:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return format_time_us(aware)
    return None


def aqi_part(value: float, source: str, at: Any = None) -> dict[str, Any]:
    """An AQI tile part: integer index, its VN_AQI band (key, names, colour)."""
    aqi = min(max(round_half_up(value), 0), AQI_MAX)
    band = band_for(aqi)
    return {
        "value": aqi,
        "band": band.key,
        "label_vi": band.name_vi,
        "label_en": band.name_en,
        "colour": _hex(band.colour),
        "source": source,
        "at": _when(at),
    }


def river_part(
    readings: Iterable[tuple[str, float, Any]],
    registry: Registry,
    flood: Mapping[str, GaugeThresholds],
) -> dict[str, Any] | None:
    """The district's gauge with the highest alarm level (then level): value vs BĐ I–III."""
    best: tuple[int, float, dict[str, Any]] | None = None
    for device_id, level, at in readings:
        device = registry.device(device_id)
        station = device.labels.get("station", "") if device else ""
        gauge = flood.get(station)
        part: dict[str, Any] = {
            "device_id": device_id,
            "station": gauge.name if gauge else (station or device_id),
            "level_m": round(level, 2),
            "at": _when(at),
            "bd1_m": gauge.bd1_m if gauge else None,
            "bd2_m": gauge.bd2_m if gauge else None,
            "bd3_m": gauge.bd3_m if gauge else None,
            "alarm": 0,
            "label_vi": "Chưa có mức báo động",
            "label_en": "no alarm levels known",
        }
        if gauge is not None:
            reached = alarm_level(level, gauge)
            part.update(alarm=int(reached), label_vi=reached.label_vi, label_en=reached.label_en)
        rank = (int(part["alarm"]), level)
        if best is None or rank > best[:2]:
            best = (*rank, part)
    return None if best is None else best[2]


def build_tiles(
    registry: Registry,
    flood: Mapping[str, GaugeThresholds],
    *,
    aqi_official: Rows | None,
    aqi_indicative: Rows | None,
    river: Rows | None,
    services: Rows | None,
    devices: Rows | None,
) -> list[dict[str, Any]]:
    """Tiles sorted by district from the rows of the queries above (``None``: query failed)."""
    expected: dict[str, int] = {}
    for device in registry:
        expected[device.district] = expected.get(device.district, 0) + 1
    tiles: dict[str, dict[str, Any]] = {
        d: {"district": d, "aqi": None, "river": None, "services": None, "devices": None}
        for d in expected
    }

    def tile(district: str) -> dict[str, Any]:
        return tiles.setdefault(
            district,
            {"district": district, "aqi": None, "river": None, "services": None, "devices": None},
        )

    pm: dict[str, dict[str, float]] = {}
    pm_at: dict[str, Any] = {}
    for district, metric, mean, at in aqi_indicative or ():
        value = _finite(mean)
        if value is not None and value >= 0:
            pm.setdefault(str(district), {})[str(metric)] = value
            pm_at[str(district)] = at
    for district, values in pm.items():
        try:
            result = hourly_aqi(values)
        except (AqiInputError, ValueError):
            continue
        tile(district)["aqi"] = aqi_part(result.aqi, "indicative_1h_mean", pm_at[district])
    for district, value, at in aqi_official or ():
        number = _finite(value)
        if number is not None:
            tile(str(district))["aqi"] = aqi_part(number, "vn_aqi", at)
    gauges: dict[str, list[tuple[str, float, Any]]] = {}
    for district, device_id, level, at in river or ():
        number = _finite(level)
        if number is not None:
            gauges.setdefault(str(district), []).append((str(device_id), number, at))
    for district, readings in gauges.items():
        tile(district)["river"] = river_part(readings, registry, flood)
    for district, rate, at in services or ():
        number = _finite(rate)
        if number is not None:
            tile(str(district))["services"] = {"on_time_pct": round(number, 1), "at": _when(at)}
    if devices is not None:
        reporting = {str(d): int(n) for d, n in devices}
        for district in set(expected) | set(reporting):
            tile(district)["devices"] = {
                "reporting": reporting.get(district, 0),
                "expected": expected.get(district, 0),
            }
    return [tiles[d] for d in sorted(tiles)]


def _missing_table(exc: Exception) -> bool:
    text = str(exc)
    return "UNKNOWN_TABLE" in text or "Code: 60." in text


class TileSource:
    """Runs the tile queries with a query function (``client.query(...).result_rows``)."""

    def __init__(
        self,
        query: Query,
        registry: Registry,
        flood: Mapping[str, GaugeThresholds],
        on_error: Callable[[str], None] = lambda _tile: None,
    ) -> None:
        self._query = query
        self._registry = registry
        self._flood = flood
        self._on_error = on_error

    def _rows(self, name: str, sql: str, params: Mapping[str, Any]) -> Rows | None:
        try:
            return self._query(sql, params)
        except ClickHouseError as exc:
            if _missing_table(exc):
                log.debug("tile %s: table not there yet", name)
                return None
            log.warning("tile %s query failed: %s", name, str(exc).splitlines()[0][:300])
            self._on_error(name)
            return None

    def tiles(self) -> list[dict[str, Any]]:
        """Query ClickHouse (blocking; run it in a thread) and build the tiles."""
        return build_tiles(
            self._registry,
            self._flood,
            aqi_official=self._rows("aqi", AQI_OFFICIAL_SQL, {}),
            aqi_indicative=self._rows("aqi_indicative", AQI_INDICATIVE_SQL, {}),
            river=self._rows("river", RIVER_SQL, {}),
            services=self._rows("services", SERVICES_SQL, {}),
            devices=self._rows("devices", DEVICES_SQL, {"minutes": REPORTING_WINDOW_MIN}),
        )
