"""Aggregate readings/s of one and of two worker processes on the same pre-filled topic.

A 12-partition readings topic (uuid name) is filled once with seeded batches (the bridge's
shape: up to ``BATCH`` readings of devices hashing to the message's partition), ending with one
far-future reading per partition so every window closes. Each run starts ``n`` worker
processes with a fresh app id (consumer group, changelog) and its own indicators topic, and
reads the group's committed offsets from Kafka every 0.2 s.

Measured span: from the moment the group has formed (the workers' last logged assignments are
disjoint and cover every partition: the rebalances are over; the new owners' changelog
recovery is inside the span, as it is in any scale-out) until the committed offsets reach the
end of the topic. Readings/s =
readings of the messages committed within that span / its length. Commits happen every
second, so the span's ends are known to about a second; both runs carry the same bias, and
the sizes make a run last tens of seconds.

Value: 2 worker processes; baseline: 1 worker process; figure ``worker_scaling``
(ratio = 2 workers / 1 worker, at most about 2 on a 2-core machine). Correctness: each run
must emit exactly the expected number of distinct windows on its indicators topic.
"""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.kafka.partitioning import partition_for
from connectors.settings import KafkaSettings
from schemas.readings import SCHEMA, format_time
from streams.bench import BenchContext, Benchmark, Figure

log = logging.getLogger(__name__)

PARTITIONS = 12
BATCH = 50
STEP_S = 10
T0 = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
WAIT_S = 900.0  # bounds a broken run only
SETTLE_S = 5.0  # workers keep running this long after the last commit, before the check


def _reading(device: str, at: datetime, value: float) -> dict[str, Any]:
    return {
        "device_id": device,
        "device_kind": "air_quality",
        "district": "long-xuyen",
        "ward": "my-binh",
        "metric": "pm25",
        "value": value,
        "unit": "ug/m3",
        "event_time": format_time(at),
        "receive_time": format_time(at),
        "time_source": "device",
        "source": "bench",
    }


def _fill(kafka: KafkaSettings, topic: str, devices: int, steps: int) -> tuple[int, int, int]:
    """Produce the readings; return (messages, readings, windows expected to close)."""
    rng = random.Random(20261129)
    by_partition: dict[int, list[str]] = defaultdict(list)
    for i in range(devices):
        device = f"aq-bench-{i:05d}"
        by_partition[partition_for(device, PARTITIONS)].append(device)
    producer = KafkaProducer(**kafka.client_options(), acks="all", linger_ms=20)
    messages = readings = 0
    try:
        for p, devs in by_partition.items():
            pending: list[dict[str, Any]] = []
            for step in range(steps):
                at = T0 + timedelta(seconds=step * STEP_S)
                for device in devs:
                    pending.append(_reading(device, at, round(rng.uniform(5, 120), 2)))
                    if len(pending) == BATCH:
                        producer.send(
                            topic,
                            orjson.dumps({"schema": SCHEMA, "readings": pending}),
                            partition=p,
                        )
                        messages, readings, pending = messages + 1, readings + BATCH, []
            pending.append(_reading(devs[0], T0 + timedelta(days=1), 1.0))
            producer.send(topic, orjson.dumps({"schema": SCHEMA, "readings": pending}), partition=p)
            messages, readings = messages + 1, readings + len(pending)
        producer.flush()
    finally:
        producer.close()
    minutes = (steps * STEP_S + 59) // 60
    return messages, readings, devices * minutes


def _committed(admin: KafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    except KafkaError:  # the group's coordinator is not known yet: nothing committed
        return {}
    return {
        tp.partition: om.offset
        for tp, om in offsets.items()
        if tp.topic == topic and om.offset >= 0
    }


def _readings_before(prefix: list[list[int]], committed: dict[int, int]) -> int:
    """Readings in the messages before each partition's committed offset."""
    return sum(prefix[p][min(committed.get(p, 0), len(prefix[p]) - 1)] for p in range(PARTITIONS))


def _message_sizes(kafka: KafkaSettings, topic: str) -> list[list[int]]:
    """Per partition, cumulative reading counts by offset (prefix[p][o] = readings before o)."""
    consumer = KafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    end = consumer.end_offsets(tps)
    prefix: list[list[int]] = [[0] for _ in range(PARTITIONS)]
    try:
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    n = len(orjson.loads(r.value)["readings"])
                    prefix[tp.partition].append(prefix[tp.partition][-1] + n)
    finally:
        consumer.close()
    return prefix


def _distinct_keys(kafka: KafkaSettings, topic: str) -> int:
    consumer = KafkaConsumer(
        topic, **kafka.client_options(), auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    try:
        return len({m.key for m in consumer if m.key.startswith(b"reading_stats_1m|")})
    finally:
        consumer.close()


def _run(
    ctx: BenchContext, n: int, readings_topic: str, prefix: list[list[int]]
) -> tuple[float, str]:
    """Readings/s of ``n`` workers; returns it and the run's indicators topic."""
    kafka = KafkaSettings()
    app_id = ctx.unique(f"bench-scaling-{n}w")
    indicators = ctx.unique("bench-scaling-indicators")
    deadletter = ctx.unique("bench-scaling-deadletter")
    ensure_topics(
        kafka, [TopicSpec(indicators, PARTITIONS, 1), TopicSpec(deadletter, PARTITIONS, 1)]
    )
    env = {
        **os.environ,
        **ctx.env,
        "IOC_TOPIC_READINGS": readings_topic,
        "IOC_TOPIC_INDICATORS": indicators,
        "IOC_TOPIC_DEADLETTER": deadletter,
        "IOC_WORKER_APP_ID": app_id,
        "IOC_WORKER_GRACE_S": "5",
    }
    logs = [ctx.workdir / f"{app_id}-{i}.log" for i in range(n)]
    procs = []
    ends = {p: len(prefix[p]) - 1 for p in range(PARTITIONS)}
    total = _readings_before(prefix, ends)
    admin = KafkaAdminClient(**kafka.client_options(), client_id="bench-worker-scaling")
    try:
        for i, log in enumerate(logs):
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "streams.cli.main", "worker"],
                        env={**env, "IOC_WORKER_DATA_DIR": str(ctx.workdir / f"{app_id}-{i}")},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + WAIT_S
        started: float | None = None
        at_start = 0
        while True:
            for proc, log in zip(procs, logs, strict=True):
                if proc.poll() is not None:
                    tail = log.read_text()[-3000:]
                    raise RuntimeError(f"worker exited with {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not finish in {WAIT_S:.0f} s; see {logs}")
            committed = _committed(admin, app_id, readings_topic)
            if started is None and _group_formed(logs):
                started, at_start = time.monotonic(), _readings_before(prefix, committed)
            # per partition: idle-partition ticks may append to the topic after its end
            if started is not None and all(committed.get(p, 0) >= e for p, e in ends.items()):
                took = time.monotonic() - started
                time.sleep(SETTLE_S)  # outside the span: nothing may still be on its way
                break
            time.sleep(0.2)
    finally:
        admin.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
    if total - at_start < total // 2:
        raise RuntimeError(
            f"{n} worker(s) had committed {at_start:,} of {total:,} readings before the group "
            "formed: too little left to measure; use a larger size"
        )
    ctx.notes.append(
        f"{n} worker(s): {total - at_start:,} of {total:,} readings in {took:.1f} s after the "
        f"group formed"
    )
    return (total - at_start) / took, indicators


_ASSIGNED = re.compile(r"partitions of \S+ assigned: \[([0-9, ]*)\]")


def _ready(log: Path) -> set[int] | None:
    """Partitions of a worker's last logged assignment (None before the first one)."""
    matches = list(_ASSIGNED.finditer(log.read_text()))
    if not matches:
        return None
    return {int(p) for p in matches[-1].group(1).split(",") if p.strip()}


def _group_formed(logs: list[Path]) -> bool:
    """Every worker owns a disjoint share, together all partitions."""
    shares = [_ready(log) for log in logs]
    if any(s is None or not s for s in shares):
        return False
    owned = [p for s in shares if s for p in s]
    return len(owned) == PARTITIONS and set(owned) == set(range(PARTITIONS))


def run(ctx: BenchContext) -> list[Figure]:
    kafka = KafkaSettings()
    devices, steps = (1_200, 60) if ctx.quick else (2_400, 180)
    topic = ctx.unique("bench-scaling-readings")
    ensure_topics(kafka, [TopicSpec(topic, PARTITIONS, 1)])
    _, readings, windows = _fill(kafka, topic, devices, steps)
    prefix = _message_sizes(kafka, topic)
    if prefix[0][-1] == 0 or sum(p[-1] for p in prefix) != readings:
        raise RuntimeError("the readings topic does not hold what was produced")
    one, one_topic = _run(ctx, 1, topic, prefix)
    two, two_topic = _run(ctx, 2, topic, prefix)
    log.info("worker_scaling: 1 worker %.0f readings/s, 2 workers %.0f readings/s", one, two)
    for n, name in ((1, one_topic), (2, two_topic)):
        got = _distinct_keys(kafka, name)
        if got != windows:
            raise RuntimeError(
                f"{n} worker(s) emitted {got} distinct 1-minute windows on {name}, "
                f"expected {windows}"
            )
    return [Figure("worker_scaling", two, "readings/s", one, "1 worker process")]


BENCHMARK = Benchmark(
    "worker_scaling",
    "aggregate readings/s of 2 worker processes vs 1 on a pre-filled 12-partition topic",
    run,
)
