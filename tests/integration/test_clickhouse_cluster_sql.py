"""The cluster form of every migration statement, checked by the real ClickHouse parser.

There is no cluster (nor Keeper) here, so the statements cannot run; ``formatQuery`` parses a
statement with the engine's own parser without executing it. The check also compares the
parsed form of each rendered statement with that of the single-node original, so the renderer
cannot have changed a view's query or a table's columns behind the ON CLUSTER clause.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from connectors.clickhouse.client import connect
from connectors.clickhouse.migrate import plan
from connectors.clickhouse.retention import RetentionSettings
from connectors.settings import ClickHouseSettings
from streams.cli.db import ttl_statements

pytestmark = pytest.mark.integration

CLUSTER = "ioc_cluster"


@pytest.fixture
def client() -> Iterator[Client]:
    client = connect(ClickHouseSettings(), database=None)
    yield client
    client.close()


def _parsed(client: Client, sql: str) -> str:
    """``sql`` as ClickHouse's parser formats it (raises if it does not parse)."""
    rows = client.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows
    return str(rows[0][0])


def test_every_rendered_statement_parses(client: Client) -> None:
    single, cluster = plan("ioc"), plan("ioc", cluster=CLUSTER)
    statements = cluster.setup + [s for _m, ss in cluster.migrations for s in ss]
    assert len(statements) > len(single.setup) + sum(len(ss) for _m, ss in single.migrations)
    engines: list[str] = []
    for statement in statements:
        parsed = _parsed(client, statement)
        assert f" ON CLUSTER {CLUSTER}" in parsed.splitlines()[0], parsed
        engines += re.findall(r"^ENGINE = (\w+)", parsed, flags=re.MULTILINE)
    assert engines
    assert all(e.startswith("Replicated") or e == "Distributed" for e in engines), engines
    assert engines.count("Distributed") == 11


def test_alters_parse(client: Client) -> None:
    settings = ClickHouseSettings(cluster=CLUSTER, database="ioc")
    renderer = plan("ioc", cluster=CLUSTER).renderer
    assert renderer is not None
    statements = ttl_statements(settings, RetentionSettings())
    statements += renderer.render("ALTER TABLE readings ADD COLUMN IF NOT EXISTS x UInt8")
    assert len(statements) == 11
    for statement in statements:
        parsed = _parsed(client, statement)
        assert re.match(rf"ALTER TABLE \w+ ON CLUSTER {CLUSTER}\n", parsed), parsed


def test_rendering_keeps_queries_and_columns(client: Client) -> None:
    single, cluster = plan("ioc"), plan("ioc", cluster=CLUSTER)
    on = f" ON CLUSTER {CLUSTER}"
    views = tables = 0
    for (_m, originals), (_n, rendered) in zip(single.migrations, cluster.migrations, strict=True):
        by_name = {_name(_parsed(client, s)): _parsed(client, s) for s in rendered}
        for original in originals:
            before = _parsed(client, original)
            name = _name(before)
            if before.startswith("CREATE VIEW"):
                assert by_name[name].replace(on, "", 1) == before
                views += 1
            elif before.startswith("CREATE TABLE"):
                after = by_name.get(f"{name}_local", by_name[name])
                assert _columns(after) == _columns(before)
                tables += 1
    assert (views, tables) == (8, 14)


def test_the_check_can_fail(client: Client) -> None:
    statement = plan("ioc", cluster=CLUSTER).migrations[0][1][0]
    with pytest.raises(DatabaseError, match=r"SYNTAX_ERROR|Syntax error"):
        _parsed(client, statement.replace("ON CLUSTER", "ON CLUSTERS", 1))


def _name(parsed: str) -> str:
    match = re.match(
        r"CREATE (?:TABLE|VIEW|MATERIALIZED VIEW|DATABASE) IF NOT EXISTS (\w+)", parsed
    )
    assert match, parsed
    return match.group(1)


def _columns(parsed: str) -> str:
    return parsed[parsed.index("\n(") : parsed.index("\nENGINE")]
