"""Helpers for the bridge's integration tests (this module holds no tests itself).

Every test builds its own registry of uuid-named devices, its own uuid-named Kafka topics
(4 partitions) and uuid client ids, so tests never see each other's traffic; persistent MQTT
sessions a test created are removed at its end (:func:`drop_session`).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import yaml
from kafka import KafkaConsumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.bridge.bridge import Bridge
from connectors.bridge.clients import mqtt_tls_context
from connectors.bridge.settings import BridgeConfig
from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.metrics import Metrics
from connectors.mqtt.validate import Limits
from connectors.registry import Registry
from connectors.settings import KafkaSettings, MqttSettings, TopicSettings
from schemas.readings import format_time

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PARTITIONS = 4
KIND = "air_quality"
DISTRICT = "long-xuyen"


@dataclass
class Fleet:
    """Test devices in a registry file of their own."""

    path: Path
    registry: Registry
    device_ids: list[str]

    def telemetry(self, device_id: str) -> str:
        return f"ioc/{DISTRICT}/{KIND}/{device_id}/telemetry"

    def status(self, device_id: str) -> str:
        return f"ioc/{DISTRICT}/{KIND}/{device_id}/status"


def make_fleet(tmp_path: Path, unique: str, devices: int) -> Fleet:
    ids = [f"t{unique}-{i:03d}" for i in range(devices)]
    doc = {
        "version": 1,
        "kinds": {
            KIND: {
                "expected_interval_s": 60,
                "metrics": {"pm25": {"unit": "ug/m3", "min": 0, "max": 1000}},
            }
        },
        "devices": [
            {
                "id": i,
                "kind": KIND,
                "district": DISTRICT,
                "ward": "my-binh",
                "location": {"lat": 10.38, "lon": 105.43},
            }
            for i in ids
        ],
    }
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Fleet(path, Registry.load(path), ids)


def make_topics(unique: str) -> TopicSettings:
    topics = TopicSettings(
        readings=f"t-readings-{unique}",
        events=f"t-events-{unique}",
        deadletter=f"t-dead-{unique}",
        partitions=PARTITIONS,
    )
    names = [topics.readings, topics.events, topics.deadletter, f"t-quarantine-{unique}"]
    ensure_topics(KafkaSettings(), [TopicSpec(n, PARTITIONS, 1) for n in names])
    return topics


def reading(seq: int, base_ms: int) -> bytes:
    """A platform JSON reading whose time encodes ``seq`` (unique per device)."""
    return orjson.dumps({"ts": base_ms + seq, "values": {"pm25": float(seq % 500)}})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wire_time(ms: int) -> str:
    """The ``event_time`` the bridge writes for a device time in epoch milliseconds."""
    return format_time(EPOCH + timedelta(milliseconds=ms))


def _client(client_id: str, settings: MqttSettings) -> mqtt.Client:
    """A plain MQTT 5 client with the credentials and TLS of ``settings``."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    context = mqtt_tls_context(settings)
    if context is not None:
        client.tls_set_context(context)
    return client


class Publisher:
    """A QoS 1 MQTT publisher that waits for every PUBACK."""

    def __init__(self, client_id: str, settings: MqttSettings | None = None) -> None:
        s = settings or MqttSettings()
        self.client = _client(client_id, s)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(s.host, s.port)
        self.client.loop_start()
        self.published = 0

    def publish(
        self, messages: Iterable[tuple[str, bytes]], qos: int = 1, retain: bool = False
    ) -> None:
        infos = []
        for topic, payload in messages:
            infos.append(self.client.publish(topic, payload, qos=qos, retain=retain))
            self.published += 1
        for info in infos:
            info.wait_for_publish(timeout=60)
            if not info.is_published():
                raise RuntimeError(f"message {info.mid} was not acknowledged by the broker")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def drop_session(client_id: str, settings: MqttSettings | None = None) -> None:
    """Remove a persistent session (connect with clean start and expiry 0, disconnect)."""
    s = settings or MqttSettings()
    client = _client(client_id, s)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.connect(s.host, s.port, clean_start=True, properties=props)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()


@contextmanager
def running_bridge(
    client_id: str,
    fleet: Fleet,
    topics: TopicSettings,
    config: BridgeConfig | None = None,
    limits: Limits | None = None,
    kafka: KafkaSettings | None = None,
    mqtt_settings: MqttSettings | None = None,
    keep_session: bool = False,
    metrics: Metrics | None = None,
) -> Iterator[Bridge]:
    """A bridge running in a thread; stopped (and its session dropped) on exit."""
    s = mqtt_settings or MqttSettings()
    s = s.model_copy(update={"client_id": client_id})
    bridge = Bridge(
        s,
        kafka or KafkaSettings(),
        topics,
        fleet.registry,
        limits or Limits(),
        config,
        metrics=metrics,
    )
    errors: list[BaseException] = []

    def target() -> None:
        try:
            bridge.run()
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=target, name=f"bridge-{client_id}", daemon=True)
    thread.start()
    try:
        wait_for(bridge.subscribed.is_set, 20, "the bridge to connect and subscribe")
        yield bridge
    finally:
        bridge.stop.set()
        thread.join(timeout=30)
        if not keep_session:
            drop_session(client_id, mqtt_settings)
    assert not thread.is_alive(), "the bridge did not stop"
    assert not errors, f"the bridge failed: {errors!r}"


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback TCP ports nobody listens on right now (the OS picks)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)


class TopicReader:
    """Reads a whole topic from the beginning, in offset order per partition."""

    def __init__(self, topic: str, kafka: KafkaSettings | None = None) -> None:
        self.consumer = KafkaConsumer(
            **(kafka or KafkaSettings()).client_options(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=200,
        )
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)
        self.records: list[Any] = []

    def poll(self) -> list[Any]:
        new = []
        for batch in self.consumer.poll(timeout_ms=300, max_records=5000).values():
            new.extend(batch)
        self.records.extend(new)
        return new

    def read_at_least(self, count: int, timeout_s: float) -> list[Any]:
        """Poll until ``count`` records were read in all; every record read so far."""
        deadline = time.monotonic() + timeout_s
        while len(self.records) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.records)} of {count} records arrived")
            self.poll()
        return self.records

    def close(self) -> None:
        self.consumer.close()


def readings_of(records: Iterable[Any]) -> list[tuple[int, dict[str, Any]]]:
    """(partition, reading) for every reading of ``ioc.readings`` batches, in offset order."""
    out = []
    for rec in records:
        for r in orjson.loads(rec.value)["readings"]:
            out.append((rec.partition, r))
    return out


def collect_readings(
    reader: TopicReader, want: set[tuple[str, str]], timeout_s: float
) -> list[tuple[int, dict[str, Any]]]:
    """Poll until every (device_id, event time) in ``want`` was seen; all readings so far."""
    seen = {(r["device_id"], r["event_time"]) for _p, r in readings_of(reader.records)}
    deadline = time.monotonic() + timeout_s
    while not want <= seen and time.monotonic() < deadline:
        for _p, r in readings_of(reader.poll()):
            seen.add((r["device_id"], r["event_time"]))
    return readings_of(reader.records)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A throw-away CA (ca.pem), server.pem/server.key (127.0.0.1, localhost), client.pem/.key."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=iocstream test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d,
    )  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext, cwd=d,
        )  # fmt: skip
