"""``iocstream db migrate | status | query``: ClickHouse schema and ad-hoc queries."""

from __future__ import annotations

import argparse
import sys

from connectors.clickhouse.client import connect
from connectors.clickhouse.migrate import MigrationError, applied, load_migrations, migrate
from connectors.settings import ClickHouseSettings


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iocstream db",
        description="Apply the ClickHouse migrations in schemas/clickhouse/ (idempotent), "
        "show which are applied, or run a read-only query. Uses IOC_CLICKHOUSE_URL.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("migrate", help="create the database and apply pending migrations")
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
        if done:
            for m in done:
                print(f"applied {m.version:04d}_{m.name}")
        else:
            print("schema is up to date; nothing to apply")
        return 0
    client = connect(settings)
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
