"""Readings/s through one ``iocstream worker`` process vs a raw aiokafka consumer.

Data: a fresh uuid-named topic of ``PARTITIONS`` partitions, pre-filled with reading batches as
the MQTT bridge packs them (``BATCH`` readings a message, every reading's device hashing to the
message's partition): ``DEVICES`` air-quality devices sending pm25 and pm10 every 2 s of event
time, in time order, so 1-minute windows close continuously (about 30 readings a window).

* (a) baseline: a raw aiokafka consumer in this process that reads the whole topic and decodes
  every batch with orjson (the practical limit of one Python process);
* (b) textbook baseline: the usual Faust approach — one reading per message (keyed by device,
  message timestamp = event time), a tumbling 1-minute windowed Faust table updated per event
  (count, sum, min, max, last, spread) — in a subprocess, on ``TEXTBOOK`` readings of the
  same shape (its rate does not depend on the count);
* (c) value: one worker subprocess (``streams.worker.run_worker``, all its windows: 1 min,
  1 h, hopping 5/15 min, local days, with emission of every closed window and checkpoints to
  the changelog) consuming the same topic with a fresh consumer group;
* (d) ceiling: the worker's own Faust app and consumer settings with an agent that only decodes
  every message (no windows, no output), on the same topic with a fresh group: what any Faust
  worker can reach here, so c/d is the share of it that the windows, emission and checkpoints
  leave.

The worker's rate is measured from its own counters (its INFO stats line every 0.2 s, with
the log's millisecond timestamps) between the first line that shows progress and the line
that shows every reading accepted, so Faust's start-up and rebalance are excluded. Checked:
the worker accepted every reading, dead-lettered none, and the closed 1-minute windows on
the output topic hold exactly the readings of the windows that closed.

Figures ``worker_throughput``: value = (c) readings/s, baseline = (a), ratio = c/a;
``worker_vs_textbook_faust``: value = (c), baseline = (b), ratio = c/b;
``worker_vs_faust_decode_only``: value = (c), baseline = (d), ratio = c/d.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from connectors.kafka.partitioning import partition_for
from schemas.readings import SCHEMA, format_time, parse_time
from streams.bench import BenchContext, Benchmark, Figure
from streams.bench.pipeline_procs import stop_process
from streams.windows import to_ms

PARTITIONS = 4
BATCH = 200
DEVICES = 1000
STEP_S = 2
METRICS = ("pm25", "pm10")
T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 600  # bounds a broken run only
STATS_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*(?:reading windows|textbook faust|decode-only "
    r"faust): (.*)$"
)
TEXTBOOK = 60_000
COUNTERS = ("accepted", "batches", "closed", "late", "malformed", "rejected")


def _batches(total: int) -> Iterator[tuple[int, bytes]]:
    """``(partition, message value)`` in time order, ``BATCH`` readings a message."""
    devices = [f"aq-bench-{i:04d}" for i in range(DEVICES)]
    by_partition: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for d in devices:
        by_partition[partition_for(d, PARTITIONS)].append(d)
    pending: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    made = 0
    step = 0
    while made < total:
        at = format_time(T0 + timedelta(seconds=step * STEP_S))
        for p, devs in by_partition.items():
            for d in devs:
                for m, metric in enumerate(METRICS):
                    if made >= total:
                        break
                    value = round(20 + (step * 7 + m * 13 + len(d)) % 60 + 0.25, 2)
                    pending[p].append(_reading(d, metric, value, at))
                    made += 1
                    if len(pending[p]) == BATCH:
                        yield p, _envelope(pending[p])
                        pending[p] = []
        step += 1
    for p, rest in pending.items():
        if rest:
            yield p, _envelope(rest)


def _reading(device: str, metric: str, value: float, at: str) -> bytes:
    return orjson.dumps(
        {
            "device_id": device,
            "device_kind": "air_quality",
            "district": "long-xuyen",
            "ward": "my-binh",
            "metric": metric,
            "value": value,
            "unit": "ug/m3",
            "event_time": at,
            "receive_time": at,
            "time_source": "device",
            "source": f"mqtt:ioc/long-xuyen/air_quality/{device}/telemetry",
        }
    )


def _envelope(readings: list[bytes]) -> bytes:
    head = orjson.dumps({"schema": SCHEMA})[:-1]
    return head + b',"readings":[' + b",".join(readings) + b"]}"


def _expected_closed(total: int, grace_s: float) -> tuple[int, int]:
    """Closed 1-minute windows and the readings in them, replaying the generator's times."""
    last_step = (total - 1) // (DEVICES * len(METRICS))
    watermark = T0 + timedelta(seconds=last_step * STEP_S)
    closed_minutes = [
        m
        for m in range(last_step * STEP_S // 60 + 1)
        if T0 + timedelta(minutes=m + 1, seconds=grace_s) <= watermark
    ]
    per_minute = DEVICES * len(METRICS) * (60 // STEP_S)
    return len(closed_minutes) * DEVICES * len(METRICS), len(closed_minutes) * per_minute


async def _fill(bootstrap: str, topic: str, total: int) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=1 << 20, linger_ms=5,
        max_request_size=8 << 20,
    )  # fmt: skip
    await producer.start()
    try:
        messages = 0
        futures = []
        for p, value in _batches(total):
            futures.append(await producer.send(topic, value, partition=p))
            messages += 1
        await asyncio.gather(*futures)
        return messages
    finally:
        await producer.stop()


async def _fill_single(bootstrap: str, topic: str, total: int) -> None:
    """One reading a message, keyed by device, timestamped with its event time."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        made = 0
        for _, value in _batches(total):
            for reading in orjson.loads(value)["readings"]:
                at = to_ms(parse_time(reading["event_time"]))
                futures.append(
                    await producer.send(
                        topic,
                        orjson.dumps(reading),
                        key=reading["device_id"].encode(),
                        timestamp_ms=at,
                    )
                )
                made += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def textbook_main() -> int:
    """(b) in its own process: the textbook Faust windowed-table app (env ``BENCH_*``)."""
    import faust

    _bench_logging()
    app = faust.App(
        os.environ["BENCH_APP_ID"],
        broker=f"kafka://{os.environ['IOC_KAFKA_BOOTSTRAP']}",
        store="memory://",
        datadir=os.environ["BENCH_DATA_DIR"],
        topic_partitions=PARTITIONS,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        value_serializer="json",
    )
    topic = app.topic(os.environ["BENCH_TOPIC"], key_type=bytes, value_serializer="json")
    table = (
        app.Table("stats", default=dict, partitions=PARTITIONS)
        .tumbling(60.0, expires=timedelta(minutes=5))
        .relative_to_stream()
    )
    done = {"n": 0, "batches": 0}

    @app.agent(topic)
    async def stats(stream: Any) -> None:
        async for r in stream:
            key = f"{r['device_id']}|{r['metric']}"
            cur = table[key].value()
            v = float(r["value"])
            n = cur.get("n", 0) + 1
            mean = cur.get("mean", 0.0)
            delta = v - mean
            mean += delta / n
            table[key] = {
                "n": n,
                "sum": cur.get("sum", 0.0) + v,
                "mean": mean,
                "m2": cur.get("m2", 0.0) + delta * (v - mean),
                "min": min(cur.get("min", v), v),
                "max": max(cur.get("max", v), v),
                "last": v,
            }
            done["n"] += 1
            done["batches"] += 1

    return _run_counting(app, "textbook faust", done)


def ceiling_main() -> int:
    """(d) in its own process: the worker's Faust app and consumer settings, with an agent
    that only decodes every message (env ``IOC_*`` as for the worker)."""
    from connectors.settings import KafkaSettings, TopicSettings
    from streams.agents.ticks import decode_message
    from streams.app import WorkerSettings, create_app

    _bench_logging()
    app = create_app(WorkerSettings(), KafkaSettings(), partitions=PARTITIONS)
    topic = app.topic(TopicSettings().readings, key_type=bytes, value_type=bytes)
    done = {"n": 0, "batches": 0}

    @app.agent(topic)
    async def decode_only(stream: Any) -> None:
        async for event in stream.events():
            readings, _ = decode_message(event.value)
            done["n"] += len(readings)
            done["batches"] += 1

    return _run_counting(app, "decode-only faust", done)


def _bench_logging() -> None:
    """INFO lines with millisecond timestamps (what :func:`_parse_stats` reads), quiet clients."""
    import logging

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for name in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run_counting(app: Any, label: str, done: dict[str, int]) -> int:
    """Run a baseline Faust app, logging ``done``'s counts every 0.2 s as the worker's stats
    line reads (``<label>: accepted=..., batches=...``); returns the exit code."""
    import logging

    import faust

    log = logging.getLogger("bench")

    async def report() -> None:
        zeros = "closed=0, late=0, malformed=0, rejected=0"
        log.info("%s: accepted=%d, batches=%d, %s", label, done["n"], done["batches"], zeros)

    app.timer(0.2)(report)
    worker = faust.Worker(
        app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False
    )
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


async def _raw(bootstrap: str, topic: str, messages: int, total: int) -> float:
    """(a): readings/s of a bare aiokafka consumer decoding every batch."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )  # fmt: skip
    await consumer.start()
    try:
        readings = seen = 0
        started: float | None = None
        while seen < messages:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batch:
                started = time.perf_counter()
            for records in batch.values():
                for record in records:
                    assert record.value is not None
                    readings += len(orjson.loads(record.value)["readings"])
                    seen += 1
        assert started is not None
        took = time.perf_counter() - started
    finally:
        await consumer.stop()
    if readings != total:
        raise RuntimeError(f"raw consumer decoded {readings} readings, expected {total}")
    return total / took


def _parse_stats(log: Path) -> list[tuple[float, int, list[int]]]:
    rows = []
    for line in log.read_text(errors="replace").splitlines():
        m = STATS_RE.match(line)
        if m:
            at = datetime.strptime(m.group(1) + "+0000", "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
            pairs = dict(item.split("=", 1) for item in m.group(2).split(", "))
            counts = [int(pairs[name]) for name in COUNTERS]
            rows.append((at, counts[0], counts))
    return rows


def _textbook(ctx: BenchContext, total: int) -> float:
    """(b): readings/s of the textbook Faust app on ``total`` single-reading messages."""
    bootstrap = ctx.env["IOC_KAFKA_BOOTSTRAP"]
    topic = ctx.unique("bench-single")
    _create_topics(bootstrap, [topic])
    asyncio.run(_fill_single(bootstrap, topic, total))
    env = {
        **os.environ,
        **ctx.env,
        "BENCH_APP_ID": ctx.unique("bench-textbook"),
        "BENCH_DATA_DIR": str(ctx.workdir / ctx.unique("textbook")),
        "BENCH_TOPIC": topic,
        "PYTHONPATH": str(REPO),
    }
    code = (
        "import sys; from streams.bench.worker_throughput import textbook_main as m; sys.exit(m())"
    )
    rate, _ = _measure(ctx, env, code, total)
    return rate


def _worker(ctx: BenchContext, topic: str, total: int, grace_s: float) -> tuple[float, str]:
    """(c): readings/s of one worker subprocess; returns the rate and its indicators topic."""
    indicators, deadletter = ctx.unique("bench-ind"), ctx.unique("bench-dl")
    _create_topics(ctx.env["IOC_KAFKA_BOOTSTRAP"], [indicators, deadletter])
    env = {
        **os.environ,
        **ctx.env,
        "IOC_TOPIC_READINGS": topic,
        "IOC_TOPIC_INDICATORS": indicators,
        "IOC_TOPIC_DEADLETTER": deadletter,
        "IOC_WORKER_APP_ID": ctx.unique("bench-worker"),
        "IOC_WORKER_DATA_DIR": str(ctx.workdir / ctx.unique("worker")),
        "IOC_WORKER_GRACE_S": str(grace_s),
        "IOC_WORKER_STATS_INTERVAL_S": "0.2",
        "IOC_WORKER_IDLE_TICK_S": "0",
        "PYTHONPATH": str(REPO),
    }
    code = "import sys; from streams.worker import run_worker; sys.exit(run_worker([]))"
    rate, _ = _measure(ctx, env, code, total)
    return rate, indicators


def _ceiling(ctx: BenchContext, topic: str, total: int) -> float:
    """(d): readings/s of the worker's Faust consumer that only decodes (fresh group)."""
    env = {
        **os.environ,
        **ctx.env,
        "IOC_TOPIC_READINGS": topic,
        "IOC_WORKER_APP_ID": ctx.unique("bench-ceiling"),
        "IOC_WORKER_DATA_DIR": str(ctx.workdir / ctx.unique("ceiling")),
        "PYTHONPATH": str(REPO),
    }
    code = (
        "import sys; from streams.bench.worker_throughput import ceiling_main as m; sys.exit(m())"
    )
    rate, _ = _measure(ctx, env, code, total)
    return rate


def _measure(ctx: BenchContext, env: dict[str, str], code: str, total: int) -> tuple[float, Path]:
    """Run ``code`` in a subprocess until its stats line shows ``total`` readings accepted;
    the rate between its first line with progress and that line (start-up excluded)."""
    log = ctx.workdir / f"{ctx.unique('proc')}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + WAIT_S
        rows = _parse_stats(log)
        while not rows or rows[-1][1] < total:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited {proc.returncode}: {log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not finish in {WAIT_S} s; log {log}")
            time.sleep(0.2)
            rows = _parse_stats(log)
    finally:
        stop_process(proc)
    first = next(r for r in rows if r[1] > 0)
    last = rows[-1]
    counts = last[2]
    if counts[0] != total or any(counts[3:]):
        raise RuntimeError(f"worker counters {counts}: expected {total} accepted, none rejected")
    if last[0] <= first[0]:
        raise RuntimeError("the run was too short to measure; raise the reading count")
    return (last[1] - first[1]) / (last[0] - first[0]), log


def _check_indicators(bootstrap: str, topic: str, windows: int, readings: int) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap.split(","), auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=5000,
    )  # fmt: skip
    counts: dict[bytes, int] = {}
    try:
        for message in consumer:
            record = orjson.loads(message.value)
            if record["indicator"] == "reading_stats_1m":
                counts[message.key] = record["count"]
    finally:
        consumer.close()
    if len(counts) != windows or sum(counts.values()) != readings:
        raise RuntimeError(
            f"1-minute windows on {topic}: {len(counts)} holding {sum(counts.values())} "
            f"readings, expected {windows} holding {readings}"
        )


def _create_topics(bootstrap: str, names: list[str]) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bench")
    try:
        admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        admin.close()


def run(ctx: BenchContext) -> list[Figure]:
    total = 200_000 if ctx.quick else 1_000_000
    grace_s = 5.0
    bootstrap = ctx.env["IOC_KAFKA_BOOTSTRAP"]
    topic = ctx.unique("bench-readings")
    _create_topics(bootstrap, [topic])
    messages = asyncio.run(_fill(bootstrap, topic, total))
    raw = asyncio.run(_raw(bootstrap, topic, messages, total))
    worker, indicators = _worker(ctx, topic, total, grace_s)
    ceiling = _ceiling(ctx, topic, total)
    windows, in_windows = _expected_closed(total, grace_s)
    _check_indicators(bootstrap, indicators, windows, in_windows)
    textbook = _textbook(ctx, TEXTBOOK // 4 if ctx.quick else TEXTBOOK)
    ctx.notes.append(
        f"worker_throughput: {total:,} readings in {messages:,} messages of <= {BATCH}, "
        f"{PARTITIONS} partitions, {DEVICES} devices x {len(METRICS)} metrics every {STEP_S} s"
    )
    return [
        Figure("worker_throughput", worker, "readings/s", raw, "raw aiokafka decode readings/s"),
        Figure(
            "worker_vs_textbook_faust",
            worker,
            "readings/s",
            textbook,
            "textbook Faust windowed table, one reading a message",
        ),
        Figure(
            "worker_vs_faust_decode_only",
            worker,
            "readings/s",
            ceiling,
            "the worker's Faust consumer decoding only, no windows",
        ),
    ]


BENCHMARK = Benchmark(
    "worker_throughput",
    "readings/s through one worker process (all windows, emission, checkpoints) vs a raw "
    "aiokafka consumer decoding the same topic",
    run,
)
