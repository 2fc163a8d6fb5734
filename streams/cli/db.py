"""``iocstream db``: ClickHouse schema migrations, dimension loads, retention and queries.

* ``migrate`` creates the database, applies pending migrations (idempotent, recorded in
  ``schema_migrations``) and then loads the dimension tables (``--no-dimensions`` skips).
* ``load-devices`` reloads ``devices`` from the device registry (``IOC_REGISTRY_PATH`` or
  deploy/devices.yaml) and ``flood_levels`` from deploy/flood_levels.yaml.
* ``ttl`` sets every table's TTL to the current ``IOC_RETENTION_*`` settings.
* ``status`` lists migrations; ``query`` runs a read-only SELECT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clickhouse_connect.driver.client import Client

from connectors.clickhouse.client import connect
from connectors.clickhouse.dimensions import FloodStation, load_devices, load_flood_levels
from connectors.clickhouse.migrate import MigrationError, applied, load_migrations, migrate
from connectors.clickhouse.retention import TTLS, RetentionSettings
from connectors.registry import Registry, RegistryError
from connectors.settings import ClickHouseSettings
from streams.flood import DEFAULT_FLOOD_LEVELS_PATH, FloodConfigError
from streams.flood import load_flood_levels as read_flood_levels


def load_dimensions(
    client: Client, registry_path: Path | None = None, flood_path: Path | None = None
) -> tuple[int, int]:
    """Load devices and flood levels into the (already migrated) database of ``client``."""
    registry = Registry.load(registry_path or Registry.default_path())
    levels = read_flood_levels(flood_path or DEFAULT_FLOOD_LEVELS_PATH)
    stations = [
        FloodStation(s.station_id, s.name, s.river, s.bd1_m, s.bd2_m, s.bd3_m)
        for s in levels.values()
    ]
    return load_devices(client, registry), load_flood_levels(client, stations)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iocstream db",
        description="Apply the ClickHouse migrations in schemas/clickhouse/ (idempotent), load "
        "the device registry and flood levels, set retention, show which migrations are "
        "applied, or run a read-only query. Uses IOC_CLICKHOUSE_* and IOC_RETENTION_*.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    mig = sub.add_parser("migrate", help="create the database, apply pending migrations, load")
    mig.add_argument("--no-dimensions", action="store_true", help="skip load-devices")
    dims = sub.add_parser("load-devices", help="reload devices and flood_levels from YAML")
    for p in (mig, dims):
        p.add_argument("--registry", type=Path, default=None, help="device registry YAML")
        p.add_argument("--flood-levels", type=Path, default=None, help="flood levels YAML")
    sub.add_parser("ttl", help="set every table's TTL from IOC_RETENTION_* (ALTER ... TTL)")
    sub.add_parser("status", help="list migrations and whether each is applied")
    query = sub.add_parser("query", help="run a SELECT and print the rows as TSV")
    query.add_argument("sql")
    args = parser.parse_args(argv)
    settings = ClickHouseSettings()

    if args.action == "migrate":
        client = connect(settings, database=None)
        try:
            done = migrate(client, settings.database)
        except MigrationError as exc:
            print(f"iocstream db migrate: {exc}", file=sys.stderr)
            return 1
        for m in done:
            print(f"applied {m.version:04d}_{m.name}")
        if not done:
            print("schema is up to date; nothing to apply")
        if args.no_dimensions:
            return 0
    client = connect(settings)
    if args.action in ("migrate", "load-devices"):
        try:
            devices, stations = load_dimensions(client, args.registry, args.flood_levels)
        except (RegistryError, FloodConfigError) as exc:
            print(f"iocstream db {args.action}: {exc}", file=sys.stderr)
            return 1
        print(f"loaded {devices} devices and {stations} flood stations")
        return 0
    if args.action == "ttl":
        retention = RetentionSettings()
        for ttl in TTLS:
            client.command(ttl.alter(retention))
            print(f"{ttl.table}: TTL {ttl.days(retention)} days")
        return 0
    if args.action == "status":
        recorded = applied(client)
        for m in load_migrations():
            state = "applied" if m.version in recorded else "PENDING"
            print(f"{m.version:04d}_{m.name:<40} {state}")
        return 0
    result = client.query(args.sql, settings={"readonly": 2})
    print("\t".join(result.column_names))
    for row in result.result_rows:
        print("\t".join(str(v) for v in row))
    return 0
