"""The stream worker against a real Kafka broker (``IOC_KAFKA_BOOTSTRAP``), as a subprocess.

A seeded set of reading batches (3 partitions, 3 devices each, 2 metrics, ten minutes of
event time, jitter, stragglers within and beyond the grace period, one malformed message, and
a final batch far in the future on every partition, which closes all earlier windows). The
test computes the expected windows itself with a small independent model of the rules. Each
test uses its own topics, app id (consumer group, changelog topic) and data directory:

* an uninterrupted worker, started on the whole backlog, must emit exactly those windows,
  once each (counts exact, statistics to float tolerance), and dead-letter exactly the late
  readings and the malformed message;
* a worker fed live, SIGKILLed as soon as its first window appears and restarted after the
  rest has been produced, must end with the same key -> values (identical duplicates
  allowed), having restored its table from the changelog and replayed input it had already
  applied (its commit interval is made long, so it committed nothing before the kill).

Needs a real broker at ``IOC_KAFKA_BOOTSTRAP``; fails (does not skip) when it is unreachable.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from connectors.kafka.partitioning import partition_for
from schemas.deadletter import DeadLetter
from schemas.indicator_values import SCHEMA as VALUES_SCHEMA
from schemas.indicator_values import IndicatorValue, decode_value
from schemas.indicators import WindowResult, decode_indicator, indicator_key
from schemas.readings import SCHEMA, format_time
from streams.aqi import daily_aqi

pytestmark = pytest.mark.integration

PARTITIONS = 3
DEVICES_PER_PARTITION = 3
METRICS = ("pm25", "pm10")
MINUTES = 10
STEP_S = 2
GRACE_S = 5
SEED = 20261128
T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 180  # only bounds a failing test; nothing is asserted about speed
ICT = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh: UTC+7 all year


@dataclass(frozen=True)
class Dataset:
    """Input messages per partition (in order) and the expected outputs."""

    messages: dict[int, list[bytes]]
    expected: dict[str, dict[str, Any]]  # indicator key -> expected record fields
    late: set[bytes]  # payloads of the readings that must be dead-lettered as late


def _bootstrap() -> str:
    bootstrap = os.environ.get("IOC_KAFKA_BOOTSTRAP", "")
    if not bootstrap:
        pytest.fail("IOC_KAFKA_BOOTSTRAP is not set: these tests need a real Kafka broker")
    return bootstrap


@pytest.fixture(scope="module")
def kafka_bootstrap(stack: dict[str, str]) -> str:
    """The broker from IOC_KAFKA_BOOTSTRAP (set by the ``stack`` fixture); fails (never skips)
    when it is unreachable."""
    bootstrap = _bootstrap()
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        pytest.fail(f"Kafka at IOC_KAFKA_BOOTSTRAP={bootstrap} is unreachable: {exc}")
    return bootstrap


def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="test-worker")
    try:
        admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        admin.close()


def _devices() -> dict[int, list[str]]:
    """Device ids grouped by the partition they hash to (Kafka's default partitioner)."""
    by_partition: dict[int, list[str]] = defaultdict(list)
    i = 0
    while any(len(by_partition[p]) < DEVICES_PER_PARTITION + 1 for p in range(PARTITIONS)):
        device = f"aq-test-{i:03d}"
        by_partition[partition_for(device, PARTITIONS)].append(device)
        i += 1
    return {p: devs[: DEVICES_PER_PARTITION + 1] for p, devs in by_partition.items()}


def _reading(device: str, metric: str, at: datetime, value: float) -> dict[str, Any]:
    return {
        "device_id": device,
        "device_kind": "air_quality",
        "district": "long-xuyen",
        "ward": f"ward-{device[-1]}",
        "metric": metric,
        "value": value,
        "unit": "ug/m3",
        "event_time": format_time(at),
        "receive_time": format_time(at),
        "time_source": "device",
        "source": "test",
    }


def _windows_of(at: datetime) -> list[tuple[str, datetime, datetime]]:
    """Every window holding a reading at ``at``, by direct date arithmetic: the 1-minute,
    1-hour, hopping 5 min / 1 min and 15 min / 5 min, and local (UTC+7) calendar-day windows."""
    minute = at.replace(second=0, microsecond=0)
    out = [
        ("reading_stats_1m", minute, minute + timedelta(minutes=1)),
        (
            "reading_stats_1h",
            minute.replace(minute=0),
            minute.replace(minute=0) + timedelta(hours=1),
        ),
    ]
    for size, hop, name in ((5, 1, "reading_stats_5m_hop1m"), (15, 5, "reading_stats_15m_hop5m")):
        start = minute.replace(minute=minute.minute - minute.minute % hop)
        while start + timedelta(minutes=size) > at:
            out.append((name, start, start + timedelta(minutes=size)))
            start -= timedelta(minutes=hop)
    local = at.astimezone(ICT)
    day = datetime(local.year, local.month, local.day, tzinfo=ICT).astimezone(UTC)
    out.append(("reading_stats_1d", day, day + timedelta(days=1)))
    return out


def _model(
    per_partition: dict[int, list[list[dict[str, Any]]]],
) -> tuple[dict[str, dict[str, Any]], set[bytes]]:
    """Expected closed windows and late readings: an independent model of DESIGN.md's rules
    (per partition, in order: a reading is late when the greatest event time seen before it
    is >= its 1-minute window's end + grace; a window is closed when that watermark reaches
    its end + grace).
    """
    expected: dict[str, dict[str, Any]] = {}
    late: set[bytes] = set()
    grace = timedelta(seconds=GRACE_S)
    for batches in per_partition.values():
        watermark: datetime | None = None
        windows: dict[
            tuple[str, str, str, datetime, datetime], list[tuple[datetime, float, dict[str, Any]]]
        ] = {}
        for batch in batches:
            for r in batch:
                at = datetime.fromisoformat(r["event_time"])
                start = at.replace(second=0, microsecond=0)
                if watermark is not None and watermark >= start + timedelta(minutes=1) + grace:
                    late.add(orjson.dumps(r))
                    continue
                watermark = at if watermark is None else max(watermark, at)
                for name, w_start, w_end in _windows_of(at):
                    windows.setdefault(
                        (name, r["device_id"], r["metric"], w_start, w_end), []
                    ).append((at, r["value"], r))
        assert watermark is not None
        for (name, device, metric, start, end), items in windows.items():
            if watermark < end + grace:
                continue
            values = [v for _, v, _ in items]
            newest = max(at for at, _, _ in items)
            first = items[0][2]
            expected[indicator_key(name, device, metric, start)] = {
                "count": len(values),
                "mean": statistics.fmean(values),
                "min": min(values),
                "max": max(values),
                "last": [v for at, v, _ in items if at == newest][-1],
                "stddev": statistics.pstdev(values),
                "ward": first["ward"],
                "unit": first["unit"],
                "window_end": end,
            }
    return expected, late


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """The seeded input and what the worker must make of it."""
    rng = random.Random(SEED)
    devices = _devices()
    per_partition: dict[int, list[list[dict[str, Any]]]] = {}
    for p in range(PARTITIONS):
        stream: list[dict[str, Any]] = []
        for step in range(MINUTES * 60 // STEP_S):
            for device in devices[p][:DEVICES_PER_PARTITION]:
                for metric in METRICS:
                    at = T0 + timedelta(seconds=step * STEP_S + rng.uniform(-1.5, 1.5))
                    if rng.random() < 0.03:  # a straggler: within grace or late
                        at -= timedelta(seconds=rng.uniform(3, 40))
                    at = max(at, T0)
                    stream.append(_reading(device, metric, at, round(rng.uniform(5, 80), 2)))
        batches = []
        while stream:
            n = rng.randint(1, 6)
            batches.append(stream[:n])
            stream = stream[n:]
        # far in the future: every window of the run above closes on this partition
        batches.append([_reading(devices[p][-1], "pm25", T0 + timedelta(days=1), 1.0)])
        per_partition[p] = batches
    expected, late = _model(per_partition)
    per_series = Counter(key.split("|")[0] for key in expected)
    series = PARTITIONS * DEVICES_PER_PARTITION * len(METRICS)
    # 10 minutes from 08:00Z: 10 one-minute, one 1-hour, 14 5-min (hop 1), 4 15-min (hop 5)
    # windows and one local day (2026-11-28 in UTC+7) per device and metric
    assert per_series == {
        "reading_stats_1m": series * MINUTES,
        "reading_stats_1h": series,
        "reading_stats_5m_hop1m": series * 14,
        "reading_stats_15m_hop5m": series * 4,
        "reading_stats_1d": series,
    }, per_series
    assert late, "the seeded data must contain late readings"

    messages = {
        p: [orjson.dumps({"schema": SCHEMA, "readings": b}) for b in batches]
        for p, batches in per_partition.items()
    }
    messages[0].insert(len(messages[0]) // 2, b"this is not a batch")
    return Dataset(messages, expected, late)


def _produce(
    bootstrap: str,
    topic: str,
    messages: dict[int, list[bytes]],
    part: slice,
    pace_s: float = 0.0,
) -> None:
    """Produce ``part`` of every partition's messages, in order, and wait for the acks;
    with ``pace_s``, partitions take turns one message at a time, ``pace_s`` apart."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","), acks="all", max_in_flight_requests_per_connection=1
    )
    parts = {p: values[part] for p, values in messages.items()}
    for i in range(max(len(v) for v in parts.values())):
        for p, values in parts.items():
            if i < len(values):
                producer.send(topic, values[i], partition=p)
        if pace_s:
            producer.flush()
            time.sleep(pace_s)
    producer.flush()
    producer.close()


class Worker:
    """One worker subprocess with its own app id, output topics and data dir."""

    def __init__(self, bootstrap: str, tmp: Path, **extra_env: str) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.readings = f"test-worker-readings-{suffix}"
        self.indicators = f"test-worker-indicators-{suffix}"
        self.deadletter = f"test-worker-deadletter-{suffix}"
        _create_topics(bootstrap, [self.readings, self.indicators, self.deadletter])
        self.env = {
            **os.environ,
            "IOC_KAFKA_BOOTSTRAP": bootstrap,
            "IOC_TOPIC_READINGS": self.readings,
            "IOC_TOPIC_INDICATORS": self.indicators,
            "IOC_TOPIC_DEADLETTER": self.deadletter,
            "IOC_WORKER_APP_ID": f"test-worker-{suffix}",
            "IOC_WORKER_GRACE_S": str(GRACE_S),
            "IOC_WORKER_DATA_DIR": str(tmp / f"worker-{suffix}"),
            "IOC_WORKER_SESSION_TIMEOUT_S": "10",
            "IOC_WORKER_IDLE_TICK_S": "0",  # the equality tests need no wall-clock ticks
            "PYTHONPATH": str(REPO),
            **extra_env,
        }
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.bootstrap = bootstrap

    @property
    def log(self) -> Path:
        return self.tmp / f"{self.env['IOC_WORKER_APP_ID']}-{self.runs}.log"

    def start(self) -> None:
        self.runs += 1
        code = "import sys; from streams.worker import run_worker; sys.exit(run_worker([]))"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_for_log(self, text: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while text not in self.log.read_text():
            self.assert_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"worker never logged {text!r}; log {self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(
                f"worker exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}"
            )


class Collector:
    """Reads a topic from the beginning, accumulating every message."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap.split(","),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.messages: list[tuple[bytes, bytes]] = []

    def poll(self) -> list[tuple[bytes, bytes]]:
        """Everything read so far, after one short fetch of what is new."""
        for records in self.consumer.poll(timeout_ms=200).values():
            self.messages += [(m.key, m.value) for m in records]
        return self.messages

    def drain(self) -> list[tuple[bytes, bytes]]:
        """Everything up to the topic's current end."""
        self.poll()
        end = self.consumer.end_offsets(list(self.consumer.assignment()))
        while any(self.consumer.position(tp) < offset for tp, offset in end.items()):
            self.poll()
        return self.messages

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def _wait_for(collector: Collector, worker: Worker, keys: set[str], minimum: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        worker.assert_alive()
        seen = {k.decode() for k, _ in collector.poll()}
        if len(seen & keys) >= minimum:
            return
        time.sleep(0.2)
    pytest.fail(f"only {len(seen & keys)} of {minimum} windows arrived; log {worker.log}")


def _expected_station_aqi(expected: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """Daily VN_AQI per station from the expected day windows (PM 24-hour means); the run is
    too short for an hourly NowCast (it needs 2 of the last 3 hours)."""
    days: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for key, want in expected.items():
        name, device, metric, start = key.split("|")
        if name == "reading_stats_1d":
            days[(device, start)][metric] = want["mean"]
    out = {}
    for (device, start), means in days.items():
        result = daily_aqi(means)
        out[f"vn_aqi_1d|device:{device}|{start}"] = (result.aqi, result.dominant)
    return out


def _check_indicators(messages: list[tuple[bytes, bytes]], expected: dict[str, Any]) -> None:
    got: dict[str, WindowResult] = {}
    values: dict[str, IndicatorValue] = {}
    for key, value in messages:
        if orjson.loads(value)["schema"] == VALUES_SCHEMA:
            derived = decode_value(value)
            assert derived.key == key.decode()
            assert values.setdefault(derived.key, derived) == derived
            continue
        record = decode_indicator(value)
        assert record.key == key.decode()
        previous = got.setdefault(record.key, record)
        assert previous == record, f"two different records for {record.key}"
    assert set(got) == set(expected)
    for name_key, want in expected.items():
        rec = got[name_key]
        assert rec.count == want["count"], name_key
        for name in ("mean", "min", "max", "last", "stddev"):
            assert math.isclose(getattr(rec, name), want[name], rel_tol=1e-9, abs_tol=1e-9), (
                name_key,
                name,
            )
        assert (rec.ward, rec.unit, rec.window_end) == (
            want["ward"],
            want["unit"],
            want["window_end"],
        )
    want_aqi = _expected_station_aqi(expected)
    assert {k: (int(v.value), v.labels["dominant"]) for k, v in values.items()} == want_aqi
    assert want_aqi


def _check_dead_letters(
    messages: list[tuple[bytes, bytes]], dataset: Dataset, readings_topic: str
) -> None:
    letters = [DeadLetter.decode(v) for _, v in messages]
    late = [d.payload for d in letters if d.reason == "late"]
    malformed = [d for d in letters if d.reason == "malformed_payload"]
    assert {d.reason for d in letters} == {"late", "malformed_payload"}
    assert {orjson.dumps(orjson.loads(p)) for p in late} == dataset.late
    assert {d.payload for d in malformed} == {b"this is not a batch"}
    assert all(d.source.startswith(f"kafka:{readings_topic}/") for d in letters)


def test_uninterrupted_worker_emits_exactly_the_expected_windows(
    dataset: Dataset, kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    worker = Worker(kafka_bootstrap, tmp_path)
    workers.append(worker)
    _produce(kafka_bootstrap, worker.readings, dataset.messages, slice(None))
    indicators = Collector(kafka_bootstrap, worker.indicators)
    deadletters = Collector(kafka_bootstrap, worker.deadletter)
    try:
        worker.start()
        _wait_for(indicators, worker, set(dataset.expected), len(dataset.expected))
        worker.stop()
        assert worker.proc is not None
        assert worker.proc.returncode == 0, worker.log.read_text()[-4000:]
        messages = indicators.drain()
        # no duplicates without a crash (plus one daily VN_AQI per station)
        assert len(messages) == len(dataset.expected) + len(_expected_station_aqi(dataset.expected))
        _check_indicators(messages, dataset.expected)
        _check_dead_letters(deadletters.drain(), dataset, worker.readings)
    finally:
        indicators.close()
        deadletters.close()


def test_sigkill_and_restart_gives_the_uninterrupted_result(
    dataset: Dataset, kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    # A long commit interval: the killed worker has committed nothing, so the restarted one
    # replays everything the first had already applied to its (changelogged) table.
    worker = Worker(kafka_bootstrap, tmp_path, IOC_WORKER_COMMIT_INTERVAL_S="600")
    workers.append(worker)
    indicators = Collector(kafka_bootstrap, worker.indicators)
    deadletters = Collector(kafka_bootstrap, worker.deadletter)
    producer = threading.Thread(
        target=_produce,
        args=(kafka_bootstrap, worker.readings, dataset.messages, slice(None)),
        kwargs={"pace_s": 0.004},
    )
    try:
        worker.start()
        worker.wait_for_log("partitions of ")  # consuming: the readings arrive live
        producer.start()
        _wait_for(indicators, worker, set(dataset.expected), 1)
        worker.kill()  # while readings are still arriving and being processed
        before = len(indicators.poll())
        producer.join()
        worker.start()
        _wait_for(indicators, worker, set(dataset.expected), len(dataset.expected))
        worker.stop()
        log = worker.log.read_text()
        # the restart restored state written by the killed run (the replay path was taken)
        restored = [line for line in log.splitlines() if " state: offset " in line]
        assert restored, log
        assert all(" state: offset -1," not in line for line in restored), log
        assert before < len(dataset.expected)
        _check_indicators(indicators.drain(), dataset.expected)
        _check_dead_letters(deadletters.drain(), dataset, worker.readings)
    finally:
        if producer.ident is not None:
            producer.join()
        indicators.close()
        deadletters.close()


def test_idle_ticks_close_a_quiet_partitions_windows(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    """No reading follows the last one: the worker's own watermark ticks (appended to the input
    partition, so a replay sees them too) close the window."""
    worker = Worker(kafka_bootstrap, tmp_path, IOC_WORKER_IDLE_TICK_S="1")
    workers.append(worker)
    device = _devices()[0][0]
    batch = [_reading(device, "pm25", T0 + timedelta(seconds=s), float(s)) for s in (50, 55, 58)]
    message = orjson.dumps({"schema": SCHEMA, "readings": batch})
    _produce(kafka_bootstrap, worker.readings, {0: [message]}, slice(None))
    indicators = Collector(kafka_bootstrap, worker.indicators)
    readings = Collector(kafka_bootstrap, worker.readings)
    key = indicator_key("reading_stats_1m", device, "pm25", T0)
    try:
        worker.start()
        _wait_for(indicators, worker, {key}, 1)
        record = next(decode_indicator(v) for k, v in indicators.poll() if k.decode() == key)
        assert (record.count, record.last) == (3, 58.0)
        ticks = [orjson.loads(v) for _, v in readings.drain()[1:]]
        assert ticks
        assert all(t["readings"] == [] and "watermark" in t for t in ticks)
    finally:
        indicators.close()
        readings.close()
