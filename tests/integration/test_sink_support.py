"""Shared helpers of the sink's integration tests (no tests here).

Builds a deterministic load for all five topics with its ground truth (row counts and value
sums per table, roll-ups included), produces it, runs a sink in a thread or a subprocess,
and reads the counts back from ClickHouse.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickhouse_connect.driver.client import Client
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from connectors.clickhouse.batch import Limits
from connectors.clickhouse.client import connect
from connectors.clickhouse.migrate import migrate
from connectors.clickhouse.rows import ROUTES, TopicRoute
from connectors.clickhouse.sink import ClickHouseSink, SinkConfig
from connectors.metrics import Metrics
from connectors.settings import ClickHouseSettings
from schemas.alerts import AlertEvent, AlertState, encode_event
from schemas.deadletter import DeadLetter
from schemas.events import APPLICATION_RESOLVED, Event
from schemas.indicator_values import IndicatorValue, encode_value
from schemas.indicators import WindowResult, encode_indicator
from schemas.readings import Reading, encode_batch

PARTITIONS = 4
BASE = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
KINDS = ("readings", "indicators", "alerts", "events", "deadletter")


@dataclass
class Load:
    """Messages per topic kind and what ClickHouse must hold after sinking them all."""

    messages: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)


def build_load(reading_batches: int, per_batch: int, extras: int = 20, poison: bool = True) -> Load:
    """A deterministic load; ``expected`` holds every figure :func:`figures` reads."""
    load = Load({k: [] for k in KINDS})
    total = 0.0
    for b in range(reading_batches):
        readings = []
        for i in range(per_batch):
            n = b * per_batch + i
            at = BASE + timedelta(seconds=n % 7200)
            readings.append(
                Reading(f"d-{n % 16:02d}", "air_quality", f"district-{n % 3}", "pm25",
                        float(n % 100), "ug/m3", at, at, "device", "test", "w")
            )  # fmt: skip
            total += n % 100
        load.messages["readings"].append((f"b{b}".encode(), encode_batch(readings)))
    windows = values = 0
    for i in range(extras):
        start = BASE + timedelta(minutes=i)
        w = WindowResult("reading_stats_1m", f"d-{i % 4:02d}", "air_quality", "district-0", "w",
                         "pm25", "ug/m3", start, start + timedelta(minutes=1), 2, 10.0, 9.0,
                         11.0, 10.0, 1.0)  # fmt: skip
        load.messages["indicators"].append((w.key.encode(), encode_indicator(w)))
        windows += 1
        v = IndicatorValue("vn_aqi_1h", "district", f"district-{i % 3}", f"district-{i % 3}",
                           BASE + timedelta(hours=i), BASE + timedelta(hours=i + 1), 40.0 + i,
                           "good", {"pm25": 40.0 + i}, {"dominant": "pm25"})  # fmt: skip
        load.messages["indicators"].append((v.key.encode(), encode_value(v)))
        values += 1
        state = AlertState(f"fp-{i % 5}", "rule", {"device": "d"}, "firing", "major", 1.0 + i,
                           episode=1, revision=i + 1, fired_at=start)  # fmt: skip
        event = AlertEvent(f"fp-{i % 5}", "rule", f"fp-{i % 5}:1", i + 1, "firing", start,
                           "system", True, "pending", "firing", None, "major", state)  # fmt: skip
        load.messages["alerts"].append((event.fingerprint.encode(), encode_event(event)))
        data = {
            "application_id": f"HS-{i}",
            "agency": f"agency-{i % 2}",
            "due_at": "2026-11-29T00:00:00.000Z",
            "resolved_at": "2026-11-28T01:00:00.000Z",
        }
        ev = Event(f"id-{i}", "/test", APPLICATION_RESOLVED, f"HS-{i}", start, data, start)
        load.messages["events"].append((ev.key, ev.encode()))
        dl = DeadLetter("malformed_json", "test", "mqtt:x", f"s-{i}", start, b"{oops")
        load.messages["deadletter"].append((f"s-{i}".encode(), dl.encode()))
    poisons = 0
    if poison:
        load.messages["readings"].append((b"p1", b'{"schema": "ioc.readings/v1", "readings": [1]}'))
        load.messages["indicators"].append((b"p2", b"not json at all"))
        poisons = 2
    load.expected = {
        "readings": reading_batches * per_batch,
        "readings_sum": total,
        "latest_readings": reading_batches * per_batch,
        "indicator_windows": windows,
        "rollup_1h_windows": windows,
        "rollup_1d_windows": windows,
        "rollup_1h_count": windows * 2,
        "indicator_values": values,
        "alert_events": extras,
        "alerts_latest": min(extras, 5),
        "events": extras,
        "dead_letters": extras + poisons,
        "poison_rows": poisons,
    }
    return load


def figures(client: Client) -> dict[str, float]:
    """Every figure of ``Load.expected`` as ClickHouse has it now (no FINAL on raw counts)."""
    q = {
        "readings": "SELECT count() FROM readings",
        "readings_sum": "SELECT sum(value) FROM readings",
        "latest_readings": "SELECT sum(readings) FROM latest_readings",
        "indicator_windows": "SELECT count() FROM indicator_windows",
        "rollup_1h_windows": "SELECT sum(windows) FROM indicator_windows_1h",
        "rollup_1d_windows": "SELECT sum(windows) FROM indicator_windows_1d",
        "rollup_1h_count": "SELECT sum(count) FROM indicator_windows_1h",
        "indicator_values": "SELECT count() FROM indicator_values",
        "alert_events": "SELECT count() FROM alert_events",
        "alerts_latest": "SELECT count() FROM alerts_latest FINAL",
        "events": "SELECT count() FROM events",
        "dead_letters": "SELECT count() FROM dead_letters",
        "poison_rows": "SELECT count() FROM dead_letters WHERE reason = 'poison_row'",
    }
    return {k: float(client.query(sql).result_rows[0][0] or 0) for k, sql in q.items()}


@dataclass(frozen=True)
class Topics:
    """uuid-named topics, one per record kind."""

    names: dict[str, str]

    @classmethod
    def create(cls, bootstrap: str, unique: str) -> Topics:
        names = {k: f"test-sink-{k}-{unique}" for k in KINDS}
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-sink")
        try:
            admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names.values()])
        finally:
            admin.close()
        return cls(names)

    def routes(self) -> dict[str, TopicRoute]:
        return {name: ROUTES[kind] for kind, name in self.names.items()}

    def env(self) -> dict[str, str]:
        """``IOC_TOPIC_*`` variables naming these topics (for a sink subprocess)."""
        return {f"IOC_TOPIC_{k.upper()}": v for k, v in self.names.items()}

    def delete(self, bootstrap: str) -> None:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-sink")
        try:
            admin.delete_topics(list(self.names.values()))
        finally:
            admin.close()


def produce(bootstrap: str, topics: Topics, load: Load, kinds: tuple[str, ...] = KINDS) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5)
    try:
        for kind in kinds:
            for key, value in load.messages[kind]:
                producer.send(topics.names[kind], key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def fresh_database(url: str, name: str) -> Client:
    """Migrate database ``name`` at ``url`` and return a client on it."""
    settings = ClickHouseSettings(url=url, database=name)
    migrate(connect(settings, database=None), name)
    return connect(settings)


def consumer_factory(bootstrap: str, group: str) -> Callable[[], KafkaConsumer]:
    def make() -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="test-sink",
        )

    return make


@contextmanager
def sink_thread(
    bootstrap: str,
    client: Client,
    topics: Topics,
    group: str,
    limits: Limits | None = None,
    metrics: Metrics | None = None,
    decode: str = "server",
) -> Iterator[ClickHouseSink]:
    """Run a sink in a thread for the ``with`` block; stops and joins it at the end."""
    config = SinkConfig(
        group_id=group, limits=limits or Limits(5_000, 1 << 24, 0.3), poll_ms=100,
        backoff_initial_s=0.2, backoff_max_s=2.0, decode=decode,
    )  # fmt: skip
    sink = ClickHouseSink(
        consumer_factory(bootstrap, group), client, topics.routes(), config, metrics
    )
    errors: list[BaseException] = []

    def target() -> None:
        try:
            sink.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=target, name="test-sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.stop.set()
        thread.join(timeout=60)
        client.close()
    assert not thread.is_alive(), "sink thread did not stop"
    assert not errors, f"sink failed: {errors[0]!r}"


def wait_for(
    what: str, read: Callable[[], dict[str, float]], want: dict[str, float], timeout: float
) -> dict[str, float]:
    """Poll ``read()`` until it equals ``want``; returns the last reading (for the assert)."""
    deadline = time.monotonic() + timeout
    got: dict[str, float] = {}
    last_error: list[BaseException] = []
    while time.monotonic() < deadline:
        try:
            got = read()
        except Exception as exc:  # noqa: BLE001 - ClickHouse may be restarting
            got = {"error": float("nan")}
            last_error.append(exc)
        if got == want:
            return got
        time.sleep(0.5)
    if last_error:
        logging.getLogger(__name__).warning("%s: last error %r", what, last_error[-1])
    return got


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class OwnClickHouse:
    """A chserver process of this test (never the shared stack's), on its own port and dir."""

    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.data_dir, self.port, self.log = data_dir, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "connectors.chserver", "--data-dir", str(self.data_dir),
                "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        raise AssertionError(f"chserver did not start: {self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


def sink_process(
    topics: Topics, database: str, group: str, log: Path, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``iocstream sink`` as a subprocess on ``topics`` and ``database``."""
    env = {**os.environ, **topics.env(), "IOC_CLICKHOUSE_DATABASE": database, **(extra or {})}
    argv = [sys.executable, "-m", "streams.cli.main", "sink", "--group", group,
            "--metrics-port", "0", "--max-rows", "2000", "--max-age", "0.3"]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def group_caught_up(bootstrap: str, group: str, topics: Topics) -> bool:
    """Whether ``group`` has committed the end offset of every non-empty partition."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-sink")
    probe = KafkaConsumer(bootstrap_servers=bootstrap.split(","), client_id="test-sink-probe")
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
        tps = [
            tp
            for name in topics.names.values()
            for tp in (TopicPartition(name, p) for p in range(PARTITIONS))
        ]
        ends = probe.end_offsets(tps)
    finally:
        probe.close()
        admin.close()
    return all(
        ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp]) for tp in tps
    )
