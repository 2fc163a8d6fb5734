"""End to end on real services: simulator -> Mosquitto -> bridge -> Kafka -> worker -> Kafka
-> sink -> ClickHouse, compared with windows the test computes itself from the same seeded
readings. A malformed payload in the same run lands in the dead-letter topic with its reason,
and the pipeline keeps going.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer

from connectors.clickhouse.client import connect
from connectors.clickhouse.migrate import migrate
from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.settings import ClickHouseSettings, KafkaSettings
from connectors.simulator.model import default_devices, generate

pytestmark = pytest.mark.integration

DEVICES = 6
PER_DEVICE = 30
INTERVAL_S = 10
GRACE_S = 5
SEED = 20261128
METRICS = ("pm25", "pm10", "temperature", "humidity")


@pytest.fixture
def pipeline_env(stack: dict[str, str], unique: str, tmp_path: Path) -> dict[str, str]:
    """Unique topics, ClickHouse database, consumer groups and client ids for this test."""
    env = {
        **os.environ,
        "IOC_TOPIC_READINGS": f"e2e-readings-{unique}",
        "IOC_TOPIC_INDICATORS": f"e2e-indicators-{unique}",
        "IOC_TOPIC_DEADLETTER": f"e2e-deadletter-{unique}",
        "IOC_TOPIC_EVENTS": f"e2e-events-{unique}",
        "IOC_TOPIC_ALERTS": f"e2e-alerts-{unique}",
        "IOC_TOPIC_ALERT_ACTIONS": f"e2e-alert-actions-{unique}",
        "IOC_CLICKHOUSE_DATABASE": f"e2e_{unique}",
        "IOC_MQTT_CLIENT_ID": f"bridge-{unique}",
        "IOC_WORKER_APP_ID": f"worker-{unique}",
        "IOC_WORKER_GRACE_S": str(GRACE_S),
        # No idle ticks: only the readings themselves close windows, so the set is exact.
        "IOC_WORKER_IDLE_TICK_S": "0",
        "IOC_WORKER_DATA_DIR": str(tmp_path / "worker"),
    }
    partitions = int(env.get("IOC_TOPIC_PARTITIONS", "4"))
    ensure_topics(
        KafkaSettings(),
        [
            TopicSpec(env[k], partitions, 1)
            for k in env
            if k.startswith("IOC_TOPIC_") and k != "IOC_TOPIC_PARTITIONS"
        ],
    )
    ch = ClickHouseSettings(database=env["IOC_CLICKHOUSE_DATABASE"])
    migrate(connect(ch, database=None), ch.database)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int) -> dict[str, float]:
    """The samples of a process's Prometheus ``/metrics``, by name with labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    with (logs / f"{name}.log").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli.main", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _expected(start: datetime) -> dict[tuple[str, str, datetime], tuple[int, float, float, float]]:
    """(device, metric, window start) -> (count, mean, min, max) for every window that closes."""
    values: dict[tuple[str, str, datetime], list[float]] = defaultdict(list)
    last = start
    sim = generate(default_devices(DEVICES), start, timedelta(seconds=INTERVAL_S), PER_DEVICE, SEED)
    for reading in sim:
        last = max(last, reading.event_time)
        minute = reading.event_time.replace(second=0, microsecond=0)
        for metric, value in reading.values.items():
            values[(reading.device_id, metric, minute)].append(value)
    closed = last - timedelta(seconds=GRACE_S)
    return {
        key: (len(v), sum(v) / len(v), min(v), max(v))
        for key, v in values.items()
        if key[2] + timedelta(minutes=1) <= closed
    }


def test_simulated_readings_become_exact_windows_in_clickhouse(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    env = pipeline_env
    start = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    expected = _expected(start)
    assert len(expected) == DEVICES * len(METRICS) * 4  # windows of minutes 0-3 close

    metrics_port, bridge_port, sink_port = _free_port(), _free_port(), _free_port()
    procs = [
        _spawn("bridge", ["bridge", "--metrics-port", str(bridge_port)], env, tmp_path),
        _spawn("worker", ["worker", "--metrics-port", str(metrics_port)], env, tmp_path),
        _spawn(
            "sink", ["sink", "--max-age", "0.5", "--metrics-port", str(sink_port)], env, tmp_path
        ),
    ]
    try:
        time.sleep(3)  # let the bridge subscribe before publishing
        sim = subprocess.run(
            [
                sys.executable,
                "-m",
                "streams.cli.main",
                "simulate",
                "--devices",
                str(DEVICES),
                "--count",
                str(PER_DEVICE),
                "--interval",
                str(INTERVAL_S),
                "--start",
                start.isoformat(),
                "--seed",
                str(SEED),
                "--rate",
                "400",
                "--malformed",
                "1",
                # No retained online/offline: the shared broker must not keep state that
                # later tests' bridges would receive.
                "--no-status",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert sim.returncode == 0, sim.stderr

        client = connect(ClickHouseSettings(database=env["IOC_CLICKHOUSE_DATABASE"]))
        deadline = time.monotonic() + 180
        rows: list[tuple[object, ...]] = []
        while time.monotonic() < deadline:
            for p in procs:
                assert p.poll() is None, f"{p.args} exited; see logs in {tmp_path}"
            rows = client.query(
                "SELECT device_id, metric, window_start, count, mean, min, max "
                "FROM indicator_windows FINAL WHERE indicator = 'reading_stats_1m'"
            ).result_rows
            if len(rows) >= len(expected):
                break
            time.sleep(1)
        got = {
            (r[0], r[1], r[2].replace(tzinfo=UTC) if r[2].tzinfo is None else r[2]): r[3:]
            for r in rows
        }
        assert set(got) == set(expected), f"windows differ; logs in {tmp_path}"
        for key, (count, mean, lo, hi) in expected.items():
            g_count, g_mean, g_min, g_max = got[key]
            assert g_count == count, key
            assert math.isclose(g_mean, mean, rel_tol=1e-9, abs_tol=1e-9), key
            assert (g_min, g_max) == (lo, hi), key

        readings = client.query("SELECT count() FROM readings").result_rows[0][0]
        assert readings == DEVICES * PER_DEVICE * len(METRICS)
        scraped = _scrape(metrics_port)
        assert scraped["iocstream_worker_readings_total"] == readings
        assert scraped["iocstream_worker_windows_closed_total"] >= len(expected)
        readings_topic = env["IOC_TOPIC_READINGS"]
        lag = f'iocstream_consumer_lag_records{{component="sink",topic="{readings_topic}"}}'
        deadline = time.monotonic() + 30  # the gauge is refreshed every few seconds
        while _scrape(sink_port).get(lag) != 0.0 and time.monotonic() < deadline:
            time.sleep(1)
        assert _scrape(sink_port)[lag] == 0.0
        worker_lag = (
            f'iocstream_consumer_lag_records{{component="worker",topic="{readings_topic}"}}'
        )
        while _scrape(metrics_port).get(worker_lag) != 0.0 and time.monotonic() < deadline:
            time.sleep(1)
        assert _scrape(metrics_port)[worker_lag] == 0.0
        bridge = _scrape(bridge_port)
        districts = {d.district for d in default_devices(DEVICES)}
        assert sum(
            bridge[f'iocstream_district_readings_total{{district="{d}"}}'] for d in districts
        ) == DEVICES * PER_DEVICE * len(METRICS)

        consumer = KafkaConsumer(
            env["IOC_TOPIC_DEADLETTER"],
            **KafkaSettings().client_options(),
            auto_offset_reset="earliest",
            consumer_timeout_ms=10_000,
        )
        letters = [orjson.loads(m.value) for m in consumer]
        consumer.close()
        assert [d["reason"] for d in letters] == ["malformed_json"]
        assert letters[0]["source"].startswith("mqtt:ioc/long-xuyen/")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
