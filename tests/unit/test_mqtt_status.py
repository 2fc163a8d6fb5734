"""Device status messages: online/offline as text or JSON, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.mqtt.status import DeviceStatus, Status, decode_status
from connectors.registry import Registry
from schemas.deadletter import DeadLetter

RECEIVED = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
TOPIC = "ioc/long-xuyen/air_quality/aq-lx-001/status"
REGISTRY = Registry.from_dict(
    {
        "version": 1,
        "kinds": {"air_quality": {"expected_interval_s": 60, "metrics": {"pm25": {"unit": "u"}}}},
        "devices": [
            {
                "id": "aq-lx-001",
                "kind": "air_quality",
                "district": "long-xuyen",
                "location": {"lat": 10.38, "lon": 105.43},
            }
        ],
    }
)


def status(payload: bytes, topic: str = TOPIC, registry: Registry | None = None) -> DeviceStatus:
    result = decode_status(topic, payload, RECEIVED, registry)
    assert isinstance(result, DeviceStatus), result
    return result


def dead(payload: bytes, topic: str = TOPIC, registry: Registry | None = None) -> DeadLetter:
    result = decode_status(topic, payload, RECEIVED, registry)
    assert isinstance(result, DeadLetter), result
    assert result.payload == payload
    assert DeadLetter.decode(result.encode()) == result
    return result


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"online", "online"),
        (b"offline", "offline"),
        (b"  OFFLINE\n", "offline"),
        (b'"online"', "online"),
        (b'{"status": "offline"}', "offline"),
        (b'{"status": "Online", "fw": "1.4.2", "rssi": -71}', "online"),
    ],
)
def test_status_forms(payload: bytes, expected: Status) -> None:
    assert status(payload) == DeviceStatus(
        "aq-lx-001", "long-xuyen", "air_quality", expected, RECEIVED, "receive"
    )


def test_status_with_its_own_time() -> None:
    ms = 1_795_831_200_000 - 3_600_000
    result = status(b'{"status": "offline", "ts": %d}' % ms)
    assert result.time == RECEIVED - timedelta(hours=1)
    assert result.time_source == "device"
    # No freshness window: a retained "offline" from last week is still the last known state.
    old = status(b'{"status": "offline", "ts": "2026-11-20T00:00:00+07:00"}')
    assert old.time == datetime(2026, 11, 19, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"", "malformed_payload", "empty status"),
        (b"up", "malformed_payload", "'online', 'offline' or JSON"),
        (b'{"state": "online"}', "malformed_payload", "neither 'online' nor 'offline'"),
        (b"true", "malformed_payload", "neither"),
        (b'{"status": "offline", "ts": "yesterday"}', "bad_timestamp", "not ISO 8601"),
        (b'{"status": "offline", "ts": 1e300}', "bad_timestamp", "outside the calendar"),
        (b"online" + b" " * 2000, "payload_too_large", "max 1024"),
        (b"\xff\xfe", "malformed_payload", "'online', 'offline' or JSON"),
    ],
)
def test_bad_status_payloads(payload: bytes, reason: str, detail: str) -> None:
    letter = dead(payload)
    assert letter.reason == reason
    assert detail in letter.detail
    assert letter.source_id == "aq-lx-001"


@pytest.mark.parametrize(
    "topic",
    [
        "ioc/long-xuyen/air_quality/aq-lx-001/telemetry",
        "ioc/long-xuyen/air_quality/aq-lx-001",
        "devices/aq-lx-001/status",
        "ioc/long-xuyen/air_quality/\udcff/status",
    ],
)
def test_status_topic_must_follow_the_layout(topic: str) -> None:
    assert dead(b"online", topic=topic).reason == "topic_outside_layout"


def test_status_checked_against_the_registry_when_given() -> None:
    assert status(b"online", registry=REGISTRY).device_id == "aq-lx-001"
    unknown = "ioc/long-xuyen/air_quality/aq-lx-404/status"
    assert dead(b"online", topic=unknown, registry=REGISTRY).reason == "unknown_device"
    assert status(b"online", topic=unknown).device_id == "aq-lx-404"  # no registry: no check
    moved = "ioc/chau-doc/air_quality/aq-lx-001/status"
    assert dead(b"online", topic=moved, registry=REGISTRY).reason == "device_mismatch"


def test_naive_receive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        decode_status(TOPIC, b"online", datetime(2026, 1, 1))  # noqa: DTZ001


def test_bytearray_payload() -> None:
    assert decode_status(TOPIC, bytearray(b"online"), RECEIVED) == status(b"online")
