"""``iocstream db``: ClickHouse schema migrations, dimension loads, retention and queries.

* ``migrate`` creates the database, applies pending migrations (idempotent, recorded in
  ``schema_migrations``) and then loads the dimension tables (``--no-dimensions`` skips).
  With ``IOC_CLICKHOUSE_CLUSTER`` every statement runs ``ON CLUSTER`` in its cluster form
  (replicated shards behind Distributed tables, see :mod:`connectors.clickhouse.cluster`).
* ``render`` prints every statement ``migrate`` would run (for ``--cluster`` or
  ``IOC_CLICKHOUSE_CLUSTER`` if set), without a server, for review.
* ``load-devices`` reloads ``devices`` from the device registry (``IOC_REGISTRY_PATH`` or
  deploy/devices.yaml) and ``flood_levels`` from deploy/flood_levels.yaml.
* ``ttl`` sets every table's TTL to the current ``IOC_RETENTION_*`` settings (on a cluster:
  on every shard's local table).
* ``status`` lists migrations; ``query`` runs a read-only SELECT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clickhouse_connect.driver.client import Client

from connectors.clickhouse.client import connect
from connectors.clickhouse.cluster import ClusterSQLError
from connectors.clickhouse.dimensions import FloodStation, load_devices, load_flood_levels
from connectors.clickhouse.migrate import (
    MigrationError,
    Plan,
    applied,
    load_migrations,
    migrate,
    plan,
)
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


def format_plan(steps: Plan) -> str:
    """The statements of ``steps`` as one SQL script, each migration under a header."""
    out = ["-- database and migration ledger", *(f"{s};\n" for s in steps.setup)]
    for migration, statements in steps.migrations:
        out.append(f"-- ==== migration {migration.version:04d}_{migration.name}")
        out += [f"{s};\n" for s in statements]
    return "\n".join(out)


def ttl_statements(settings: ClickHouseSettings, retention: RetentionSettings) -> list[str]:
    """The ``ALTER ... MODIFY TTL`` statements for the configured node or cluster."""
    statements = [ttl.alter(retention) for ttl in TTLS]
    if not settings.cluster:
        return statements
    renderer = plan(settings.database, cluster=settings.cluster).renderer
    if renderer is None:  # a cluster plan always has one
        raise MigrationError("no cluster renderer")
    return [s for statement in statements for s in renderer.render(statement)]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iocstream db",
        description="Apply the ClickHouse migrations in schemas/clickhouse/ (idempotent), load "
        "the device registry and flood levels, set retention, show which migrations are "
        "applied, or run a read-only query. Uses IOC_CLICKHOUSE_* and IOC_RETENTION_*; "
        "with IOC_CLICKHOUSE_CLUSTER, migrate and ttl target that ClickHouse cluster.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    mig = sub.add_parser("migrate", help="create the database, apply pending migrations, load")
    mig.add_argument("--no-dimensions", action="store_true", help="skip load-devices")
    dims = sub.add_parser("load-devices", help="reload devices and flood_levels from YAML")
    for p in (mig, dims):
        p.add_argument("--registry", type=Path, default=None, help="device registry YAML")
        p.add_argument("--flood-levels", type=Path, default=None, help="flood levels YAML")
    render = sub.add_parser(
        "render",
        help="print the SQL that migrate would run, without a server (review a cluster form)",
    )
    render.add_argument(
        "--cluster",
        default=None,
        help="render ON CLUSTER for this remote_servers cluster "
        "(default: IOC_CLICKHOUSE_CLUSTER; none: one node)",
    )
    sub.add_parser("ttl", help="set every table's TTL from IOC_RETENTION_* (ALTER ... TTL)")
    sub.add_parser("status", help="list migrations and whether each is applied")
    query = sub.add_parser("query", help="run a SELECT and print the rows as TSV")
    query.add_argument("sql")
    args = parser.parse_args(argv)
    settings = ClickHouseSettings()

    if args.action == "render":
        try:
            steps = plan(settings.database, cluster=args.cluster or settings.cluster)
        except MigrationError as exc:
            print(f"iocstream db render: {exc}", file=sys.stderr)
            return 1
        print(format_plan(steps), end="")
        return 0
    if args.action == "migrate":
        client = connect(settings, database=None)
        try:
            done = migrate(client, settings.database, cluster=settings.cluster)
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
        try:
            statements = ttl_statements(settings, retention)
        except (MigrationError, ClusterSQLError) as exc:
            print(f"iocstream db ttl: {exc}", file=sys.stderr)
            return 1
        for statement in statements:
            client.command(statement)
        for ttl in TTLS:
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
