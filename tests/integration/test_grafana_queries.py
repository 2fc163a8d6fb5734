"""Every ClickHouse panel query of deploy/grafana, expanded as Grafana and the plugin expand
it, runs on the real ClickHouse engine over simulated city data and returns rows of the shape
its panel needs.

The test migrates a fresh uuid-named database (the real migrations) and fills it with simulated
data: three hours of readings for every registered device (air quality, river gauges crossing
their alarm levels, traffic) and their 1-minute windows (which feed the roll-ups), the device
and flood-level dimension tables, hourly VN_AQI and service KPIs in ``indicator_values``, a week
of city-system events from the event simulator, alert events, notification attempts and dead
letters. Then, over each dashboard's default time range, it resolves every template variable
(``district``, then the focus variables ``device``/``station``/``agency`` the alert rules' links
set) with its own query, "All" selected, and runs every panel. Shapes: a time series starts
with a ``time`` column of a DateTime type followed by at least one numeric column; a stat has
one row of numbers; tables and pie charts have at least one row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.client import connect
from connectors.clickhouse.migrate import migrate
from connectors.registry import Registry
from connectors.settings import ClickHouseSettings
from connectors.simulator.events import generate_events
from schemas.readings import parse_time
from streams.flood import load_flood_levels
from streams.web.tiles import TileSource
from tests.unit.test_grafana_dashboards import dashboards, expand, panels

pytestmark = pytest.mark.integration

STEP = timedelta(minutes=5)
HOURS = 3
NUMERIC = ("Int", "UInt", "Float", "Decimal")


def _value(kind: str, metric: str, i: int, phase: float) -> float:
    wave = math.sin(i / 6 + phase)
    return {
        ("air_quality", "pm25"): 60 + 50 * wave,
        ("air_quality", "pm10"): 95 + 70 * wave,
        ("air_quality", "temperature"): 29 + 3 * wave,
        ("air_quality", "humidity"): 75 + 15 * wave,
        ("river_gauge", "level"): 2.8 + 1.6 * wave,
        ("river_gauge", "salinity"): 2.5 + 2.0 * wave,
        ("river_gauge", "water_temperature"): 28 + wave,
        ("traffic", "vehicle_count"): 120 + 100 * wave,
        ("traffic", "speed"): 30 + 20 * wave,
    }.get((kind, metric), 1.0 + wave)


def _simulate(client: Client, end: datetime) -> int:
    registry = Registry.load_default()
    readings: list[list[Any]] = []
    windows: list[list[Any]] = []
    steps = int(timedelta(hours=HOURS) / STEP)
    offset = 0
    for n, device in enumerate(registry):
        for metric, spec in device.metrics.items():
            for i in range(steps):
                at = end - timedelta(hours=HOURS) + i * STEP
                value = round(_value(device.kind, metric, i, n / 3), 3)
                offset += 1
                readings.append(
                    [device.id, device.kind, device.district, device.ward, metric, value,
                     spec.unit, at, at + timedelta(seconds=1 + n % 3), "device",
                     f"ioc/{device.district}/{device.kind}/{device.id}/telemetry",
                     "ioc.readings", n % 4, offset]
                )  # fmt: skip
                windows.append(
                    ["reading_stats_1m", device.id, device.kind, device.district, device.ward,
                     metric, spec.unit, at, at + timedelta(minutes=1), 1, value, value, value,
                     value, 0.0, 0, "ioc.indicators", n % 4, offset]
                )  # fmt: skip
    client.insert(
        "readings",
        readings,
        column_names=["device_id", "device_kind", "district", "ward", "metric", "value", "unit",
                      "event_time", "receive_time", "time_source", "source", "kafka_topic",
                      "kafka_partition", "kafka_offset"],
    )  # fmt: skip
    client.insert(
        "indicator_windows",
        windows,
        column_names=["indicator", "device_id", "device_kind", "district", "ward", "metric",
                      "unit", "window_start", "window_end", "count", "mean", "min", "max", "last",
                      "stddev", "revision", "kafka_topic", "kafka_partition", "kafka_offset"],
    )  # fmt: skip
    dead = [
        [end - timedelta(minutes=m), reason, f"simulated {reason}", "mqtt", f"dev-{m}", "{}",
         "ioc.deadletter", 0, m]
        for m, reason in enumerate(["malformed_json", "unknown_device", "out_of_range"] * 4)
    ]  # fmt: skip
    client.insert(
        "dead_letters",
        dead,
        column_names=["received_at", "reason", "detail", "source", "source_id", "payload",
                      "kafka_topic", "kafka_partition", "kafka_offset"],
    )  # fmt: skip
    _simulate_city(client, registry, end)
    return len(readings)


def _insert(client: Client, table: str, rows: list[dict[str, Any]]) -> None:
    names = list(rows[0])
    client.insert(table, [[r[n] for n in names] for r in rows], column_names=names)


def _simulate_city(client: Client, registry: Registry, end: datetime) -> None:
    """Dimension tables, derived indicators, city-system events, alerts and notifications."""
    loaded = end - timedelta(days=1)
    _insert(client, "devices", [
        {"device_id": d.id, "kind": d.kind, "name": d.name, "district": d.district,
         "ward": d.ward, "lat": d.lat, "lon": d.lon, "expected_interval_s": d.expected_interval_s,
         "metrics": list(d.metrics), "labels": dict(d.labels),
         "station": d.labels.get("station", ""), "active": True, "loaded_at": loaded}
        for d in registry
    ])  # fmt: skip
    _insert(client, "flood_levels", [
        {"station_id": g.station_id, "name": g.name, "river": g.river, "bd1_m": g.bd1_m,
         "bd2_m": g.bd2_m, "bd3_m": g.bd3_m, "active": True, "loaded_at": loaded}
        for g in load_flood_levels().values()
    ])  # fmt: skip
    values: list[dict[str, Any]] = []
    aq = [d for d in registry if d.kind == "air_quality"]
    for hour in range(HOURS * 2):
        start = (end - timedelta(hours=hour + 1)).replace(minute=0, second=0)
        for n, d in enumerate(aq):
            aqi = round(80 + 70 * math.sin(hour / 3 + n))
            for kind, subject in (("device", d.id), ("district", d.district)):
                values.append(
                    {"indicator": "vn_aqi_1h", "subject_kind": kind, "subject_id": subject,
                     "district": d.district, "window_start": start,
                     "window_end": start + timedelta(hours=1), "value": float(aqi),
                     "level": "moderate", "components": {"pm25": float(aqi)},
                     "labels": {"dominant": "pm25"}, "revision": 0, "kafka_topic": "t",
                     "kafka_partition": 0, "kafka_offset": len(values)}
                )  # fmt: skip
        values.append(
            {"indicator": "application_on_time_rate", "subject_kind": "agency",
             "subject_id": "ubnd-my-quy", "district": "long-xuyen", "window_start": start,
             "window_end": start + timedelta(hours=1), "value": 92.5, "level": "",
             "components": {"processed": 40.0, "on_time": 37.0}, "labels": {}, "revision": 0,
             "kafka_topic": "t", "kafka_partition": 0, "kafka_offset": len(values)}
        )  # fmt: skip
    _insert(client, "indicator_values", values)
    events = list(generate_events(11, end - timedelta(days=7), end))
    _insert(client, "events", [
        {"type": e["type"], "agency": e["data"].get("agency", ""), "time": parse_time(e["time"]),
         "source": e["source"], "id": e["id"], "subject": e.get("subject", ""),
         "district": e["data"].get("district", ""), "ward": e["data"].get("ward", ""),
         "received_at": parse_time(e["time"]), "dataschema": "", "origin": "test",
         "data": orjson.dumps(e["data"]).decode(), "kafka_topic": "ioc.events",
         "kafka_partition": 0, "kafka_offset": i}
        for i, e in enumerate(events)
    ])  # fmt: skip
    alert_rows = []
    for i, (kind, state, severity) in enumerate(
        [("firing", "firing", "major"), ("acknowledged", "firing", "major"),
         ("firing", "firing", "critical"), ("resolved", "resolved", "minor"),
         ("firing", "firing", "warning")]
    ):  # fmt: skip
        at = end - timedelta(minutes=50 - 10 * i)
        fired = end - timedelta(minutes=60)
        alert_rows.append(
            {"fingerprint": f"fp{i % 3}", "revision": i + 1, "rule": "vn_aqi_station",
             "alert_id": f"fp{i % 3}:1", "kind": kind, "at": at,
             "actor": "An" if kind == "acknowledged" else "system", "notify": kind == "firing",
             "from_state": "pending", "to_state": state, "from_severity": "",
             "to_severity": severity, "detail": kind, "comment": "", "state": state,
             "severity": severity, "value": 160.0,
             "labels": {"district": "long-xuyen" if i % 2 else ""},
             "annotations": {"summary_vi": f"Cảnh báo {i}", "summary_en": f"Alert {i}"},
             "episode": 1, "fired_at": fired,
             "resolved_at": at if kind == "resolved" else None,
             "acknowledged_by": "An" if kind == "acknowledged" else "",
             "acknowledged_at": at if kind == "acknowledged" else None, "assignee": "",
             "silenced_until": None, "state_json": "{}", "kafka_topic": "ioc.alerts",
             "kafka_partition": 0, "kafka_offset": i}
        )  # fmt: skip
    _insert(client, "alert_events", alert_rows)
    _insert(client, "notification_attempts", [
        {"at": end - timedelta(minutes=m), "idempotency_key": f"k{m}", "receiver": "oncall",
         "receiver_type": "webhook", "route": "default", "kind": "firing", "status": "firing",
         "attempt": 1, "outcome": ["delivered", "failed", "gave_up"][m % 3],
         "http_status": 200, "error": "", "duration_ms": 12.5 + m, "alert_ids": ["fp0:1"],
         "fingerprints": ["fp0"], "group_key": {"rule": "vn_aqi_station"},
         "kafka_topic": "ioc.notifications", "kafka_partition": 0, "kafka_offset": m}
        for m in range(6)
    ])  # fmt: skip


@pytest.fixture(scope="module")
def database(stack: dict[str, str]) -> Iterator[tuple[Client, datetime]]:
    del stack
    import uuid

    name = f"grafana_{uuid.uuid4().hex[:10]}"
    settings = ClickHouseSettings()
    admin = connect(settings, database=None)
    migrate(admin, name)
    client = connect(settings, database=name)
    end = datetime.now(UTC).replace(microsecond=0)
    assert _simulate(client, end) > 0
    try:
        yield client, end
    finally:
        client.close()
        admin.command(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def _since(text: str) -> timedelta:
    """A dashboard's default range start (``now-6h``, ``now-7d``) as a duration."""
    amount, unit = int(text.removeprefix("now-")[:-1]), text[-1]
    return timedelta(**{{"h": "hours", "d": "days", "m": "minutes"}[unit]: amount})


def _targets() -> list[tuple[str, str, str, str, dict[str, Any]]]:
    out = []
    for file, board in dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    out.append((file, panel["title"], panel["type"], target["rawSql"], board))
    return out


def _variables(
    client: Client, board: dict[str, Any], start: datetime, end: datetime
) -> dict[str, list[str]]:
    """Every template variable of ``board`` resolved by its own query, "All" selected."""
    resolved: dict[str, list[str]] = {}
    for variable in board["templating"]["list"]:
        sql = expand(variable["query"], start, end, 60, resolved)
        values = [str(r[0]) for r in client.query(sql).result_rows]
        assert values, f"{board['uid']}: variable {variable['name']} found nothing:\n{sql}"
        resolved[variable["name"]] = values
    return resolved


@pytest.mark.parametrize(
    ("file", "title", "kind", "sql", "board"), _targets(), ids=lambda v: str(v)[:40]
)
def test_panel_query_returns_rows_of_its_shape(
    database: tuple[Client, datetime],
    file: str,
    title: str,
    kind: str,
    sql: str,
    board: dict[str, Any],
) -> None:
    client, end = database
    start, interval_s = end - _since(board["time"]["from"]), 60
    expanded = expand(sql, start, end, interval_s, _variables(client, board, start, end))
    result = client.query(expanded)
    names = list(result.column_names)
    types = [t.name for t in result.column_types]
    rows = result.result_rows
    where = f"{file} / {title}: {names} {types}\n{expanded}"
    assert rows, f"no rows: {where}"
    numeric = [i for i, t in enumerate(types) if t.removeprefix("Nullable(").startswith(NUMERIC)]
    if kind == "timeseries":
        assert names[0] == "time", where
        assert types[0].startswith("DateTime"), where
        assert any(i > 0 for i in numeric), where
        times = [r[0] for r in rows]
        assert times == sorted(times), f"time series must be ordered by time: {where}"
    elif kind in ("stat", "gauge"):
        assert len(rows) == 1, where
        assert numeric, where
        assert all(rows[0][i] is not None for i in numeric), where
    else:
        assert kind in ("table", "piechart", "bargauge"), where


def test_river_table_reports_alarm_levels(database: tuple[Client, datetime]) -> None:
    client, end = database
    board = dashboards()["ioc-river.json"]
    panel = next(p for p in panels(board) if p["title"].startswith("Mực nước so với"))
    start = end - timedelta(hours=6)
    sql = expand(panel["targets"][0]["rawSql"], start, end, 60,
                 _variables(client, board, start, end))  # fmt: skip
    result = client.query(sql)
    rows = {r[0]: dict(zip(result.column_names, r, strict=True)) for r in result.result_rows}
    tan_chau = rows["Tân Châu"]
    assert (tan_chau["bd1_m"], tan_chau["bd2_m"], tan_chau["bd3_m"]) == (3.5, 4.0, 4.5)
    level = tan_chau["level_m"]
    expected = 3 if level >= 4.5 else 2 if level >= 4.0 else 1 if level >= 3.5 else 0
    assert tan_chau["alarm"] == expected
    assert tan_chau["alarm_label"] == ["Dưới BĐ I", "BĐ I", "BĐ II", "BĐ III"][expected]
    assert {r["alarm"] for r in rows.values()} - {0}, "the simulation crosses some alarm level"


def _panel_rows(
    client: Client, end: datetime, file: str, prefix: str, **focus: list[str]
) -> list[dict[str, Any]]:
    """The rows of a panel, every variable "All" except those in ``focus``."""
    board = dashboards()[file]
    panel = next(p for p in panels(board) if p["title"].startswith(prefix))
    start = end - _since(board["time"]["from"])
    variables = {**_variables(client, board, start, end), **focus}
    sql = expand(panel["targets"][0]["rawSql"], start, end, 60, variables)
    result = client.query(sql)
    return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]


def test_alert_links_focus_the_board_on_their_subject(database: tuple[Client, datetime]) -> None:
    """``var-device``/``var-station``/``var-agency`` of an alert's dashboard link narrow the
    per-subject panels to that subject, and "All" shows every one."""
    client, end = database
    every = _panel_rows(client, end, "ioc-air-quality.json", "VN_AQI theo trạm")
    assert len({r["device_id"] for r in every}) > 1
    one = every[0]["device_id"]
    focused = _panel_rows(client, end, "ioc-air-quality.json", "VN_AQI theo trạm", device=[one])
    assert [r["device_id"] for r in focused] == [one]
    stations = _panel_rows(client, end, "ioc-river.json", "Mực nước so với")
    assert len(stations) > 1
    tan_chau = _panel_rows(client, end, "ioc-river.json", "Mực nước so với", station=["tan-chau"])
    assert [r["station"] for r in tan_chau] == ["Tân Châu"]
    levels = _panel_rows(client, end, "ioc-river.json", "Mực nước theo trạm", station=["tan-chau"])
    assert {r["station"] for r in levels} == {"Tân Châu"}
    agencies = _panel_rows(client, end, "ioc-services.json", "Hồ sơ theo cơ quan")
    assert len(agencies) > 1
    first = agencies[0]["agency"]
    only = _panel_rows(client, end, "ioc-services.json", "Hồ sơ theo cơ quan", agency=[first])
    assert [a["agency"] for a in only] == [first]
    seen = _panel_rows(client, end, "ioc-devices.json", "Lần cuối nhận", device=[one])
    assert [r["device_id"] for r in seen] == [one]


def test_service_and_alert_panels_compute_what_they_say(database: tuple[Client, datetime]) -> None:
    client, end = database
    agencies = _panel_rows(client, end, "ioc-services.json", "Hồ sơ theo cơ quan")
    assert sum(a["processed"] for a in agencies) > 0
    for a in agencies:
        assert a["early"] + a["on_time"] + a["late"] <= a["processed"]
        if a["processed"]:
            assert 0 <= a["on_time_pct"] <= 100
    open_now = _panel_rows(client, end, "ioc-alerts.json", "Đang mở")
    assert open_now == [{"open_alerts": 2}]  # fp1 and fp2 fire; fp0 was resolved last
    mtta = _panel_rows(client, end, "ioc-alerts.json", "Thời gian xác nhận")
    assert mtta[0]["mtta_s"] == 20 * 60  # acknowledged 20 minutes after it fired


def test_web_tiles_read_the_same_schema(database: tuple[Client, datetime]) -> None:
    """The web page's district tiles run their queries on the real schema without errors."""
    client, _ = database
    errors: list[str] = []
    source = TileSource(
        lambda sql, params: client.query(sql, parameters=dict(params)).result_rows,
        Registry.load_default(),
        load_flood_levels(),
        on_error=errors.append,
    )
    tiles = {t["district"]: t for t in source.tiles()}
    assert errors == []
    lx = tiles["long-xuyen"]
    assert lx["aqi"]["source"] == "vn_aqi"  # the official index from vn_aqi_district_hourly
    assert lx["services"] is not None
    assert 0 <= lx["services"]["on_time_pct"] <= 100
    assert lx["devices"]["reporting"] == lx["devices"]["expected"] > 0
    rivers = [t["river"] for t in tiles.values() if t["river"]]
    assert rivers
    assert all(r["bd1_m"] is not None for r in rivers if r["station"] != r["device_id"])
