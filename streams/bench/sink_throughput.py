"""End-to-end rows/s of the ClickHouse sink against a direct bulk insert of the same rows.

Value: readings per second that ``ClickHouseSink`` moves from a pre-filled Kafka topic into the
``readings`` table of a freshly migrated database (consume, decode, batch, ledger, insert with
deduplication tokens, commit), timed from the moment the sink is assigned its partitions until
ClickHouse holds every row. (Joining the consumer group, about a second here, is a one-off cost
of starting, not of throughput; it is printed as a note.) The sink runs as deployed: canonical
readings are decoded by ClickHouse (``connectors/clickhouse/serverside.py``).

Baseline: the same rows, already decoded into columns, inserted by clickhouse-connect
(column-oriented, lz4) into another freshly migrated ``readings`` table in batches of the
sink's size. Both targets carry the same materialized views, so the ratio (sink / direct) is
the share of ClickHouse's own insert speed that the sink keeps: its overhead (Kafka fetch,
JSON decoding, per-batch bookkeeping) and nothing else. (A raw consume of the topic would
measure only the Kafka half and hide the insert, which is where a sink usually loses.)
Correctness: both tables must hold exactly N rows with the same value sum.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from connectors.clickhouse.batch import Limits
from connectors.clickhouse.client import connect
from connectors.clickhouse.migrate import migrate
from connectors.clickhouse.rows import READINGS, ROUTES, append_message
from connectors.clickhouse.sink import ClickHouseSink, SinkConfig
from connectors.settings import ClickHouseSettings, KafkaSettings
from streams.bench import BenchContext, Benchmark, Figure

PER_MESSAGE = 500
BATCH_ROWS = 50_000
PARTITIONS = 4


def _messages(n: int) -> list[bytes]:
    """``n`` readings as ioc.readings batches of PER_MESSAGE (JSON built once, templated)."""
    out = []
    for start in range(0, n, PER_MESSAGE):
        items = []
        for i in range(start, min(n, start + PER_MESSAGE)):
            second = i % 86_400
            stamp = f"2026-11-28T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
            items.append(
                f'{{"device_id":"aq-{i % 500:03d}","device_kind":"air_quality",'
                f'"district":"d-{i % 7}","ward":"w-{i % 11}","metric":"pm25","value":{i % 1000}.5,'
                f'"unit":"ug/m3","event_time":"{stamp}.000Z","receive_time":"{stamp}.250Z",'
                f'"time_source":"device","source":"mqtt:bench"}}'
            )
        out.append(('{"schema":"ioc.readings/v1","readings":[' + ",".join(items) + "]}").encode())
    return out


def _database(ctx: BenchContext, prefix: str) -> tuple[str, Any]:
    name = ctx.unique(prefix).replace("-", "_")
    settings = ClickHouseSettings()
    migrate(connect(settings, database=None), name)
    return name, connect(ClickHouseSettings(database=name), compress="lz4")


def _fill_topic(kafka: KafkaSettings, topic: str, messages: list[bytes]) -> None:
    admin = KafkaAdminClient(**kafka.client_options(), client_id="bench-sink")
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(
        **kafka.client_options(), acks="all", linger_ms=20, batch_size=1 << 20,
        max_request_size=8 << 20,
    )  # fmt: skip
    try:
        for i, value in enumerate(messages):
            producer.send(topic, value=value, partition=i % PARTITIONS)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)


def _direct(ctx: BenchContext, messages: list[bytes], n: int) -> tuple[float, float]:
    _name, client = _database(ctx, "bench_direct")
    cols = READINGS.empty()
    for offset, value in enumerate(messages):
        append_message(READINGS, cols, value, "bench", 0, offset)
    names = list(cols)
    try:
        started = time.perf_counter()
        for lo in range(0, n, BATCH_ROWS):
            data = [cols[c][lo : lo + BATCH_ROWS] for c in names]
            client.insert("readings", data, column_names=names, column_oriented=True)
        took = time.perf_counter() - started
        count, total = client.query("SELECT count(), sum(value) FROM readings").result_rows[0]
    finally:
        client.close()
    if count != n:
        raise RuntimeError(f"direct insert: ClickHouse holds {count} rows, expected {n}")
    return n / took, float(total)


def _sink(ctx: BenchContext, topic: str, n: int) -> tuple[float, float]:
    kafka = KafkaSettings()
    name, client = _database(ctx, "bench_sink")
    reader = connect(ClickHouseSettings(database=name))
    group = ctx.unique("bench-sink")

    def consumer() -> KafkaConsumer:
        return KafkaConsumer(
            **kafka.client_options(), group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20, client_id="bench-sink", check_crcs=False,
        )  # fmt: skip

    config = SinkConfig(group_id=group, limits=Limits(BATCH_ROWS, 64 << 20, 1.0))
    sink = ClickHouseSink(consumer, client, {topic: ROUTES["readings"]}, config)
    thread = threading.Thread(target=sink.run, name="bench-sink", daemon=True)
    launched = time.perf_counter()
    thread.start()
    count = 0
    deadline = launched + 600
    started = launched
    try:
        while not sink.rebalances and time.perf_counter() < deadline:
            time.sleep(0.005)
        started = time.perf_counter()
        ctx.notes.append(f"the sink joined its group in {started - launched:.2f} s")
        while time.perf_counter() < deadline:
            count = int(reader.query("SELECT count() FROM readings").result_rows[0][0])
            if count >= n:
                break
            time.sleep(0.1)
        took = time.perf_counter() - started
    finally:
        sink.stop.set()
        thread.join(timeout=60)
    total = float(reader.query("SELECT sum(value) FROM readings").result_rows[0][0])
    count = int(reader.query("SELECT count() FROM readings").result_rows[0][0])
    reader.close()
    if count != n:
        raise RuntimeError(f"sink: ClickHouse holds {count} rows, expected {n}")
    return n / took, total


def run(ctx: BenchContext) -> list[Figure]:
    n = 200_000 if ctx.quick else 1_000_000
    messages = _messages(n)
    topic = ctx.unique("bench-sink-readings")
    _fill_topic(KafkaSettings(), topic, messages)
    baseline, direct_sum = _direct(ctx, messages, n)
    value, sink_sum = _sink(ctx, topic, n)
    if abs(sink_sum - direct_sum) > 1e-6 * abs(direct_sum):
        raise RuntimeError(f"sums differ: sink {sink_sum} vs direct {direct_sum}")
    ctx.notes.append(f"sink_throughput: {n} readings in {len(messages)} messages")
    return [Figure("sink_throughput", value, "rows/s", baseline, "direct clickhouse-connect")]


BENCHMARK = Benchmark(
    "sink_throughput",
    "rows/s of the Kafka -> ClickHouse sink end to end vs a direct bulk insert of the same rows",
    run,
)
