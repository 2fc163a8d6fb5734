"""Bridge throughput, MQTT -> Kafka, against a bare paho subscriber draining the same queue.

Both sides drain the same broker queue, so neither is limited by a publisher:

1. Two persistent QoS 1 sessions are created on Mosquitto, one for the bridge's client id and
   one for a bare subscriber, both with receive maximum 1,000 (the bridge's default).
2. N readings are published at QoS 1 (one platform-JSON reading per message, 20 devices of a
   throw-away registry); the broker queues every message for both sessions.
3. Baseline: the bare paho subscriber reconnects and only counts messages (paho acknowledges
   them itself); time from connect to the N-th message.
4. Value: the bridge (in this process, a thread) reconnects and moves everything to a fresh
   ``ioc.readings`` topic: decode, validate against the registry, pack per partition,
   produce with acks=all and idempotence, acknowledge each message only after Kafka did; time
   from start to the N-th acknowledgement.

Correctness: the bridge must have acknowledged exactly N messages with no dead letter, and the
readings topic must hold every one of the N readings. Ratio = bridge / bare subscriber
(target >= 0.5, issue 3).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import yaml
from kafka import KafkaConsumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.bridge.bridge import Bridge
from connectors.bridge.settings import BridgeConfig
from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.mqtt.validate import Limits
from connectors.registry import Registry
from connectors.settings import KafkaSettings, MqttSettings, TopicSettings
from streams.bench import BenchContext, Benchmark, Figure

DEVICES = 20
PARTITIONS = 6
RECEIVE_MAXIMUM = 1_000
FILTER = "ioc/+/+/+/telemetry"


def _registry(path: Path, prefix: str) -> tuple[Registry, list[str]]:
    ids = [f"{prefix}-{i:02d}" for i in range(DEVICES)]
    doc = {
        "version": 1,
        "kinds": {
            "air_quality": {
                "expected_interval_s": 60,
                "metrics": {"pm25": {"unit": "ug/m3", "min": 0, "max": 1000}},
            }
        },
        "devices": [
            {
                "id": i,
                "kind": "air_quality",
                "district": "long-xuyen",
                "location": {"lat": 10.38, "lon": 105.43},
            }
            for i in ids
        ],
    }
    path.write_text(yaml.safe_dump(doc))
    return Registry.load(path), ids


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def _connect(client: mqtt.Client, settings: MqttSettings, clean: bool, expiry: int) -> None:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect(settings.host, settings.port, clean_start=clean, properties=props)


def _wait(condition: threading.Event, timeout_s: float, what: str) -> None:
    if not condition.wait(timeout_s):
        raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _make_session(client_id: str, settings: MqttSettings) -> None:
    """A persistent session subscribed to every telemetry topic, left disconnected."""
    client = _client(client_id)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe(FILTER, qos=1)
    _connect(client, settings, clean=True, expiry=3_600)
    client.loop_start()
    _wait(subscribed, 20, f"the subscription of {client_id}")
    client.disconnect()
    client.loop_stop()


def _drop_session(client_id: str, settings: MqttSettings) -> None:
    client = _client(client_id)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    _connect(client, settings, clean=True, expiry=0)
    client.loop_start()
    connected.wait(10)
    client.disconnect()
    client.loop_stop()


def _publish(settings: MqttSettings, device_ids: list[str], n: int, base_ms: int) -> None:
    client = _client(f"bench-pub-{base_ms}")
    client.max_inflight_messages_set(1_000)
    client.max_queued_messages_set(0)
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        # in chunks: packet ids are 16 bits, so at most 65,535 messages may be unacknowledged
        for start in range(0, n, 10_000):
            infos = []
            for i in range(start, min(start + 10_000, n)):
                device = device_ids[i % DEVICES]
                payload = orjson.dumps({"ts": base_ms + i, "values": {"pm25": float(i % 500)}})
                topic = f"ioc/long-xuyen/air_quality/{device}/telemetry"
                infos.append(client.publish(topic, payload, qos=1))
            for info in infos:
                info.wait_for_publish(timeout=120)
                if not info.is_published():
                    raise RuntimeError("the broker did not acknowledge every published message")
    finally:
        client.disconnect()
        client.loop_stop()


def _bare_subscriber(client_id: str, settings: MqttSettings, n: int) -> float:
    """Messages/s of a paho subscriber that only counts what its session queued."""
    client = _client(client_id)
    done = threading.Event()
    count = 0

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    client.on_message = on_message
    started = time.perf_counter()
    _connect(client, settings, clean=False, expiry=3_600)
    client.loop_start()
    try:
        _wait(done, 600, f"{n} messages at the bare subscriber")
        took = time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()
    return n / took


def _bridge(
    client_id: str, settings: MqttSettings, topics: TopicSettings, registry: Registry, n: int
) -> float:
    """Readings/s the bridge moves from the queued session to Kafka, acknowledged."""
    bridge = Bridge(
        settings.model_copy(update={"client_id": client_id}),
        KafkaSettings(),
        topics,
        registry,
        Limits(),
        BridgeConfig(receive_maximum=RECEIVE_MAXIMUM),
    )
    thread = threading.Thread(target=bridge.run, name="bench-bridge", daemon=True)
    started = time.perf_counter()
    thread.start()
    try:
        deadline = time.monotonic() + 600
        while bridge.stats["acked"] < n:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the bridge acknowledged {bridge.stats['acked']} of {n}")
            time.sleep(0.005)
        took = time.perf_counter() - started
    finally:
        bridge.stop.set()
        thread.join(timeout=60)
    if bridge.stats["acked"] != n or bridge.stats["dead_letters"]:
        raise RuntimeError(f"unexpected bridge result: {bridge.stats}")
    return n / took


def _count_readings(topic: str, n: int) -> int:
    consumer = KafkaConsumer(
        **KafkaSettings().client_options(), enable_auto_commit=False, consumer_timeout_ms=500
    )
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        seen: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 120
        while len(seen) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=10_000).values():
                for record in batch:
                    for r in orjson.loads(record.value)["readings"]:
                        seen.add((r["device_id"], r["event_time"]))
        return len(seen)
    finally:
        consumer.close()


def run(ctx: BenchContext) -> list[Figure]:
    n = 20_000 if ctx.quick else 100_000
    suffix = ctx.unique("b").split("-")[1]
    settings = MqttSettings()
    registry, device_ids = _registry(ctx.workdir / "devices.yaml", f"bench{suffix}")
    topics = TopicSettings(
        readings=f"bench-readings-{suffix}",
        events=f"bench-events-{suffix}",
        deadletter=f"bench-dead-{suffix}",
    )
    ensure_topics(
        KafkaSettings(),
        [TopicSpec(t, PARTITIONS, 1) for t in (topics.readings, topics.events, topics.deadletter)],
    )
    bare_id, bridge_id = f"bench-bare-{suffix}", f"bench-bridge-{suffix}"
    try:
        _make_session(bare_id, settings)
        _make_session(bridge_id, settings)
        _publish(settings, device_ids, n, int(time.time() * 1000) - 3_600_000)
        baseline = _bare_subscriber(bare_id, settings, n)
        value = _bridge(bridge_id, settings, topics, registry, n)
    finally:
        _drop_session(bare_id, settings)
        _drop_session(bridge_id, settings)
    found = _count_readings(topics.readings, n)
    if found != n:
        raise RuntimeError(f"ioc.readings holds {found} distinct readings, expected {n}")
    ctx.notes.append(f"{n} readings, one per message, {DEVICES} devices, {PARTITIONS} partitions")
    return [
        Figure(
            "bridge_throughput",
            value,
            "readings/s",
            baseline,
            "bare paho subscriber, messages/s",
        )
    ]


BENCHMARK = Benchmark(
    "bridge_throughput",
    "readings/s MQTT -> Kafka through the bridge vs a bare paho subscriber on the same queue",
    run,
)
