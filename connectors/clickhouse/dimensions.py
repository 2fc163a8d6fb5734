"""Load the dimension tables ``devices`` and ``flood_levels`` from configuration.

Each load inserts every current entry with one new ``loaded_at`` (ReplacingMergeTree keeps
the newest row per key) and re-inserts entries that are in the table but no longer in the
configuration with ``active = 0``. Loading the same configuration again changes nothing that
``FINAL`` shows; it is safe to run on every deploy (``iocstream db migrate`` does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from connectors.registry import Registry

DEVICE_COLUMNS = [
    "device_id", "kind", "name", "district", "ward", "lat", "lon", "expected_interval_s",
    "metrics", "labels", "station", "active", "loaded_at",
]  # fmt: skip
FLOOD_COLUMNS = ["station_id", "name", "river", "bd1_m", "bd2_m", "bd3_m", "active", "loaded_at"]


@dataclass(frozen=True)
class FloodStation:
    """One station's flood alarm levels in metres (BĐ II/III may be unknown)."""

    station_id: str
    name: str
    river: str
    bd1_m: float
    bd2_m: float | None
    bd3_m: float | None


def _retire(client: Client, table: str, keep: set[str]) -> list[list[object]]:
    rows = client.query(
        f"SELECT * EXCEPT (active, loaded_at) FROM {table} FINAL WHERE active",  # noqa: S608
    ).result_rows
    return [list(r) for r in rows if str(r[0]) not in keep]


def load_devices(client: Client, registry: Registry, now: datetime | None = None) -> int:
    """Replace the ``devices`` dimension with ``registry``; returns the active device count."""
    now = now or datetime.now(UTC)
    rows: list[list[object]] = [
        [
            d.id, d.kind, d.name, d.district, d.ward, d.lat, d.lon, d.expected_interval_s,
            sorted(d.metrics), dict(d.labels), d.labels.get("station", ""), True, now,
        ]
        for d in registry
    ]  # fmt: skip
    gone = _retire(client, "devices", {d.id for d in registry})
    rows += [[*r, False, now] for r in gone]
    if rows:
        client.insert("devices", rows, column_names=DEVICE_COLUMNS)
    return len(registry)


def load_flood_levels(
    client: Client, stations: Iterable[FloodStation], now: datetime | None = None
) -> int:
    """Replace the ``flood_levels`` dimension; returns the active station count."""
    now = now or datetime.now(UTC)
    current = list(stations)
    rows: list[list[object]] = [
        [s.station_id, s.name, s.river, s.bd1_m, s.bd2_m, s.bd3_m, True, now] for s in current
    ]
    gone = _retire(client, "flood_levels", {s.station_id for s in current})
    rows += [[*r, False, now] for r in gone]
    if rows:
        client.insert("flood_levels", rows, column_names=FLOOD_COLUMNS)
    return len(current)
