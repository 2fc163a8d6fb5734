"""The simulator against a real Mosquitto: what arrives is exactly what ``generate`` made.

This module starts its own broker (``/usr/sbin/mosquitto`` on a free loopback port from
21883 up, anonymous, no persistence) and stops it by pid at the end, so it does not need the
shared Kafka/ClickHouse stack: it overrides the suite's autouse stack fixture. A missing
``mosquitto`` binary fails the tests; they never skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.simulator.cli import run_simulate
from connectors.simulator.encoding import PayloadFormat
from connectors.simulator.model import default_devices, generate
from connectors.simulator.plan import plan_messages

pytestmark = pytest.mark.integration

MOSQUITTO = os.environ.get("IOC_MOSQUITTO_BIN", "/usr/sbin/mosquitto")
REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 08:00 in Long Xuyên
WAIT_S = 30.0


@pytest.fixture(autouse=True)
def _stack_for_integration() -> None:
    """Overrides the suite's hook: this module brings its own broker and needs nothing else."""


def _free_port(first: int = 21883) -> int:
    for port in range(first, first + 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}..{first + 999}")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Mosquitto of our own; yields its mqtt:// URL."""
    if not (Path(MOSQUITTO).is_file() or shutil.which(MOSQUITTO)):
        pytest.fail(
            f"mosquitto not found at {MOSQUITTO}: install it (apt-get install mosquitto) "
            "or set IOC_MOSQUITTO_BIN"
        )
    port = _free_port()
    workdir = tmp_path_factory.mktemp("mosquitto")
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "log_dest stdout\nlog_type error\nlog_type warning\n"
    )
    log_path = workdir / "mosquitto.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log_file, stderr=log_file)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {proc.returncode}: {log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not listen on {port}: {log_path.read_text()}")
                time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Collector:
    """A QoS 1 subscriber that records (topic, payload, retain) of what it receives.

    With ``live`` it drops retained messages the broker replays on subscribing (statuses
    left by earlier tests); messages published while subscribed arrive with retain unset.
    """

    def __init__(self, url: str, topic: str = "ioc/#", live: bool = True) -> None:
        self.live = live
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-collector-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert self._subscribed.wait(10), "the collector could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.live and msg.retain:
            return
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = WAIT_S) -> list[tuple[str, bytes, bool]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n and time.monotonic() < deadline:
                self._cond.wait(0.1)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector(broker: str) -> Iterator[Collector]:
    c = Collector(broker)
    yield c
    c.close()


def expected_plan(
    devices: int, count: int, interval_s: int, seed: int, fmt: PayloadFormat, malformed: int
) -> list[tuple[str, bytes, bool]]:
    readings = list(
        generate(default_devices(devices), START, timedelta(seconds=interval_s), count, seed)
    )
    return [
        (m.topic, m.payload, m.malformed)
        for m in plan_messages(readings, fmt, malformed, len(readings))
    ]


def per_topic(messages: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for topic, payload in messages:
        out[topic].append(payload)
    return dict(out)


def check_statuses(received: list[tuple[str, bytes, bool]], devices: int) -> None:
    """Every device went online, then offline, each published retained."""
    statuses = per_topic([(t, p) for t, p, _ in received if t.endswith("/status")])
    assert statuses == {
        f"ioc/long-xuyen/air_quality/{d.device_id}/status": [b"online", b"offline"]
        for d in default_devices(devices)
    }


def retained_statuses(url: str, devices: int) -> dict[str, bytes]:
    late = Collector(url, "ioc/+/+/+/status", live=False)
    try:
        got = late.wait_for(devices)
    finally:
        late.close()
    assert all(retain for _, _, retain in got)
    return {t: p for t, p, _ in got}


@pytest.mark.parametrize(
    ("fmt", "mqtt_version", "workers"),
    [("json", "5", "1"), ("senml", "4", "2")],
)
def test_published_messages_are_exactly_the_generated_ones(
    broker: str, collector: Collector, fmt: PayloadFormat, mqtt_version: str, workers: str
) -> None:
    devices, count, interval, seed, malformed = 5, 12, 10, 424242, 2
    code = run_simulate(
        [
            "--mqtt-url", broker,
            "--devices", str(devices),
            "--count", str(count),
            "--interval", str(interval),
            "--start", START.isoformat(),
            "--seed", str(seed),
            "--format", fmt,
            "--malformed", str(malformed),
            "--rate", "2000",
            "--mqtt-version", mqtt_version,
            "--workers", workers,
            "--progress", "none",
        ]
    )  # fmt: skip
    assert code == 0

    expected = expected_plan(devices, count, interval, seed, fmt, malformed)
    received = collector.wait_for(len(expected) + 2 * devices)
    telemetry = [(t, p) for t, p, _ in received if t.endswith("/telemetry")]
    assert len(telemetry) == len(expected)
    assert not any(retain for t, _, retain in received if t.endswith("/telemetry"))
    # Per device: the same payloads, byte for byte, in the same order.
    assert per_topic(telemetry) == per_topic([(t, p) for t, p, _ in expected])
    broken = [p for _, p, bad in expected if bad]
    assert len(broken) == malformed
    for payload in broken:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(payload)
    check_statuses(received, devices)
    assert set(retained_statuses(broker, devices).values()) == {b"offline"}


def test_values_on_the_wire_decode_to_the_generated_readings(
    broker: str, collector: Collector
) -> None:
    code = run_simulate(
        ["--mqtt-url", broker, "--devices", "3", "--count", "4", "--interval", "60",
         "--start", START.isoformat(), "--seed", "5", "--no-status", "--progress", "none"]
    )  # fmt: skip
    assert code == 0
    readings = list(generate(default_devices(3), START, timedelta(seconds=60), 4, 5))
    received = collector.wait_for(len(readings))
    decoded = [(t, orjson.loads(p)) for t, p, _ in received]
    assert decoded == [
        (
            f"ioc/long-xuyen/air_quality/{r.device_id}/telemetry",
            {"ts": int(r.event_time.timestamp()) * 1000, "values": r.values},
        )
        for r in readings
    ]


def test_ctrl_c_stops_cleanly_and_leaves_devices_offline(broker: str, collector: Collector) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    devices = 2
    argv = [
        sys.executable, "-m", "connectors.simulator.cli",
        "--mqtt-url", broker, "--devices", str(devices), "--interval", "60",
        "--start", start.isoformat(), "--realtime", "--progress", "none",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # Readings of the past five minutes (6 rounds) go out at once; then it waits.
        past = 6 * devices
        got = collector.wait_for(devices + past)
        assert len([t for t, _, _ in got if t.endswith("/telemetry")]) >= past, got
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 130, output.decode()
    assert b"interrupted" in output
    received = collector.wait_for(10_000, timeout=1.0)
    check_statuses(received, devices)
    assert set(retained_statuses(broker, devices).values()) == {b"offline"}


def test_an_unreachable_broker_is_a_clear_failure(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port(31_000)  # nothing listens there
    code = run_simulate(
        ["--mqtt-url", f"mqtt://127.0.0.1:{port}", "--devices", "1", "--count", "1",
         "--connect-timeout", "1", "--progress", "none"]
    )  # fmt: skip
    assert code == 1
    assert "could not reach the MQTT broker" in capsys.readouterr().out
