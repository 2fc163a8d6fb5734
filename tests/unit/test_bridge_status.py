"""Device status messages to canonical device.status events (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from connectors.bridge.status_events import DEVICE_STATUS, StatusChanges, status_event
from connectors.mqtt.status import DeviceStatus, decode_status
from connectors.registry import Registry
from schemas.events import Event

RECEIVED = datetime(2026, 11, 28, 9, 0, 0, 123000, tzinfo=UTC)
TOPIC = "ioc/long-xuyen/air_quality/aq-lx-001/status"


def _status(payload: bytes) -> DeviceStatus:
    decoded = decode_status(TOPIC, payload, RECEIVED, Registry.load_default())
    assert isinstance(decoded, DeviceStatus)
    return decoded


def test_event_from_a_status_with_device_time() -> None:
    registry = Registry.load_default()
    status = _status(b'{"status": "offline", "ts": "2026-11-28T08:59:00+07:00"}')
    event = status_event(status, registry.device("aq-lx-001"), RECEIVED, retained=False)
    assert event.type == DEVICE_STATUS
    assert event.subject == "aq-lx-001"
    assert event.key == b"aq-lx-001"
    assert event.source == "/ioc/long-xuyen/air_quality/aq-lx-001"
    assert event.id == "offline@2026-11-28T01:59:00.000Z"
    assert event.time == datetime(2026, 11, 28, 1, 59, tzinfo=UTC)
    assert event.origin == "mqtt:" + TOPIC
    assert event.data == {
        "device_id": "aq-lx-001",
        "kind": "air_quality",
        "district": "long-xuyen",
        "ward": "my-binh",
        "status": "offline",
        "since": "2026-11-28T01:59:00.000Z",
        "time_source": "device",
        "retained": False,
    }
    wire = orjson.loads(event.encode())
    assert wire["specversion"] == "1.0"
    assert wire["iocreceivedat"] == "2026-11-28T09:00:00.123Z"
    assert Event.decode(event.encode()) == event


def test_a_redelivered_status_with_device_time_keeps_its_id() -> None:
    status = _status(b'{"status": "online", "ts": 1764320000}')
    later = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    first = status_event(status, None, RECEIVED, retained=False)
    again = status_event(status, None, later, retained=False)
    assert first.dedup_key == again.dedup_key


def test_retained_snapshot_without_time_uses_receive_time() -> None:
    event = status_event(_status(b"online"), None, RECEIVED, retained=True)
    assert event.time == RECEIVED
    assert event.data["time_source"] == "receive"
    assert event.data["retained"] is True
    assert event.data["ward"] == ""


def test_only_changes_pass() -> None:
    changes = StatusChanges()
    online, offline = _status(b"online"), _status(b"offline")
    assert changes.is_change(online)
    changes.published(online)
    assert not changes.is_change(_status(b"ONLINE"))
    assert changes.is_change(offline)
    changes.published(offline)
    assert changes.is_change(online)
    assert len(changes) == 1
