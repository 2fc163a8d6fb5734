"""Migrations on the real engine: idempotent and recorded, retention from settings, dimension
loads that can be repeated, and every Grafana view answering over real rows."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.client import connect
from connectors.clickhouse.dimensions import FloodStation, load_devices, load_flood_levels
from connectors.clickhouse.migrate import MigrationError, default_dir, load_migrations, migrate
from connectors.clickhouse.retention import RetentionSettings
from connectors.registry import Registry
from connectors.settings import ClickHouseSettings
from streams.cli.db import load_dimensions
from streams.cli.db import run as db_run

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _client(database: str | None) -> Client:
    settings = ClickHouseSettings()
    return connect(settings, database=database)


def _schema(client: Client, database: str) -> list[tuple[Any, ...]]:
    return client.query(
        "SELECT name, engine, create_table_query FROM system.tables "
        "WHERE database = {d:String} ORDER BY name",
        parameters={"d": database},
    ).result_rows


def test_migrating_twice_changes_nothing(unique: str) -> None:
    database = f"mig_{unique}"
    admin = _client(None)
    first = migrate(admin, database)
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    before = _schema(admin, database)
    assert migrate(_client(None), database) == []
    assert _schema(admin, database) == before
    recorded = admin.query(f"SELECT count() FROM {database}.schema_migrations").result_rows
    assert recorded == [(len(first),)]
    admin.close()


def test_an_edited_migration_is_refused(unique: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(default_dir(), directory)
    database = f"mig_{unique}"
    migrate(_client(None), database, directory)
    path = directory / "0001_readings.sql"
    path.write_text(path.read_text(encoding="utf-8") + "\n-- edited\n", encoding="utf-8")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(_client(None), database, directory)


def test_retention_comes_from_settings_and_db_ttl_changes_it(
    unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"mig_{unique}"
    admin = _client(None)
    migrate(admin, database, retention=RetentionSettings(readings_days=5))
    ddl = {n: q for n, _e, q in _schema(admin, database)}
    assert "toIntervalDay(5)" in ddl["readings"] or "INTERVAL 5 DAY" in ddl["readings"]
    monkeypatch.setenv("IOC_CLICKHOUSE_DATABASE", database)
    monkeypatch.setenv("IOC_RETENTION_READINGS_DAYS", "7")
    assert db_run(["ttl"]) == 0
    ddl = {n: q for n, _e, q in _schema(admin, database)}
    assert "toIntervalDay(7)" in ddl["readings"] or "INTERVAL 7 DAY" in ddl["readings"]
    assert "toIntervalDay(30)" in ddl["dead_letters"] or "INTERVAL 30 DAY" in ddl["dead_letters"]
    admin.close()


def test_device_load_is_repeatable_and_retires_removed_devices(unique: str) -> None:
    database = f"mig_{unique}"
    migrate(_client(None), database)
    client = _client(database)
    registry = Registry.load_default()
    for _ in range(2):
        assert load_dimensions(client) == (len(registry), 11)
        active = client.query("SELECT count() FROM devices FINAL WHERE active").result_rows
        assert active == [(len(registry),)]
    fewer = Registry(dict(list(registry.devices.items())[:5]), registry.kinds)
    load_devices(client, fewer, datetime.now(UTC) + timedelta(seconds=1))
    rows = client.query("SELECT active, count() FROM devices FINAL GROUP BY active ORDER BY active")
    assert rows.result_rows == [(False, len(registry) - 5), (True, 5)]
    client.close()


def _fill(client: Client) -> None:
    """Rows for every view: a gauge above BĐ II, VN_AQI, agency KPIs and applications."""
    load_devices(client, Registry.load_default())
    load_flood_levels(client, [FloodStation("long-xuyen", "Long Xuyên", "Hậu", 1.9, 2.2, 2.5)])
    gauge = client.query(
        "SELECT device_id, district FROM devices FINAL WHERE station = 'long-xuyen'"
    ).result_rows[0]
    kafka = ["t", 0, 0]
    readings = [
        [gauge[0], "river_gauge", gauge[1], "", "level", level, "m", T0 + timedelta(minutes=i),
         T0 + timedelta(minutes=i), "device", "s", *kafka]
        for i, level in enumerate([2.0, 2.4, 2.3])
    ]  # fmt: skip
    client.insert(
        "readings",
        readings,
        column_names=["device_id", "device_kind", "district", "ward", "metric", "value", "unit",
                      "event_time", "receive_time", "time_source", "source", "kafka_topic",
                      "kafka_partition", "kafka_offset"],
    )  # fmt: skip
    windows = [
        ["reading_stats_1m", gauge[0], "river_gauge", gauge[1], "", "level", "m",
         T0 + timedelta(minutes=i), T0 + timedelta(minutes=i + 1), 2, mean, mean - 0.1,
         mean + 0.1, mean, 0.1, 0, *kafka]
        for i, mean in enumerate([2.0, 2.4, 2.3])
    ]  # fmt: skip
    client.insert(
        "indicator_windows",
        windows,
        column_names=["indicator", "device_id", "device_kind", "district", "ward", "metric",
                      "unit", "window_start", "window_end", "count", "mean", "min", "max", "last",
                      "stddev", "revision", "kafka_topic", "kafka_partition", "kafka_offset"],
    )  # fmt: skip
    values = [
        ["vn_aqi_1h", "device", "aq-1", "long-xuyen", T0, T0 + timedelta(hours=1), 87.0,
         "moderate", {"pm25": 87.0}, {"dominant": "pm25"}, 0, *kafka],
        ["vn_aqi_1h", "device", "aq-2", "long-xuyen", T0, T0 + timedelta(hours=1), 120.0,
         "poor", {"pm10": 120.0}, {"dominant": "pm10"}, 0, *kafka],
        ["application_on_time_rate", "agency", "ubnd-my-binh", "long-xuyen", T0,
         T0 + timedelta(days=1), 0.5, "", {"resolved": 2.0, "on_time": 1.0}, {}, 0, *kafka],
    ]  # fmt: skip
    client.insert(
        "indicator_values",
        values,
        column_names=["indicator", "subject_kind", "subject_id", "district", "window_start",
                      "window_end", "value", "level", "components", "labels", "revision",
                      "kafka_topic", "kafka_partition", "kafka_offset"],
    )  # fmt: skip
    events = [
        ["vn.longxuyen.application.resolved", "ubnd-my-binh", T0, "/s", f"e{i}", f"HS-{i}",
         "long-xuyen", "", T0, "", "", f'{{"due_at": "2026-11-28T10:00:00.000Z", '
         f'"resolved_at": "{resolved}"}}', *kafka]
        for i, resolved in enumerate(["2026-11-28T09:30:00.000Z", "2026-11-28T11:00:00.000Z"])
    ]  # fmt: skip
    client.insert(
        "events",
        events,
        column_names=["type", "agency", "time", "source", "id", "subject", "district", "ward",
                      "received_at", "dataschema", "origin", "data", "kafka_topic",
                      "kafka_partition", "kafka_offset"],
    )  # fmt: skip


def _utc(value: datetime) -> datetime:
    """The client returns naive UTC for some DateTime columns: make every time aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_grafana_views_answer_over_real_rows(unique: str) -> None:
    database = f"views_{unique}"
    migrate(_client(None), database)
    client = _client(database)
    _fill(client)
    river = client.query(
        "SELECT station, level_m, alarm, alarm_label, bd2_m FROM river_levels_vs_alarm"
    ).result_rows
    assert river == [("Long Xuyên", 2.3, 2, "BĐ II", 2.2)]
    hourly = client.query(
        "SELECT time, level_max_m, bd1_m FROM river_levels_hourly ORDER BY time"
    ).result_rows
    assert [(_utc(t), m, b) for t, m, b in hourly] == [(T0, 2.5, 1.9)]
    aqi = client.query("SELECT time, district, vn_aqi, level, dominant, subjects "
                       "FROM vn_aqi_district_hourly").result_rows  # fmt: skip
    assert [(_utc(a[0]), *a[1:]) for a in aqi] == [(T0, "long-xuyen", 120.0, "poor", "pm10", 2)]
    kpis = client.query("SELECT agency, indicator, value, components['on_time'] "
                        "FROM service_kpis_by_agency").result_rows  # fmt: skip
    assert kpis == [("ubnd-my-binh", "application_on_time_rate", 0.5, 1.0)]
    daily = client.query(
        "SELECT agency, resolved, on_time, late, on_time_rate FROM service_applications_daily"
    ).result_rows
    assert daily == [("ubnd-my-binh", 2, 1, 1, 0.5)]
    rollup = client.query(
        "SELECT windows, count, round(mean, 6), min, max, last FROM indicator_windows_1h_v"
    ).result_rows
    assert rollup == [(3, 6, 2.233333, 1.9, 2.5, 2.3)]
    daily_rollup = client.query("SELECT windows, count FROM indicator_windows_1d_v").result_rows
    assert daily_rollup == [(3, 6)]
    client.close()


def test_cli_migrate_is_idempotent_and_loads_dimensions(
    unique: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IOC_CLICKHOUSE_DATABASE", f"cli_{unique}")
    assert db_run(["migrate"]) == 0
    assert db_run(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "schema is up to date; nothing to apply" in out
    assert out.count("loaded ") == 2
    assert os.environ["IOC_CLICKHOUSE_DATABASE"] == f"cli_{unique}"
