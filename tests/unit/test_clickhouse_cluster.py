"""The cluster form of the migrations, without a server: every repository migration renders
to ON CLUSTER statements with replicated local tables behind Distributed tables, and whatever
the renderer cannot render safely is refused."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from connectors.clickhouse.cluster import (
    EVERYWHERE,
    SHARDING_KEYS,
    ClusterRenderer,
    ClusterSQLError,
    ClusterTarget,
)
from connectors.clickhouse.migrate import LEDGER, MigrationError, load_migrations, migrate, plan
from connectors.clickhouse.retention import TTLS, RetentionSettings
from connectors.settings import ClickHouseSettings
from streams.cli.db import run as db_run
from streams.cli.db import ttl_statements

CLUSTER, DB = "ioc_cluster", "ioc"
ON = f" ON CLUSTER '{CLUSTER}'"
_CREATE = re.compile(
    r"^CREATE (TABLE|VIEW|MATERIALIZED VIEW|DATABASE) IF NOT EXISTS (\w+)( ON CLUSTER '([^']*)')?"
)
_ENGINE = re.compile(r"ENGINE = (\w+)(\(((?:[^()]|\([^()]*\))*)\))?")


def _code(sql: str) -> str:
    """``sql`` without its leading comment lines."""
    lines = sql.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def _renderer() -> ClusterRenderer:
    return ClusterRenderer(ClusterTarget(CLUSTER, DB))


def _statements() -> list[tuple[str, list[str]]]:
    """Every single-node statement of the repository with its cluster form."""
    renderer, out = _renderer(), []
    values = RetentionSettings().placeholders()
    for m in load_migrations():
        for statement in m.statements(values):
            out.append((statement, renderer.render(statement)))
    return out


def test_every_statement_of_every_migration_gets_on_cluster() -> None:
    pairs = _statements()
    assert len(pairs) == sum(len(m.statements()) for m in load_migrations())
    for original, rendered in pairs:
        assert rendered, original
        for statement in rendered:
            match = _CREATE.match(_code(statement))
            assert match, statement
            assert match.group(4) == CLUSTER, statement
            assert _code(statement).count("ON CLUSTER") == 1
            assert "non_replicated_deduplication_window" not in _code(statement)
            assert "{{" not in statement


def test_every_merge_tree_became_replicated_with_its_own_path() -> None:
    engines = 0
    for original, rendered in _statements():
        source = _ENGINE.search(_code(original))
        if not _code(original).startswith("CREATE TABLE") or source is None:
            continue
        local = _code(rendered[0])
        name = _CREATE.match(local).group(2)  # type: ignore[union-attr]
        engine = _ENGINE.search(local)
        assert engine is not None
        assert engine.group(1) == f"Replicated{source.group(1)}", local
        args = [a.strip() for a in engine.group(3).split(",")]
        plain = name.removesuffix("_local")
        if plain in EVERYWHERE:
            assert name == plain
            assert args[:2] == [
                f"'/clickhouse/tables/all/{{database}}/{name}'",
                "'{shard}-{replica}'",
            ]
        else:
            assert name == f"{plain}_local"
            assert args[:2] == [
                f"'/clickhouse/tables/{{shard}}/{{database}}/{name}'",
                "'{replica}'",
            ]
        original_args = [a.strip() for a in (source.group(3) or "").split(",") if a.strip()]
        assert args[2:] == original_args, "engine arguments are kept after path and replica"
        engines += 1
    assert engines == 14


def test_a_distributed_table_under_the_plain_name_for_every_local_table() -> None:
    local_tables, distributed = set(), {}
    for _original, rendered in _statements():
        for statement in rendered:
            name = _CREATE.match(_code(statement)).group(2)  # type: ignore[union-attr]
            if name.endswith("_local"):
                local_tables.add(name)
            found = re.search(
                r"ENGINE = Distributed\('(\w+)', '(\w+)', '(\w+)', (.+)\)$", statement
            )
            if found:
                assert found.group(1, 2) == (CLUSTER, DB)
                assert f" AS {found.group(3)}\n" in statement
                distributed[name] = (found.group(3), found.group(4))
    assert local_tables == {f"{n}_local" for n in distributed}
    assert {n: local for n, (local, _k) in distributed.items()} == {
        n: f"{n}_local" for n in distributed
    }
    assert {n: key for n, (_l, key) in distributed.items()} == SHARDING_KEYS


def test_the_plain_names_readers_use_all_exist_on_the_cluster() -> None:
    single, cluster = set(), set()
    for original, rendered in _statements():
        single.add(_CREATE.match(_code(original)).group(2))  # type: ignore[union-attr]
        cluster |= {_CREATE.match(_code(s)).group(2) for s in rendered}  # type: ignore[union-attr]
    assert single <= cluster
    assert cluster - single == {f"{n}_local" for n in SHARDING_KEYS}


def test_materialized_views_read_and_write_local_tables() -> None:
    views = 0
    for original, rendered in _statements():
        if not _code(original).startswith("CREATE MATERIALIZED VIEW"):
            continue
        (statement,) = rendered
        target = re.search(r" TO (\w+) AS\n", statement)
        sources = re.findall(r"\bFROM (\w+)", statement)
        original_target = re.search(r" TO (\w+) AS\n", original)
        assert target, statement
        assert original_target, original
        assert target.group(1) == f"{original_target.group(1)}_local"
        assert len(sources) == 1, statement
        assert sources[0].endswith("_local"), statement
        views += 1
    assert views == 4


def test_a_materialized_view_without_alias_keeps_the_plain_name_as_alias() -> None:
    rendered = dict(_statements())
    original = next(o for o in rendered if "alerts_latest_mv" in o)
    assert rendered[original][0].endswith("FROM alert_events_local AS alert_events")


def test_views_change_only_by_on_cluster() -> None:
    views = 0
    for original, rendered in _statements():
        if _code(original).startswith("CREATE VIEW"):
            assert [s.replace(ON, "", 1) for s in rendered] == [original]
            views += 1
    assert views == 8


def test_tables_keep_columns_order_ttl_and_settings() -> None:
    for original, rendered in _statements():
        if not _code(original).startswith("CREATE TABLE"):
            continue
        code = _code(original)
        columns = code[code.index("(") : code.index(") ENGINE")]
        assert columns in rendered[0]
        for clause in ("ORDER BY", "PARTITION BY", "TTL"):
            line = next((ln for ln in original.splitlines() if ln.startswith(clause)), None)
            if line:
                assert line in rendered[0].splitlines()


def test_ledger_and_database_are_cluster_wide() -> None:
    steps = plan(DB, cluster=CLUSTER)
    assert steps.setup[0] == f"CREATE DATABASE IF NOT EXISTS {DB}{ON}"
    assert steps.setup[1].startswith(f"CREATE TABLE IF NOT EXISTS schema_migrations{ON} (")
    assert (
        "ReplicatedMergeTree('/clickhouse/tables/all/{database}/schema_migrations', "
        "'{shard}-{replica}')" in steps.setup[1]
    )
    single = plan(DB)
    assert single.setup == [f"CREATE DATABASE IF NOT EXISTS {DB}", LEDGER.strip()]
    assert single.renderer is None
    assert [s for _m, ss in single.migrations for s in ss] == [
        s for m in load_migrations() for s in m.statements()
    ]


def test_ttl_alters_go_to_every_shards_local_table() -> None:
    renderer = plan(DB, cluster=CLUSTER).renderer
    assert renderer is not None
    retention = RetentionSettings()
    for ttl in TTLS:
        (statement,) = renderer.render(ttl.alter(retention))
        assert statement == ttl.alter(retention).replace(
            f"ALTER TABLE {ttl.table} ", f"ALTER TABLE {ttl.table}_local{ON} "
        )
    settings = ClickHouseSettings(cluster=CLUSTER, database=DB)
    assert ttl_statements(settings, retention)[0].startswith(f"ALTER TABLE readings_local{ON} ")
    assert ttl_statements(ClickHouseSettings(), retention) == [t.alter(retention) for t in TTLS]


def test_column_changes_reach_the_distributed_table_too() -> None:
    renderer = plan(DB, cluster=CLUSTER).renderer
    assert renderer is not None
    assert renderer.render("ALTER TABLE readings ADD COLUMN IF NOT EXISTS x UInt8") == [
        f"ALTER TABLE readings_local{ON} ADD COLUMN IF NOT EXISTS x UInt8",
        f"ALTER TABLE readings{ON} ADD COLUMN IF NOT EXISTS x UInt8",
    ]
    assert renderer.render("ALTER TABLE readings DROP COLUMN x") == [
        f"ALTER TABLE readings{ON} DROP COLUMN x",
        f"ALTER TABLE readings_local{ON} DROP COLUMN x",
    ]
    assert renderer.render("ALTER TABLE devices ADD COLUMN y String") == [
        f"ALTER TABLE devices{ON} ADD COLUMN y String"
    ]
    with pytest.raises(ClusterSQLError, match="split it"):
        renderer.render("ALTER TABLE readings ADD COLUMN y UInt8, MODIFY TTL toDateTime(x)")


def test_a_new_table_with_device_id_in_its_key_is_sharded_by_device() -> None:
    renderer = _renderer()
    local, distributed = renderer.render(
        "-- a comment with ENGINE = Memory and FROM x in it\n"
        "CREATE TABLE IF NOT EXISTS gauges (device_id String, note String DEFAULT 'a, (b') "
        "ENGINE = MergeTree() ORDER BY device_id SETTINGS index_granularity = 8192"
    )
    assert (
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/gauges_local', "
        "'{replica}') ORDER BY device_id SETTINGS index_granularity = 8192"
    ) in local
    assert "note String DEFAULT 'a, (b')" in local
    assert local.startswith("-- a comment with ENGINE = Memory")
    assert distributed.endswith("'gauges_local', cityHash64(device_id))")


REFUSED = [
    ("INSERT INTO readings VALUES (1)", "only CREATE and ALTER"),
    ("DROP TABLE readings", "only CREATE and ALTER"),
    ("CREATE TABLE IF NOT EXISTS t (device_id String) ENGINE = Memory", "not a non-replicated"),
    ("CREATE TABLE t (device_id String) ENGINE = ReplicatedMergeTree ORDER BY device_id", "non-r"),
    ("CREATE TABLE t ON CLUSTER c (a UInt8) ENGINE = MergeTree ORDER BY a", "already has ON"),
    ("CREATE TABLE ioc.t (device_id String) ENGINE = MergeTree ORDER BY device_id", "unqualified"),
    ("CREATE TABLE `t` (device_id String) ENGINE = MergeTree ORDER BY device_id", "unqualified"),
    ("CREATE TABLE t AS readings", "column list"),
    ("CREATE TABLE t (device_id String)", "explicit ENGINE"),
    ("CREATE TABLE t (device_id String) ENGINE = MergeTree", "needs ORDER BY"),
    ("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a", "no sharding key for table t"),
    ("CREATE TABLE t (device_id String, a UInt8) ENGINE = MergeTree ORDER BY a", "no sharding"),
    ("CREATE TABLE t (device_id String) ENGINE = MergeTree ORDER BY (device_id", "unbalanced"),
    ("CREATE TABLE t (a String) ENGINE = MergeTree ORDER BY 'x", "unterminated quote"),
    ("CREATE DICTIONARY d (a UInt8) PRIMARY KEY a", "CREATE DICTIONARY"),
    ("CREATE TEMPORARY TABLE t (a UInt8)", "CREATE TEMPORARY"),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE OR"),
    ("CREATE VIEW v (a UInt8) AS SELECT 1", "expected AS"),
    ("CREATE MATERIALIZED VIEW v ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a", "needs TO"),
    ("CREATE MATERIALIZED VIEW v TO readings AS SELECT * FROM readings JOIN events USING id", "J"),
    ("CREATE MATERIALIZED VIEW v TO readings AS SELECT * FROM ioc.readings", "unqualified"),
    ("CREATE MATERIALIZED VIEW v TO readings AS SELECT * FROM readings r, events", "several"),
    ("CREATE MATERIALIZED VIEW v TO readings AS SELECT * FROM readings AS r, events", "several"),
    ("CREATE MATERIALIZED VIEW v TO readings AS SELECT * FROM readings, events", "several"),
    (
        "CREATE MATERIALIZED VIEW v TO readings AS SELECT 1 FROM readings WHERE a IN "
        "(SELECT a FROM x)",
        "exactly one",
    ),
    ("CREATE MATERIALIZED VIEW v TO readings AS SELECT 1", "exactly one table"),
    ("CREATE MATERIALIZED VIEW v TO devices AS SELECT * FROM readings", "read and write sharded"),
    ("CREATE MATERIALIZED VIEW v TO alerts_latest AS SELECT * FROM readings", "sharded differ"),
    ("ALTER TABLE nowhere ADD COLUMN a UInt8", "not a table created by an earlier migration"),
    ("ALTER TABLE latest_readings_v MODIFY QUERY SELECT 1", "not a table created"),
    ("ALTER TABLE readings ON CLUSTER c DROP COLUMN a", "already has ON CLUSTER"),
    ("ALTER USER x", "only ALTER TABLE"),
]


@pytest.mark.parametrize(("sql", "why"), REFUSED)
def test_what_cannot_be_rendered_safely_is_refused(sql: str, why: str) -> None:
    renderer = plan(DB, cluster=CLUSTER).renderer
    assert renderer is not None
    with pytest.raises(ClusterSQLError, match=re.escape(why)):
        renderer.render(sql)


def test_sharding_keys_must_be_columns_and_in_the_key_of_deduplicating_engines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renderer = _renderer()
    monkeypatch.setitem(SHARDING_KEYS, "t", "cityHash64(nope)")
    with pytest.raises(ClusterSQLError, match="names columns it does not have"):
        renderer.render("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a")
    monkeypatch.setitem(SHARDING_KEYS, "t", "cityHash64(b)")
    with pytest.raises(ClusterSQLError, match="only sorting-key columns"):
        renderer.render("CREATE TABLE t (a UInt8, b UInt8) ENGINE = ReplacingMergeTree ORDER BY a")
    assert (
        len(renderer.render("CREATE TABLE t (a UInt8, b UInt8) ENGINE = MergeTree ORDER BY a")) == 2
    )


@pytest.mark.parametrize(
    ("cluster", "database"),
    [("a'b", "ioc"), ("", "ioc"), ("c\n", "ioc"), ("c", "i-o"), ("c", "x\n")],
)
def test_names_are_validated(cluster: str, database: str) -> None:
    with pytest.raises(ClusterSQLError, match="invalid"):
        ClusterTarget(cluster, database)
    assert ClusterTarget("{cluster}", "ioc").on_cluster == " ON CLUSTER '{cluster}'"


def test_plan_names_the_migration_it_cannot_render(tmp_path: Any) -> None:
    (tmp_path / "0001_memory.sql").write_text(
        "CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = Memory;\n", encoding="utf-8"
    )
    with pytest.raises(MigrationError, match="migration 0001_memory: cannot render"):
        plan(DB, tmp_path, cluster=CLUSTER)
    with pytest.raises(MigrationError, match="invalid cluster name"):
        plan(DB, cluster="x y")
    assert len(plan(DB, tmp_path).migrations) == 1


class _FakeClient:
    """Records what ``migrate`` sends; knows which migrations are applied."""

    def __init__(self, applied: dict[int, str] | None = None) -> None:
        self.commands: list[str] = []
        self.inserts: list[tuple[str, list[list[Any]]]] = []
        self.database = ""
        self._applied = applied or {}

    def command(self, sql: str) -> None:
        self.commands.append(sql)

    def query(self, sql: str) -> Any:
        assert sql == "SELECT version, checksum FROM schema_migrations"
        return type("R", (), {"result_rows": list(self._applied.items())})()

    def insert(self, table: str, rows: list[list[Any]], column_names: list[str]) -> None:
        assert table == "schema_migrations"
        assert isinstance(rows[0][3], datetime)
        self.inserts.append((table, rows))


def test_migrate_on_a_cluster_runs_the_rendered_statements_of_pending_migrations() -> None:
    migrations = load_migrations()
    first = migrations[0]
    client = _FakeClient({first.version: first.checksum})
    applied = migrate(client, DB, cluster=CLUSTER)  # type: ignore[arg-type]
    assert [m.version for m in applied] == [m.version for m in migrations[1:]]
    steps = plan(DB, cluster=CLUSTER)
    expected = steps.setup + [s for m, ss in steps.migrations[1:] for s in ss]
    assert client.commands == expected
    assert all(ON in c for c in client.commands)
    assert not any("EXISTS readings_local " in c for c in client.commands)
    assert client.database == DB
    assert [rows[0][0] for _t, rows in client.inserts] == [m.version for m in migrations[1:]]


def test_migrate_without_a_cluster_sends_the_files_statements_unchanged() -> None:
    client = _FakeClient()
    migrate(client, DB)  # type: ignore[arg-type]
    expected = [f"CREATE DATABASE IF NOT EXISTS {DB}", LEDGER.strip()]
    expected += [s for m in load_migrations() for s in m.statements()]
    assert client.commands == expected
    assert not any("ON CLUSTER" in c or "Replicated" in c for c in client.commands)


def test_db_render_prints_the_cluster_sql(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IOC_CLICKHOUSE_CLUSTER", raising=False)
    monkeypatch.setenv("IOC_CLICKHOUSE_DATABASE", "city")
    assert db_run(["render", "--cluster", CLUSTER]) == 0
    out = capsys.readouterr().out
    assert out.startswith("-- database and migration ledger\nCREATE DATABASE IF NOT EXISTS city")
    assert "-- ==== migration 0012_sink_ledger" in out
    assert "Distributed('ioc_cluster', 'city', 'readings_local', cityHash64(device_id));" in out
    assert db_run(["render"]) == 0
    assert "ON CLUSTER" not in capsys.readouterr().out
    monkeypatch.setenv("IOC_CLICKHOUSE_CLUSTER", "from_env")
    assert db_run(["render"]) == 0
    assert "ON CLUSTER 'from_env'" in capsys.readouterr().out
    assert db_run(["render", "--cluster", "bad name"]) == 1
    assert "invalid cluster name" in capsys.readouterr().err
