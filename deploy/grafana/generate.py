# ruff: noqa: S608  # builds Grafana panel SQL text from constants; nothing is executed here
"""Generate iocstream's Grafana dashboards (deploy/grafana/dashboards/*.json).

Run ``python deploy/grafana/generate.py`` after changing a panel; the JSON files are what
Grafana provisions, and tests/unit/test_grafana_dashboards.py fails when they differ from what
this script writes (so the two never drift). Panel SQL uses only the macros of the official
grafana-clickhouse-datasource plugin ($__timeFilter, $__fromTime, $__toTime, $__timeInterval,
$__interval_s) and Grafana template variables (${district:singlequote}); every ClickHouse
query is executed by tests/integration/test_grafana_queries.py against simulated data.

Flood alarm levels (BĐ I-III) come from deploy/flood_levels.yaml and the gauge -> station link
from deploy/devices.yaml, so river panels follow the configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEPLOY = HERE.parent
OUT = HERE / "dashboards"
CH = {"type": "grafana-clickhouse-datasource", "uid": "iocstream-clickhouse"}
PROM = {"type": "prometheus", "uid": "iocstream-prometheus"}
DISTRICTS = "district IN (${district:singlequote})"
# Focus variables: alert rules link to a board with ?var-device= / var-station= / var-agency=
# (deploy/alerts/rules.yaml dashboard_url); "All" keeps every device, station or agency.
DEVICES = "device_id IN (${device:singlequote})"
STATION_OF = "if(station = '', '-', station)"  # gauges without alarm levels are station "-"
STATION_DEVICES = (
    "device_id IN (SELECT device_id FROM devices FINAL WHERE active "
    f"AND {STATION_OF} IN (${{station:singlequote}}))"
)
AGENCIES = "agency IN (${agency:singlequote})"

# VN_AQI (Decision 1459/QĐ-TCMT): index levels and PM breakpoints, band colours.
LEVELS = (0, 50, 100, 150, 200, 300, 400, 500)
PM25 = (0, 25, 50, 80, 150, 250, 350, 500)
PM10 = (0, 50, 150, 250, 350, 420, 500, 600)
BANDS = (
    (None, "rgb(0, 228, 0)"),
    (51, "rgb(255, 255, 0)"),
    (101, "rgb(255, 126, 0)"),
    (151, "rgb(255, 0, 0)"),
    (201, "rgb(143, 63, 151)"),
    (301, "rgb(126, 0, 35)"),
)


def sub_index_sql(column: str, breakpoints: tuple[int, ...]) -> str:
    """A ClickHouse expression: the VN_AQI sub-index of ``column`` (linear interpolation)."""
    parts = []
    for i in range(1, len(breakpoints)):
        lo, hi = breakpoints[i - 1], breakpoints[i]
        ilo, ihi = LEVELS[i - 1], LEVELS[i]
        slope = (ihi - ilo) / (hi - lo)
        parts.append(f"{column} < {hi}, {ilo} + ({column} - {lo}) * {slope:g}")
    return f"multiIf({', '.join(parts)}, 500)"


AQI_SQL = f"round(greatest({sub_index_sql('pm25', PM25)}, {sub_index_sql('pm10', PM10)}))"


def _load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))


def flood_rows() -> list[tuple[str, str, float, float | None, float | None]]:
    """(device id, station name, BĐ I, BĐ II, BĐ III) for every gauge with alarm levels."""
    stations = {s["id"]: s for s in _load("flood_levels.yaml")["stations"]}
    out = []
    for device in _load("devices.yaml")["devices"]:
        station = stations.get((device.get("labels") or {}).get("station", ""))
        if station:
            out.append(
                (
                    device["id"],
                    station["name"],
                    station["bd1_m"],
                    station.get("bd2_m"),
                    station.get("bd3_m"),
                )
            )
    return out


def _array(values: list[Any]) -> str:
    return "[" + ", ".join("nan" if v is None else repr(v) for v in values) + "]"


def bd_sql(column: str, index: int) -> str:
    rows = flood_rows()
    ids = "[" + ", ".join(f"'{r[0]}'" for r in rows) + "]"
    if index == 0:
        names = "[" + ", ".join(f"'{r[1]}'" for r in rows) + "]"
        return f"transform({column}, {ids}, {names}, {column})"
    return f"transform({column}, {ids}, {_array([r[1 + index] for r in rows])}, nan)"


# --- panel builders ---------------------------------------------------------------------------


class Board:
    def __init__(
        self, uid: str, title: str, description: str, tags: list[str], since: str = "now-6h"
    ) -> None:
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.since = since
        self.panels: list[dict[str, Any]] = []
        self.variables: list[dict[str, Any]] = []
        self._x = self._y = 0
        self._row_h = 0

    def _place(self, w: int, h: int) -> dict[str, int]:
        if self._x + w > 24:
            self._x, self._y = 0, self._y + self._row_h
            self._row_h = 0
        pos = {"x": self._x, "y": self._y, "w": w, "h": h}
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def panel(
        self,
        kind: str,
        title: str,
        sql: str,
        *,
        w: int = 12,
        h: int = 8,
        unit: str = "short",
        description: str = "",
        thresholds: Sequence[tuple[float | None, str]] | None = None,
        decimals: int | None = None,
        options: dict[str, Any] | None = None,
        overrides: list[dict[str, Any]] | None = None,
    ) -> None:
        table = kind in ("table", "stat", "gauge", "bargauge", "piechart")
        steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
        defaults: dict[str, Any] = {
            "unit": unit,
            "thresholds": {"mode": "absolute", "steps": steps},
            "color": {"mode": "thresholds" if thresholds else "palette-classic"},
        }
        if decimals is not None:
            defaults["decimals"] = decimals
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": kind,
                "title": title,
                "description": description,
                "gridPos": self._place(w, h),
                "datasource": CH,
                "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
                "options": options or {},
                "targets": [
                    {
                        "refId": "A",
                        "datasource": CH,
                        "editorType": "sql",
                        "queryType": "table" if table else "timeseries",
                        "format": 1 if table else 0,
                        "rawSql": " ".join(sql.split()),
                    }
                ],
            }
        )

    def variable(self, name: str, label: str, query: str) -> None:
        """A multi-value query variable after ``district`` ("All" by default)."""
        self.variables.append(
            {
                "name": name,
                "label": label,
                "type": "query",
                "datasource": CH,
                "query": " ".join(query.split()),
                "definition": " ".join(query.split()),
                "refresh": 2,
                "multi": True,
                "includeAll": True,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            }
        )

    def prom(self, title: str, expr: str, legend: str, *, unit: str = "short", w: int = 12) -> None:
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "timeseries",
                "title": title,
                "gridPos": self._place(w, 8),
                "datasource": PROM,
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {},
                "targets": [
                    {"refId": "A", "datasource": PROM, "expr": expr, "legendFormat": legend}
                ],
            }
        )

    def json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["iocstream", *self.tags],
            "timezone": "Asia/Ho_Chi_Minh",
            "schemaVersion": 39,
            "version": 1,
            "editable": True,
            "refresh": "30s",
            "time": {"from": self.since, "to": "now"},
            "templating": {
                "list": [
                    {
                        "name": "district",
                        "label": "Địa bàn / District",
                        "type": "query",
                        "datasource": CH,
                        "query": "SELECT DISTINCT district FROM readings "
                        "WHERE event_time >= now() - INTERVAL 7 DAY ORDER BY district",
                        "definition": "SELECT DISTINCT district FROM readings",
                        "refresh": 2,
                        "multi": True,
                        "includeAll": True,
                        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    },
                    *self.variables,
                ]
            },
            "links": [
                {"type": "dashboards", "tags": ["iocstream"], "asDropdown": True, "title": "IOC"}
            ],
            "panels": self.panels,
        }


AQI_THRESHOLDS = list(BANDS)


def overview() -> Board:
    b = Board(
        "ioc-overview",
        "Tổng quan đô thị / City overview",
        "The city at a glance: devices reporting, air quality, river levels, traffic, rejects.",
        ["overview"],
    )
    b.panel(
        "stat",
        "Thiết bị gửi dữ liệu / Devices reporting",
        f"SELECT uniqExact(device_id) AS devices FROM readings "
        f"WHERE $__timeFilter(event_time) AND {DISTRICTS}",
        w=6,
        h=5,
    )
    b.panel(
        "stat",
        "Số đo / Readings",
        f"SELECT count() AS readings FROM readings WHERE $__timeFilter(event_time) AND {DISTRICTS}",
        w=6,
        h=5,
    )
    b.panel(
        "stat",
        "VN_AQI cao nhất (ước tính) / Worst VN_AQI (indicative)",
        f"SELECT max(aqi) AS aqi FROM (SELECT district, {AQI_SQL} AS aqi FROM ("
        f"SELECT district, avgIf(mean, metric = 'pm25') AS pm25, avgIf(mean, metric = 'pm10') "
        f"AS pm10 FROM indicator_windows FINAL WHERE metric IN ('pm25', 'pm10') "
        f"AND window_end >= $__toTime - INTERVAL 1 HOUR AND window_end <= $__toTime "
        f"AND {DISTRICTS} GROUP BY district))",
        w=6,
        h=5,
        thresholds=AQI_THRESHOLDS,
        decimals=0,
        description="Hourly VN_AQI from 1-hour PM2.5/PM10 means (NowCast-based values live in "
        "indicator_values once the worker computes them).",
    )
    b.panel(
        "stat",
        "Bản tin lỗi / Dead letters",
        "SELECT count() AS dead_letters FROM dead_letters WHERE $__timeFilter(received_at)",
        w=6,
        h=5,
        thresholds=[(None, "green"), (1, "orange"), (100, "red")],
    )
    b.panel(
        "stat",
        "Cảnh báo đang mở / Open alerts",
        "SELECT countIf(severity = 'critical') AS critical, countIf(severity = 'major') AS major, "
        "countIf(severity NOT IN ('critical', 'major')) AS other FROM alerts_latest FINAL "
        "WHERE state IN ('firing', 'nodata') AND (labels['district'] IN "
        "(${district:singlequote}) OR labels['district'] = '')",
        w=24,
        h=4,
        thresholds=[(None, "green"), (1, "red")],
    )
    b.panel(
        "timeseries",
        "PM2.5 theo địa bàn / PM2.5 by district (µg/m³)",
        f"SELECT $__timeInterval(window_start) AS time, district, round(avg(mean), 1) AS pm25 "
        f"FROM indicator_windows FINAL WHERE metric = 'pm25' AND $__timeFilter(window_start) "
        f"AND {DISTRICTS} GROUP BY time, district ORDER BY time",
        unit="conmgm3",
    )
    b.panel(
        "timeseries",
        "Mực nước cao nhất / Highest river level (m)",
        f"SELECT $__timeInterval(event_time) AS time, district, max(value) AS level_m "
        f"FROM readings WHERE device_kind = 'river_gauge' AND metric = 'level' "
        f"AND $__timeFilter(event_time) AND {DISTRICTS} GROUP BY time, district ORDER BY time",
        unit="lengthm",
    )
    b.panel(
        "table",
        "Địa bàn / Districts now",
        f"SELECT district, uniqExact(device_id) AS devices, count() AS readings, "
        f"max(event_time) AS last_reading FROM readings WHERE $__timeFilter(event_time) "
        f"AND {DISTRICTS} GROUP BY district ORDER BY district",
        w=24,
    )
    return b


def air_quality() -> Board:
    b = Board(
        "ioc-air-quality",
        "Chất lượng không khí / Air quality (VN_AQI)",
        "VN_AQI by station and district, pollutant breakdown and the official colour bands "
        "(Decision 1459/QĐ-TCMT).",
        ["air-quality"],
    )
    hourly = (
        "SELECT toStartOfHour(window_start) AS time, {key}, avgIf(mean, metric = 'pm25') AS pm25, "
        "avgIf(mean, metric = 'pm10') AS pm10 FROM indicator_windows FINAL "
        "WHERE metric IN ('pm25', 'pm10') AND device_kind = 'air_quality' "
        "AND $__timeFilter(window_start) AND " + DISTRICTS + " GROUP BY time, {key}"
    )
    b.panel(
        "timeseries",
        "VN_AQI giờ theo địa bàn (ước tính) / Hourly VN_AQI by district (indicative)",
        f"SELECT time, district, {AQI_SQL} AS vn_aqi FROM ({hourly.replace('{key}', 'district')}) "
        f"ORDER BY time",
        w=24,
        thresholds=AQI_THRESHOLDS,
        decimals=0,
        options={"legend": {"displayMode": "table", "placement": "right"}},
        description="Bands: Tốt 0-50, Trung bình 51-100, Kém 101-150, Xấu 151-200, "
        "Rất xấu 201-300, Nguy hại 301-500.",
    )
    b.panel(
        "timeseries",
        "VN_AQI giờ theo địa bàn (NowCast) / Hourly VN_AQI by district",
        f"SELECT time, district, vn_aqi FROM vn_aqi_district_hourly WHERE $__timeFilter(time) "
        f"AND {DISTRICTS} ORDER BY time",
        w=24,
        thresholds=AQI_THRESHOLDS,
        decimals=0,
        description="The official hourly index (NowCast for PM) computed by the stream worker "
        "(indicator vn_aqi_1h): a district's value is its worst station.",
    )
    b.panel(
        "table",
        "VN_AQI theo trạm / VN_AQI by station (last hour)",
        f"SELECT device_id, ward, round(pm25, 1) AS pm25, round(pm10, 1) AS pm10, "
        f"{AQI_SQL} AS vn_aqi, multiIf(vn_aqi <= 50, 'Tốt', vn_aqi <= 100, 'Trung bình', "
        f"vn_aqi <= 150, 'Kém', vn_aqi <= 200, 'Xấu', vn_aqi <= 300, 'Rất xấu', 'Nguy hại') "
        f"AS band FROM (SELECT device_id, any(ward) AS ward, avgIf(mean, metric = 'pm25') AS pm25, "
        f"avgIf(mean, metric = 'pm10') AS pm10 FROM indicator_windows FINAL "
        f"WHERE metric IN ('pm25', 'pm10') AND device_kind = 'air_quality' "
        f"AND window_end >= $__toTime - INTERVAL 1 HOUR AND window_end <= $__toTime "
        f"AND {DISTRICTS} AND {DEVICES} GROUP BY device_id) ORDER BY vn_aqi DESC",
        thresholds=AQI_THRESHOLDS,
        overrides=[
            {
                "matcher": {"id": "byName", "options": "vn_aqi"},
                "properties": [{"id": "custom.cellOptions", "value": {"type": "color-background"}}],
            }
        ],
    )
    b.panel(
        "timeseries",
        "Thành phần ô nhiễm / Pollutants (µg/m³)",
        f"SELECT $__timeInterval(window_start) AS time, metric, round(avg(mean), 1) AS value "
        f"FROM indicator_windows FINAL WHERE metric IN ('pm25', 'pm10') "
        f"AND $__timeFilter(window_start) AND {DISTRICTS} AND {DEVICES} "
        f"GROUP BY time, metric ORDER BY time",
        unit="conmgm3",
    )
    b.panel(
        "timeseries",
        "Nhiệt độ và độ ẩm / Temperature and humidity",
        f"SELECT $__timeInterval(window_start) AS time, "
        f"round(avgIf(mean, metric = 'temperature'), 1) AS temperature_c, "
        f"round(avgIf(mean, metric = 'humidity'), 1) AS humidity_pct FROM indicator_windows FINAL "
        f"WHERE metric IN ('temperature', 'humidity') AND $__timeFilter(window_start) "
        f"AND {DISTRICTS} AND {DEVICES} GROUP BY time ORDER BY time",
    )
    b.panel(
        "piechart",
        "Giờ theo mức VN_AQI / Station-hours per band",
        f"SELECT multiIf(vn_aqi <= 50, '1 Tốt', vn_aqi <= 100, '2 Trung bình', vn_aqi <= 150, "
        f"'3 Kém', vn_aqi <= 200, '4 Xấu', vn_aqi <= 300, '5 Rất xấu', '6 Nguy hại') AS band, "
        f"count() AS hours FROM (SELECT time, device_id, {AQI_SQL} AS vn_aqi FROM "
        f"({hourly.replace('{key}', 'device_id')}) WHERE {DEVICES}) GROUP BY band ORDER BY band",
        options={"reduceOptions": {"values": True, "calcs": ["lastNotNull"]}},
    )
    b.variable(
        "device",
        "Trạm / Station",
        "SELECT device_id FROM devices FINAL WHERE active AND kind = 'air_quality' "
        "AND district IN (${district:singlequote}) ORDER BY device_id",
    )
    return b


def river() -> Board:
    b = Board(
        "ioc-river",
        "Mực nước và độ mặn / River levels and salinity",
        "Gauge levels against flood alarm levels BĐ I-III (Decision 05/2020/QĐ-TTg) and "
        "salinity against the 4 g/L intrusion front (Decision 18/2021/QĐ-TTg).",
        ["river"],
    )
    b.panel(
        "timeseries",
        "Mực nước theo trạm / Level by gauge (m)",
        f"SELECT $__timeInterval(event_time) AS time, {bd_sql('device_id', 0)} AS station, "
        f"round(max(value), 2) AS level_m FROM readings WHERE device_kind = 'river_gauge' "
        f"AND metric = 'level' AND $__timeFilter(event_time) AND {DISTRICTS} "
        f"AND {STATION_DEVICES} GROUP BY time, station ORDER BY time",
        w=24,
        unit="lengthm",
    )
    b.panel(
        "table",
        "Mực nước so với báo động / Level vs alarm levels",
        f"SELECT station, river, round(level_m, 2) AS level_m, bd1_m, bd2_m, bd3_m, alarm, "
        f"alarm_label, event_time FROM river_levels_vs_alarm WHERE {DISTRICTS} "
        f"AND station_id IN (${{station:singlequote}}) "
        f"ORDER BY alarm DESC, above_bd1_m DESC",
        unit="lengthm",
        thresholds=[(None, "green"), (1, "yellow"), (2, "orange"), (3, "red")],
        overrides=[
            {
                "matcher": {"id": "byName", "options": "alarm"},
                "properties": [{"id": "custom.cellOptions", "value": {"type": "color-background"}}],
            }
        ],
    )
    b.panel(
        "timeseries",
        "Đỉnh mực nước theo giờ / Hourly maximum level (m)",
        f"SELECT time, station, level_max_m, bd1_m FROM river_levels_hourly "
        f"WHERE $__timeFilter(time) AND {DISTRICTS} AND {STATION_DEVICES} ORDER BY time",
        unit="lengthm",
    )
    b.panel(
        "timeseries",
        "Độ mặn / Salinity (g/L)",
        f"SELECT $__timeInterval(event_time) AS time, {bd_sql('device_id', 0)} AS station, "
        f"round(max(value), 2) AS salinity_g_l FROM readings WHERE device_kind = 'river_gauge' "
        f"AND metric = 'salinity' AND $__timeFilter(event_time) AND {DISTRICTS} "
        f"AND {STATION_DEVICES} GROUP BY time, station ORDER BY time",
        thresholds=[(None, "green"), (1, "yellow"), (2, "orange"), (4, "red")],
        options={"thresholdsStyle": {"mode": "line"}},
    )
    b.panel(
        "timeseries",
        "Tốc độ lên / Rise rate (m/h)",
        f"SELECT time, station, round((level_m - lagInFrame(level_m) OVER w) * 3600 "
        f"/ greatest($__interval_s, 1), 3) AS rise_m_per_h FROM (SELECT "
        f"$__timeInterval(event_time) AS time, {bd_sql('device_id', 0)} AS station, "
        f"avg(value) AS level_m FROM readings WHERE device_kind = 'river_gauge' "
        f"AND metric = 'level' AND $__timeFilter(event_time) AND {DISTRICTS} "
        f"AND {STATION_DEVICES} GROUP BY time, station) WINDOW w AS (PARTITION BY station "
        f"ORDER BY time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) ORDER BY time",
        w=24,
    )
    b.variable(
        "station",
        "Trạm thủy văn / Station",
        f"SELECT DISTINCT {STATION_OF} AS station FROM devices FINAL WHERE active "
        f"AND kind = 'river_gauge' AND district IN (${{district:singlequote}}) ORDER BY station",
    )
    return b


def traffic() -> Board:
    b = Board(
        "ioc-traffic",
        "Giao thông / Traffic",
        "Vehicle counts and speeds per road segment (FIWARE TrafficFlowObserved style).",
        ["traffic"],
    )
    b.panel(
        "timeseries",
        "Lưu lượng xe / Vehicles per interval",
        f"SELECT $__timeInterval(event_time) AS time, district, sum(value) AS vehicles "
        f"FROM readings WHERE device_kind = 'traffic' AND metric = 'vehicle_count' "
        f"AND $__timeFilter(event_time) AND {DISTRICTS} GROUP BY time, district ORDER BY time",
    )
    b.panel(
        "timeseries",
        "Tốc độ trung bình / Average speed (km/h)",
        f"SELECT $__timeInterval(event_time) AS time, device_id, round(avg(value), 1) AS speed "
        f"FROM readings WHERE device_kind = 'traffic' AND metric = 'speed' "
        f"AND $__timeFilter(event_time) AND {DISTRICTS} GROUP BY time, device_id ORDER BY time",
        unit="velocitykmh",
    )
    b.panel(
        "table",
        "Đoạn đường chậm nhất / Slowest segments",
        f"SELECT device_id, any(ward) AS ward, round(avgIf(value, metric = 'speed'), 1) AS "
        f"speed_kmh, sumIf(value, metric = 'vehicle_count') AS vehicles FROM readings "
        f"WHERE device_kind = 'traffic' AND $__timeFilter(event_time) AND {DISTRICTS} "
        f"GROUP BY device_id ORDER BY speed_kmh ASC LIMIT 20",
        w=24,
        thresholds=[(None, "red"), (15, "orange"), (30, "green")],
    )
    return b


def devices() -> Board:
    b = Board(
        "ioc-devices",
        "Thiết bị / Devices",
        "Which devices report, when each was last seen, and silent ones.",
        ["devices"],
    )
    b.panel(
        "timeseries",
        "Thiết bị gửi dữ liệu / Devices reporting",
        f"SELECT $__timeInterval(receive_time) AS time, district, uniqExact(device_id) AS devices "
        f"FROM readings WHERE $__timeFilter(receive_time) AND {DISTRICTS} "
        f"GROUP BY time, district ORDER BY time",
        w=24,
    )
    b.panel(
        "table",
        "Lần cuối nhận / Last seen per device",
        f"SELECT device_id, device_kind, district, ward, max(receive_time) AS last_seen, "
        f"dateDiff('second', max(receive_time), $__toTime) AS silent_s, count() AS readings "
        f"FROM readings WHERE $__timeFilter(receive_time) AND {DISTRICTS} AND {DEVICES} "
        f"GROUP BY device_id, device_kind, district, ward ORDER BY silent_s DESC",
        w=24,
        h=10,
        thresholds=[(None, "green"), (900, "orange"), (3600, "red")],
    )
    b.variable(
        "device",
        "Thiết bị / Device",
        "SELECT device_id FROM devices FINAL WHERE active "
        "AND district IN (${district:singlequote}) ORDER BY device_id",
    )
    return b


def platform() -> Board:
    b = Board(
        "ioc-platform",
        "Vận hành nền tảng / Platform health",
        "Throughput, end-to-end delay, dead letters (ClickHouse) and Kafka lag, sink retries "
        "(Prometheus).",
        ["platform"],
    )
    b.panel(
        "timeseries",
        "Số đo mỗi giây / Readings per second",
        "SELECT $__timeInterval(receive_time) AS time, device_kind, "
        "count() / $__interval_s AS per_second FROM readings WHERE $__timeFilter(receive_time) "
        "GROUP BY time, device_kind ORDER BY time",
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Độ trễ nhận / Receive delay (event -> receive)",
        "SELECT $__timeInterval(receive_time) AS time, "
        "quantile(0.5)(dateDiff('millisecond', event_time, receive_time)) / 1000 AS p50_s, "
        "quantile(0.95)(dateDiff('millisecond', event_time, receive_time)) / 1000 AS p95_s "
        "FROM readings WHERE $__timeFilter(receive_time) AND time_source = 'device' "
        "GROUP BY time ORDER BY time",
        unit="s",
    )
    b.panel(
        "timeseries",
        "Bản tin lỗi theo lý do / Dead letters by reason",
        "SELECT $__timeInterval(received_at) AS time, reason, count() AS dead_letters "
        "FROM dead_letters WHERE $__timeFilter(received_at) GROUP BY time, reason ORDER BY time",
    )
    b.panel(
        "table",
        "Bản tin lỗi mới nhất / Latest dead letters",
        "SELECT received_at, reason, source, source_id, substring(detail, 1, 200) AS detail "
        "FROM dead_letters WHERE received_at >= $__fromTime AND received_at <= $__toTime "
        "ORDER BY received_at DESC LIMIT 100",
    )
    b.panel(
        "table",
        "Ghi vào ClickHouse theo phân vùng / Sink progress per partition",
        "SELECT kafka_topic, kafka_partition, max(kafka_offset) AS last_offset, count() AS rows, "
        "max(receive_time) AS last_receive FROM readings WHERE $__timeFilter(receive_time) "
        "GROUP BY kafka_topic, kafka_partition ORDER BY kafka_topic, kafka_partition",
        w=24,
    )
    b.prom(
        "Độ trễ tiêu thụ / Consumer lag (records)",
        "sum by (component, topic) (iocstream_consumer_lag_records)",
        "{{component}} {{topic}}",
    )
    b.prom(
        "Ghi lại ClickHouse / Sink insert retries",
        "sum by (table) (rate(iocstream_sink_insert_retries_total[$__rate_interval]))",
        "{{table}}",
        unit="ops",
    )
    b.prom(
        "Bản tin lỗi / Dead letters per second",
        "sum by (component, reason) (rate(iocstream_dead_letters_total[$__rate_interval]))",
        "{{component}} {{reason}}",
        unit="ops",
    )
    b.prom(
        "Cầu MQTT / Bridge connected",
        "max(iocstream_bridge_mqtt_connected)",
        "connected",
    )
    return b


ALERT_DISTRICTS = "(labels['district'] IN (${district:singlequote}) OR labels['district'] = '')"
OPEN = "state IN ('firing', 'nodata')"


def alert_history() -> Board:
    b = Board(
        "ioc-alerts",
        "Lịch sử cảnh báo / Alert history",
        "Open alerts, every state change with who did it, response times and notifications. "
        "City-wide alerts (no district) show under every district.",
        ["alerts"],
        since="now-24h",
    )
    b.panel(
        "stat",
        "Đang mở / Open alerts",
        f"SELECT count() AS open_alerts FROM alerts_latest FINAL WHERE {OPEN} "
        f"AND {ALERT_DISTRICTS}",
        w=6,
        h=5,
        thresholds=[(None, "green"), (1, "orange"), (5, "red")],
    )
    b.panel(
        "stat",
        "Phát sinh / Alerts fired",
        f"SELECT count() AS fired FROM alert_events FINAL WHERE kind = 'firing' "
        f"AND $__timeFilter(at) AND {ALERT_DISTRICTS}",
        w=6,
        h=5,
    )
    b.panel(
        "stat",
        "Thời gian xác nhận TB / Mean time to acknowledge",
        f"SELECT avg(dateDiff('second', fired_at, acknowledged_at)) AS mtta_s "
        f"FROM alert_events FINAL WHERE kind = 'acknowledged' AND fired_at IS NOT NULL "
        f"AND $__timeFilter(at) AND {ALERT_DISTRICTS}",
        w=6,
        h=5,
        unit="s",
    )
    b.panel(
        "stat",
        "Thời gian xử lý TB / Mean time to resolve",
        f"SELECT avg(dateDiff('second', fired_at, resolved_at)) AS mttr_s "
        f"FROM alert_events FINAL WHERE kind = 'resolved' AND fired_at IS NOT NULL "
        f"AND $__timeFilter(at) AND {ALERT_DISTRICTS}",
        w=6,
        h=5,
        unit="s",
    )
    b.panel(
        "timeseries",
        "Cảnh báo theo mức / Alerts by severity",
        f"SELECT $__timeInterval(at) AS time, to_severity AS severity, count() AS alerts "
        f"FROM alert_events FINAL WHERE kind IN ('firing', 'escalated') "
        f"AND $__timeFilter(at) AND {ALERT_DISTRICTS} GROUP BY time, severity ORDER BY time",
        w=24,
        options={"drawStyle": "bars"},
    )
    b.panel(
        "table",
        "Cảnh báo đang mở / Open alerts now",
        f"SELECT updated_at, severity, rule, labels['district'] AS district, "
        f"annotations['summary_vi'] AS summary, value, acknowledged_by, assignee, silenced_until "
        f"FROM alerts_latest FINAL WHERE {OPEN} AND {ALERT_DISTRICTS} ORDER BY updated_at DESC",
        w=24,
    )
    b.panel(
        "table",
        "Diễn biến / History of changes",
        f"SELECT at, labels['district'] AS district, rule, alert_id, kind, to_state AS state, "
        f"to_severity AS severity, actor, detail, comment FROM alert_events FINAL "
        f"WHERE $__timeFilter(at) AND {ALERT_DISTRICTS} ORDER BY at DESC LIMIT 500",
        w=24,
        h=12,
    )
    b.panel(
        "timeseries",
        "Thông báo / Notifications by outcome",
        "SELECT $__timeInterval(at) AS time, outcome, count() AS attempts "
        "FROM notification_attempts WHERE $__timeFilter(at) GROUP BY time, outcome ORDER BY time",
    )
    b.panel(
        "table",
        "Người nhận / Receivers",
        "SELECT receiver, receiver_type, countIf(outcome = 'delivered') AS delivered, "
        "countIf(outcome = 'failed') AS failed, countIf(outcome = 'gave_up') AS gave_up, "
        "round(quantile(0.95)(duration_ms)) AS p95_ms FROM notification_attempts "
        "WHERE $__timeFilter(at) GROUP BY receiver, receiver_type ORDER BY failed DESC",
    )
    return b


APP = "vn.longxuyen.application"
FEEDBACK = "vn.longxuyen.feedback"
DOCUMENT = "vn.longxuyen.document"


def _ts(field: str) -> str:
    return f"parseDateTime64BestEffortOrNull(JSONExtractString(data, '{field}'), 3)"


def services() -> Board:
    b = Board(
        "ioc-services",
        "Dịch vụ công / City services (766/QĐ-TTg)",
        "Public-service applications per agency (received, processed, early, on time, late, %), "
        "citizen feedback handling and electronic documents, from the city systems' events. "
        "Early: resolved before the due day; on time: on the due day up to the due time; "
        "late: after it (Decision 766/QĐ-TTg style).",
        ["services"],
        since="now-7d",
    )
    b.panel(
        "table",
        "Hồ sơ theo cơ quan / Applications per agency",
        f"SELECT agency, countIf(type = '{APP}.submitted') AS received, "
        f"countIf(type = '{APP}.resolved') AS processed, "
        f"countIf(type = '{APP}.resolved' AND done < toStartOfDay(due, 'Asia/Ho_Chi_Minh')) "
        f"AS early, countIf(type = '{APP}.resolved' AND done <= due "
        f"AND done >= toStartOfDay(due, 'Asia/Ho_Chi_Minh')) AS on_time, "
        f"countIf(type = '{APP}.resolved' AND done > due) AS late, "
        f"round(100 * (early + on_time) / nullIf(processed, 0), 1) AS on_time_pct "
        f"FROM (SELECT type, agency, {_ts('resolved_at')} AS done, {_ts('due_at')} AS due "
        f"FROM events FINAL WHERE type IN ('{APP}.submitted', '{APP}.resolved') "
        f"AND $__timeFilter(time) AND {DISTRICTS} AND {AGENCIES}) "
        f"GROUP BY agency ORDER BY on_time_pct ASC",
        w=24,
        h=10,
        thresholds=[(None, "red"), (80, "orange"), (95, "green")],
        overrides=[
            {
                "matcher": {"id": "byName", "options": "on_time_pct"},
                "properties": [
                    {"id": "unit", "value": "percent"},
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                ],
            }
        ],
    )
    b.panel(
        "timeseries",
        "Tỷ lệ đúng hạn theo ngày / On-time rate per day (%)",
        f"SELECT toDateTime(day, 'Asia/Ho_Chi_Minh') AS time, agency, "
        f"round(100 * on_time_rate, 1) AS on_time_pct FROM service_applications_daily "
        f"WHERE day >= toDate($__fromTime, 'Asia/Ho_Chi_Minh') "
        f"AND day <= toDate($__toTime, 'Asia/Ho_Chi_Minh') AND resolved > 0 AND {DISTRICTS} "
        f"AND {AGENCIES} ORDER BY time",
        unit="percent",
    )
    b.panel(
        "timeseries",
        "Hồ sơ tiếp nhận và giải quyết / Applications received and processed",
        f"SELECT $__timeInterval(time) AS time, countIf(type = '{APP}.submitted') AS received, "
        f"countIf(type = '{APP}.resolved') AS processed FROM events FINAL "
        f"WHERE type IN ('{APP}.submitted', '{APP}.resolved') AND $__timeFilter(time) "
        f"AND {DISTRICTS} AND {AGENCIES} GROUP BY time ORDER BY time",
    )
    b.panel(
        "table",
        "Phản ánh hiện trường / Citizen feedback",
        f"SELECT agency, countIf(type = '{FEEDBACK}.created') AS created, "
        f"countIf(type = '{FEEDBACK}.responded') AS responded, "
        f"round(100 * countIf(type = '{FEEDBACK}.responded' AND done <= due) "
        f"/ nullIf(responded, 0), 1) AS on_time_pct, "
        f"round(quantileIf(0.5)(dateDiff('minute', created_at, done), "
        f"type = '{FEEDBACK}.responded') / 60, 1) AS median_response_h, "
        f"round(avgIf(JSONExtractFloat(data, 'satisfaction'), type = '{FEEDBACK}.closed' "
        f"AND JSONHas(data, 'satisfaction')), 2) AS satisfaction "
        f"FROM (SELECT type, agency, data, {_ts('created_at')} AS created_at, "
        f"{_ts('responded_at')} AS done, {_ts('due_at')} AS due FROM events FINAL "
        f"WHERE type LIKE '{FEEDBACK}.%' AND $__timeFilter(time) AND {DISTRICTS} AND {AGENCIES}) "
        f"GROUP BY agency ORDER BY created DESC",
        w=24,
    )
    b.panel(
        "table",
        "Văn bản điện tử / Electronic documents",
        f"SELECT agency, countIf(type = '{DOCUMENT}.received') AS received, "
        f"countIf(type = '{DOCUMENT}.processed') AS processed, "
        f"countIf(type = '{DOCUMENT}.processed' AND due IS NOT NULL AND done > due) AS overdue "
        f"FROM (SELECT type, agency, {_ts('processed_at')} AS done, {_ts('due_at')} AS due "
        f"FROM events FINAL WHERE type LIKE '{DOCUMENT}.%' AND $__timeFilter(time) "
        f"AND {DISTRICTS} AND {AGENCIES}) GROUP BY agency ORDER BY received DESC",
    )
    b.panel(
        "table",
        "Chỉ số do hệ thống tính / KPIs derived by the stream worker",
        f"SELECT agency, indicator, argMax(value, time) AS value, argMax(level, time) AS level, "
        f"max(time) AS window FROM service_kpis_by_agency WHERE $__timeFilter(time) "
        f"AND {DISTRICTS} AND {AGENCIES} GROUP BY agency, indicator ORDER BY agency, indicator",
    )
    b.variable(
        "agency",
        "Cơ quan / Agency",
        "SELECT DISTINCT agency FROM events WHERE agency != '' "
        "AND time >= now() - INTERVAL 90 DAY ORDER BY agency",
    )
    return b


BOARDS = (overview, air_quality, river, traffic, devices, platform, alert_history, services)


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    out = {}
    for build in BOARDS:
        board = build().json()
        out[f"{board['uid']}.json"] = json.dumps(board, indent=2, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the Grafana dashboards of deploy/grafana/dashboards/ from the "
        "panel definitions here (the device registry and flood levels files feed some panels)."
    )
    parser.add_argument(
        "--check", action="store_true", help="only report whether the files are up to date"
    )
    args = parser.parse_args(argv)
    stale = [name for name, text in render().items() if _current(OUT / name) != text]
    if args.check:
        for name in stale:
            print(f"out of date: {OUT / name}")
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(BOARDS)} dashboards to {OUT} ({len(stale)} changed)")
    return 0


def _current(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
