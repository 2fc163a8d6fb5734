"""Indicator tiles: VN_AQI bands and colours, river level vs BĐ I–III, missing tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from connectors.registry import Registry
from streams.flood import load_flood_levels
from streams.web.tiles import AQI_OFFICIAL_SQL, TileSource, aqi_part, build_tiles

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load_default()


@pytest.mark.parametrize(
    ("value", "band", "colour", "label_vi"),
    [
        (0, "good", "#00e400", "Tốt"),
        (50.4, "good", "#00e400", "Tốt"),
        (51, "moderate", "#ffff00", "Trung bình"),
        (150, "poor", "#ff7e00", "Kém"),
        (151, "bad", "#ff0000", "Xấu"),
        (300, "very_bad", "#8f3f97", "Rất xấu"),
        (301, "hazardous", "#7e0023", "Nguy hại"),
        (999, "hazardous", "#7e0023", "Nguy hại"),  # clamped to 500
    ],
)
def test_aqi_bands_use_the_official_colours(
    value: float, band: str, colour: str, label_vi: str
) -> None:
    part = aqi_part(value, "vn_aqi", AT)
    assert (part["band"], part["colour"], part["label_vi"]) == (band, colour, label_vi)
    assert part["at"] == "2026-11-28T09:00:00.000000Z"


def _gauge(registry: Registry, station: str) -> tuple[str, str]:
    for device in registry:
        if device.labels.get("station") == station:
            return device.district, device.id
    raise AssertionError(f"no gauge for {station}")


def test_river_level_against_alarm_levels(registry: Registry) -> None:
    flood = load_flood_levels()
    district, device = _gauge(registry, "tan-chau")
    tiles = build_tiles(
        registry,
        flood,
        aqi_official=None,
        aqi_indicative=None,
        river=[(district, device, 4.1, AT)],
        services=None,
        devices=None,
    )
    river = next(t for t in tiles if t["district"] == district)["river"]
    assert river["level_m"] == 4.1
    assert (river["bd1_m"], river["bd2_m"], river["bd3_m"]) == (3.5, 4.0, 4.5)
    assert (river["alarm"], river["label_vi"]) == (2, "BĐ II")


def test_official_aqi_wins_over_indicative_and_devices_count(registry: Registry) -> None:
    districts = sorted({d.district for d in registry})
    first = districts[0]
    expected = sum(1 for d in registry if d.district == first)
    tiles = build_tiles(
        registry,
        {},
        aqi_official=[(first, 87.0, AT)],
        aqi_indicative=[(first, "pm25", 10.0, AT), (districts[1], "pm25", 60.0, AT)],
        river=None,
        services=[(first, 93.456, AT), ("nowhere", float("nan"), AT)],
        devices=[(first, 1)],
    )
    by = {t["district"]: t for t in tiles}
    assert by[first]["aqi"]["value"] == 87
    assert by[first]["aqi"]["source"] == "vn_aqi"
    assert by[districts[1]]["aqi"]["source"] == "indicative_1h_mean"
    assert by[districts[1]]["aqi"]["band"] == "poor"  # PM2.5 60 µg/m³ -> 117
    assert by[first]["services"]["on_time_pct"] == 93.5
    assert "nowhere" not in by
    assert by[first]["devices"] == {"reporting": 1, "expected": expected}
    assert by[districts[1]]["devices"]["reporting"] == 0
    assert set(by) == set(districts)


def test_missing_tables_give_empty_tiles_other_errors_are_counted(registry: Registry) -> None:
    errors: list[str] = []

    def query(sql: str, _params: Any) -> list[list[Any]]:
        if sql == AQI_OFFICIAL_SQL:
            raise DatabaseError("Code: 60. DB::Exception: Unknown table ioc.indicator_values")
        if "readings" in sql:
            raise DatabaseError("Code: 47. DB::Exception: Missing columns (UNKNOWN_IDENTIFIER)")
        return []

    tiles = TileSource(query, registry, {}, on_error=errors.append).tiles()
    assert tiles
    assert all(t["aqi"] is None and t["river"] is None and t["devices"] is None for t in tiles)
    assert errors == ["river", "devices"]
