"""The sink under faults: ClickHouse gone for 30 s under load, and the sink SIGKILLed in the
middle of a large load. After recovery ClickHouse holds exactly the ground truth (counts and
sums, roll-ups included): nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from connectors.clickhouse.batch import Limits
from connectors.clickhouse.client import connect
from connectors.metrics import Metrics
from connectors.settings import ClickHouseSettings
from tests.integration.test_sink_support import (
    OwnClickHouse,
    Topics,
    build_load,
    figures,
    free_port,
    fresh_database,
    produce,
    sink_process,
    sink_thread,
    wait_for,
)

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0
# a SIGKILLed member holds its partitions until its session times out (broker minimum 6 s)
FAST_FAILOVER = {"IOC_SINK_SESSION_TIMEOUT_MS": "6000"}


def test_clickhouse_outage_under_load_loses_and_doubles_nothing(
    unique: str, tmp_path: Path
) -> None:
    bootstrap = os.environ["IOC_KAFKA_BOOTSTRAP"]
    server = OwnClickHouse(tmp_path / "ch", free_port(), tmp_path / "chserver.log")
    server.start()
    topics = Topics.create(bootstrap, unique)
    load = build_load(reading_batches=200, per_batch=50)
    first_half = {k: v[: len(v) // 2] for k, v in load.messages.items()}
    second_half = {k: v[len(v) // 2 :] for k, v in load.messages.items()}
    try:
        database = f"outage_{unique}"
        client = fresh_database(server.url, database)
        metrics = Metrics(CollectorRegistry())
        limits = Limits(500, 1 << 24, 0.2)
        with sink_thread(bootstrap, client, topics, f"g-{unique}", limits, metrics):
            load.messages = first_half
            produce(bootstrap, topics, load)
            reader = connect(ClickHouseSettings(url=server.url, database=database))
            wait_for("first rows", lambda: {"some": float(figures(reader)["readings"] > 0)},
                     {"some": 1.0}, 30)  # fmt: skip
            reader.close()
            server.stop()  # nothing listens on the port now
            load.messages = second_half
            outage_ends = time.monotonic() + OUTAGE_S
            produce(bootstrap, topics, load)  # the load goes on during the outage
            time.sleep(max(0.0, outage_ends - time.monotonic()))
            server.start()
            reader = connect(ClickHouseSettings(url=server.url, database=database))
            got = wait_for("recovery", lambda: figures(reader), load.expected, 40)
            time.sleep(1.0)  # one more round of batches must not add anything
            after = figures(reader)
            reader.close()
        assert got == load.expected
        assert after == load.expected
        assert metrics.sink_pauses._value.get() >= 1
        retries = sum(
            s.value
            for m in metrics.sink_retries.collect()
            for s in m.samples
            if s.name.endswith("_total")
        )
        assert retries >= 1
        assert metrics.sink_paused._value.get() == 0
    finally:
        server.stop()
        topics.delete(bootstrap)


def test_sigkill_mid_load_then_restart_gives_exact_counts(unique: str, tmp_path: Path) -> None:
    bootstrap = os.environ["IOC_KAFKA_BOOTSTRAP"]
    url = os.environ["IOC_CLICKHOUSE_URL"]
    database = f"kill_{unique}"
    topics = Topics.create(bootstrap, unique)
    load = build_load(reading_batches=1000, per_batch=200)  # 200,000 readings
    group = f"g-{unique}"
    log = tmp_path / "sink.log"
    try:
        produce(bootstrap, topics, load)
        reader = fresh_database(url, database)
        kills = 0
        for _ in range(2):  # kill it twice, each time while rows are still arriving
            proc = sink_process(topics, database, group, log, FAST_FAILOVER)
            try:
                kills += _kill_mid_load(proc, reader, load.expected["readings"])
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=30)
        assert kills >= 1, "the load finished before the sink could be killed"
        proc = sink_process(topics, database, group, log, FAST_FAILOVER)
        try:
            got = wait_for("restart", lambda: figures(reader), load.expected, 45)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        reader.close()
        assert got == load.expected, log.read_text(errors="replace")[-3000:]
    finally:
        topics.delete(bootstrap)


def _kill_mid_load(proc: subprocess.Popen[bytes], reader: Client, total: float) -> int:
    """SIGKILL ``proc`` as soon as it has written more rows but not all; 1 if it did."""
    before = figures(reader)["readings"]
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and proc.poll() is None:
        now = reader.query("SELECT count() FROM readings").result_rows[0][0]
        if before < now < total:
            proc.send_signal(signal.SIGKILL)
            return 1
        if now >= total:
            return 0
        time.sleep(0.02)
    return 0
