"""Insert throughput through the embedded ClickHouse's HTTP interface vs chDB in-process.

Value: rows/s of one column-oriented clickhouse-connect insert (lz4) into the stack's
ClickHouse over HTTP. Baseline: the same rows inserted by chDB in this process (the engine
alone, a pre-encoded Native block, no HTTP and no Python encoding). The ratio is the share of
the engine's speed the HTTP server and the client keep.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import chdb

from connectors.clickhouse.client import connect
from connectors.settings import ClickHouseSettings
from streams.bench import BenchContext, Benchmark, Figure

COLUMNS = ["id", "ts", "sensor", "value"]
DDL = (
    "CREATE TABLE {name} (id UInt64, ts DateTime64(3, 'UTC'), sensor LowCardinality(String), "
    "value Float64) ENGINE = MergeTree ORDER BY id"
)


def _columns(n: int) -> list[list[Any]]:
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = list(range(n))
    return [
        ids,
        [base + dt.timedelta(milliseconds=i) for i in ids],
        [f"sensor-{i % 500}" for i in ids],
        [i * 0.5 for i in ids],
    ]


def _in_process(n: int, ctx: BenchContext) -> float:
    connect_: Any = chdb.connect
    conn = connect_(str(ctx.workdir / "chdb"))
    try:
        payload = conn.query(
            "SELECT number AS id, toDateTime64('2026-01-01', 3, 'UTC') + number / 1000 AS ts, "
            "toLowCardinality(concat('sensor-', toString(number % 500))) AS sensor, "
            "number * 0.5 AS value FROM numbers({n:UInt64})",
            "Native",
            params={"n": str(n)},
        ).bytes()
        conn.query(DDL.format(name="bench"))
        started = time.perf_counter()
        inserter = conn.send_insert("INSERT INTO bench", "Native")
        inserter.append(payload)
        inserter.finish()
        took = time.perf_counter() - started
        count = int(conn.query("SELECT count() FROM bench", "CSV").bytes())
        if count != n:
            raise RuntimeError(f"chDB holds {count} rows, expected {n}")
        return n / took
    finally:
        conn.close()


def _over_http(n: int, ctx: BenchContext) -> float:
    client = connect(ClickHouseSettings(), compress="lz4")
    table = ctx.unique("bench_insert").replace("-", "_")
    client.command(DDL.format(name=table))
    try:
        columns = _columns(n)
        started = time.perf_counter()
        client.insert(table, columns, column_names=COLUMNS, column_oriented=True)
        took = time.perf_counter() - started
        count = client.command("SELECT count() FROM {t:Identifier}", parameters={"t": table})
        if count != n:
            raise RuntimeError(f"ClickHouse holds {count} rows, expected {n}")
        return n / took
    finally:
        client.command("DROP TABLE IF EXISTS {t:Identifier}", parameters={"t": table})
        client.close()


def run(ctx: BenchContext) -> list[Figure]:
    n = 100_000 if ctx.quick else 1_000_000
    baseline = _in_process(n, ctx)
    value = _over_http(n, ctx)
    return [Figure("clickhouse_http_insert", value, "rows/s", baseline, "chDB in-process")]


BENCHMARK = Benchmark(
    "clickhouse_http_insert",
    "rows/s of a clickhouse-connect insert over HTTP vs the chDB engine in-process",
    run,
)
