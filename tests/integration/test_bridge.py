"""The bridge against real Mosquitto and Kafka: status events, limits, quarantine, sharing.

Each test has its own devices, topics and client ids (:mod:`test_bridge_support`). A test
first waits until everything it expects has arrived, then until the bridge has no message
left unacknowledged, and only then checks what else arrived, so "nothing else" is checked
after the bridge has finished, not after a guessed delay.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from connectors.bridge.bridge import Bridge
from connectors.bridge.settings import BridgeConfig, BridgeSettings
from connectors.bridge.status_events import DEVICE_STATUS
from connectors.metrics import Metrics
from schemas.deadletter import DeadLetter
from schemas.events import Event
from tests.integration.test_bridge_support import (
    Publisher,
    TopicReader,
    collect_readings,
    make_fleet,
    make_topics,
    now_ms,
    reading,
    running_bridge,
    wait_for,
    wire_time,
)

pytestmark = pytest.mark.integration


def _settled(bridge: Bridge) -> bool:
    return bridge.unacknowledged == 0 and bridge.stats["messages"] > 0


def test_status_changes_become_device_status_events(tmp_path: Path, unique: str) -> None:
    fleet = make_fleet(tmp_path, unique, 3)
    topics = make_topics(unique)
    d0, d1, d2 = fleet.device_ids
    pub = Publisher(f"pub-{unique}")
    events = TopicReader(topics.events)
    dead = TopicReader(topics.deadletter)
    try:
        # Retained before the bridge exists: delivered as a snapshot when it subscribes.
        pub.publish([(fleet.status(d0), b"offline")], retain=True)
        with running_bridge(f"bridge-{unique}", fleet, topics) as bridge:
            pub.publish(
                [
                    (fleet.status(d1), b'{"status": "online", "ts": 1764320000000}'),
                    (fleet.status(d1), b"online"),  # no change: no event
                    (fleet.status(d1), b'{"status": "offline", "ts": 1764320060000}'),
                    (fleet.status(d2), b""),  # a cleared retained status: ignored
                    (f"ioc/long-xuyen/air_quality/nobody-{unique}/status", b"online"),
                    (fleet.status(d2), b"sleeping"),
                    (fleet.telemetry(d2), reading(1, now_ms())),
                ]
            )
            events.read_at_least(3, 30)
            wait_for(lambda: _settled(bridge) and bridge.stats["messages"] >= 8, 30, "acks")
            assert bridge.stats["status_events"] == 3
            assert bridge.stats["readings"] == 1
        events.poll()  # anything beyond the three
        got = [Event.decode(r.value) for r in events.records]
        assert sorted((e.subject, e.data["status"], e.data["retained"]) for e in got) == sorted(
            [(d0, "offline", True), (d1, "online", False), (d1, "offline", False)]
        )
        for event, record in zip(got, events.records, strict=True):
            assert event.type == DEVICE_STATUS
            assert record.key == event.subject.encode()
            assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
            assert event.data["ward"] == "my-binh"
        by_status = {(e.subject, e.data["status"]): e for e in got}
        online = by_status[(d1, "online")]
        assert online.data["time_source"] == "device"
        assert online.id == "online@2025-11-28T08:53:20.000Z"
        assert by_status[(d0, "offline")].data["time_source"] == "receive"
        # the two d1 events are on one partition, in order
        d1_records = [r for r, e in zip(events.records, got, strict=True) if e.subject == d1]
        assert len({r.partition for r in d1_records}) == 1
        assert [Event.decode(r.value).data["status"] for r in d1_records] == ["online", "offline"]

        def mine() -> list[DeadLetter]:  # the shared broker may hold others' retained states
            dead.poll()
            return [
                d for d in (DeadLetter.decode(r.value) for r in dead.records) if unique in d.source
            ]

        wait_for(lambda: len(mine()) >= 2, 20, "two dead letters")
        letters = mine()
        assert sorted(d.reason for d in letters) == ["malformed_payload", "unknown_device"]
        assert {d.source for d in letters} == {
            f"mqtt:ioc/long-xuyen/air_quality/nobody-{unique}/status",
            f"mqtt:{fleet.status(d2)}",
        }
    finally:
        pub.publish([(fleet.status(d0), b"")], retain=True)  # clear the retained status
        pub.close()
        events.close()
        dead.close()


def test_limits_and_quarantine_from_settings(
    tmp_path: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = make_fleet(tmp_path, unique, 2)
    topics = make_topics(unique)
    quarantine_topic = f"t-quarantine-{unique}"
    monkeypatch.setenv("IOC_BRIDGE_MAX_PAYLOAD_BYTES", "300")
    monkeypatch.setenv("IOC_BRIDGE_MAX_FUTURE_S", "60")
    monkeypatch.setenv("IOC_BRIDGE_MAX_PAST_S", "3600")
    monkeypatch.setenv("IOC_BRIDGE_UNKNOWN_DEVICE_POLICY", "quarantine")
    monkeypatch.setenv("IOC_BRIDGE_QUARANTINE_TOPIC", quarantine_topic)
    settings = BridgeSettings()
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    d0 = fleet.device_ids[0]
    t = now_ms()
    stranger = f"ioc/long-xuyen/air_quality/stranger-{unique}/telemetry"
    pub = Publisher(f"pub-{unique}")
    dead = TopicReader(topics.deadletter)
    quarantine = TopicReader(quarantine_topic)
    readings = TopicReader(topics.readings)
    try:
        with running_bridge(
            f"bridge-{unique}",
            fleet,
            topics,
            settings.config(),
            settings.limits(),
            metrics=metrics,
        ) as bridge:
            pub.publish(
                [
                    (fleet.telemetry(d0), reading(0, t)),
                    (fleet.telemetry(d0), reading(0, t + 120_000)),  # 2 min ahead: > 60 s
                    (fleet.telemetry(d0), reading(0, t - 7_200_000)),  # 2 h old: > 1 h
                    (fleet.telemetry(d0), b'{"values": {"pm25": 1}, "pad": "' + b"x" * 400 + b'"}'),
                    (stranger, reading(5, t)),
                ]
            )
            wait_for(lambda: _settled(bridge) and bridge.stats["messages"] >= 5, 30, "acks")
        got = collect_readings(readings, {(d0, wire_time(t))}, 20)
        assert [r["device_id"] for _p, r in got] == [d0]
        dead.read_at_least(4, 20)
        reasons = Counter(DeadLetter.decode(r.value).reason for r in dead.records)
        assert reasons == Counter(
            ["timestamp_in_future", "timestamp_too_old", "payload_too_large", "unknown_device"]
        )
        quarantine.read_at_least(1, 20)
        held = orjson.loads(quarantine.records[0].value)["readings"]
        assert [(r["device_id"], r["value"]) for r in held] == [(f"stranger-{unique}", 5.0)]

        def metric(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, labels)

        assert metric("iocstream_bridge_messages_total") == 5
        assert metric("iocstream_bridge_readings_total") == 1
        assert metric("iocstream_bridge_quarantined_readings_total") == 1
        for reason in reasons:
            assert metric("iocstream_dead_letters_total", component="bridge", reason=reason) == 1
        assert metric("iocstream_bridge_batch_readings_count") == 1
        assert metric("iocstream_bridge_produce_latency_seconds_count") == 6  # 1 + 4 + 1
        assert metric("iocstream_bridge_unacknowledged_messages") == 0
        assert metric("iocstream_bridge_mqtt_connected") == 0  # stopped by now
    finally:
        pub.close()
        for reader in (dead, quarantine, readings):
            reader.close()


def test_two_replicas_share_the_load(tmp_path: Path, unique: str) -> None:
    fleet = make_fleet(tmp_path, unique, 8)
    topics = make_topics(unique)
    per_device = 250
    base = now_ms() - 60_000
    config = BridgeConfig(share_group=f"g{unique}")
    pub = Publisher(f"pub-{unique}")
    readings = TopicReader(topics.readings)
    want = {(d, wire_time(base + i)) for d in fleet.device_ids for i in range(per_device)}
    try:
        with (
            running_bridge(f"a-{unique}", fleet, topics, config) as a,
            running_bridge(f"b-{unique}", fleet, topics, config) as b,
        ):
            pub.publish(
                (fleet.telemetry(d), reading(i, base))
                for i in range(per_device)
                for d in fleet.device_ids
            )
            got = collect_readings(readings, want, 60)
            wait_for(
                lambda: (
                    a.stats["messages"] + b.stats["messages"] >= len(want)
                    and a.unacknowledged + b.unacknowledged == 0
                ),
                30,
                "both replicas to acknowledge everything",
            )
            shares = (a.stats["messages"], b.stats["messages"])
        seen = Counter((r["device_id"], r["event_time"]) for _p, r in got)
        missing = want - set(seen)
        assert not missing, f"{len(missing)} readings missing, e.g. {sorted(missing)[:3]}"
        assert set(seen) == want
        assert min(shares) > 0, f"one replica got nothing: {shares}"
        assert sum(shares) >= len(want)
        assert a.stats["dead_letters"] + b.stats["dead_letters"] == 0
    finally:
        pub.close()
        readings.close()
