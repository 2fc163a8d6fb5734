"""SIGKILL the bridge in the middle of a 20,000-reading QoS 1 stream, restart it: none lost.

The bridge runs as ``iocstream bridge`` in a subprocess, as in production. Ten devices
publish 2,000 readings each at QoS 1 (each reading's device time encodes its sequence
number); once Kafka holds some of them, while the publisher is still publishing, the bridge is
killed with SIGKILL, then started again with the same client id (the broker kept its
persistent session and queued what arrived meanwhile). Checks: every reading is on
``ioc.readings`` (duplicates allowed), each device's readings are on one partition, and in
that partition's offset order they come in publishing order once repeats are set aside.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration.test_bridge_support import (
    Fleet,
    Publisher,
    TopicReader,
    collect_readings,
    drop_session,
    make_fleet,
    make_topics,
    now_ms,
    reading,
    readings_of,
    wait_for,
    wire_time,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEVICES = 10
PER_DEVICE = 2_000
CHUNK = 400


class BridgeProcess:
    """``iocstream bridge`` in a subprocess, logging to a file."""

    def __init__(self, env: dict[str, str], fleet: Fleet, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streams.cli.main",
                    "bridge",
                    "--registry",
                    str(fleet.path),
                    "--metrics-port",
                    "0",
                ],
                env=env,
                cwd=REPO,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self.starts = self.log().count("subscriptions acknowledged")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the bridge exited:\n{self.log()[-3000:]}")
            return self.log().count("subscriptions acknowledged") > self.starts

        wait_for(ready, 30, "the bridge to subscribe")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def test_sigkill_mid_stream_loses_nothing(tmp_path: Path, unique: str) -> None:
    fleet = make_fleet(tmp_path, unique, DEVICES)
    topics = make_topics(unique)
    client_id = f"bridge-{unique}"
    env = {
        **os.environ,
        "IOC_MQTT_CLIENT_ID": client_id,
        "IOC_TOPIC_READINGS": topics.readings,
        "IOC_TOPIC_EVENTS": topics.events,
        "IOC_TOPIC_DEADLETTER": topics.deadletter,
    }
    log_path = tmp_path / "bridge.log"
    base = now_ms() - 3_600_000
    want = {(d, wire_time(base + i)) for d in fleet.device_ids for i in range(PER_DEVICE)}
    messages = [
        (fleet.telemetry(d), reading(i, base)) for i in range(PER_DEVICE) for d in fleet.device_ids
    ]
    reader = TopicReader(topics.readings)
    pub = Publisher(f"pub-{unique}")
    publish_errors: list[BaseException] = []

    def publish() -> None:
        try:
            for start in range(0, len(messages), CHUNK):
                pub.publish(messages[start : start + CHUNK])
                time.sleep(0.05)
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            publish_errors.append(exc)

    bridge = BridgeProcess(env, fleet, log_path)
    publisher = threading.Thread(target=publish, name="publisher")
    try:
        bridge.wait_ready()
        publisher.start()

        def in_kafka() -> int:
            reader.poll()
            return len(readings_of(reader.records))

        wait_for(lambda: in_kafka() >= 3_000, 60, "3,000 readings in Kafka before the kill")
        bridge.kill()
        published_at_kill = pub.published
        assert published_at_kill < len(messages), "the stream ended before the kill"
        bridge = BridgeProcess(env, fleet, log_path)
        bridge.wait_ready()
        publisher.join(timeout=120)
        assert not publisher.is_alive()
        assert not publish_errors, publish_errors
        got = collect_readings(reader, want, 90)
        assert bridge.terminate() == 0, bridge.log()[-3000:]
    finally:
        if bridge.proc.poll() is None:
            bridge.kill()
        publisher.join(timeout=120)
        pub.close()
        reader.close()
        drop_session(client_id)

    seen = {(r["device_id"], r["event_time"]) for _p, r in got}
    missing = want - seen
    assert not missing, f"{len(missing)} of {len(want)} readings lost, e.g. {sorted(missing)[:3]}"
    assert seen == want
    partitions: dict[str, set[int]] = defaultdict(set)
    order: dict[str, list[str]] = defaultdict(list)
    for partition, r in got:
        partitions[r["device_id"]].add(partition)
        order[r["device_id"]].append(r["event_time"])
    assert all(len(p) == 1 for p in partitions.values()), partitions
    for device, times in order.items():
        first_seen: list[str] = []
        known: set[str] = set()
        for t in times:
            if t not in known:
                known.add(t)
                first_seen.append(t)
        assert first_seen == sorted(first_seen), f"{device}: readings out of order"
    duplicates = len(got) - len(want)
    print(f"published at kill: {published_at_kill}; duplicates after restart: {duplicates}")
