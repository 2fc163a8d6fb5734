"""Device status messages (``ioc/<district>/<kind>/<device-id>/status``), pure.

A device publishes ``online`` when it connects and sets ``offline`` as its MQTT will, both
retained, so a subscriber always learns the last known state. Accepted payloads (at most
:data:`MAX_STATUS_BYTES`):

* plain text ``online`` / ``offline`` (case and surrounding whitespace ignored);
* a JSON string ``"online"`` / ``"offline"``;
* a JSON object ``{"status": "online"}``, optionally with ``"ts"`` (epoch s/ms or ISO 8601
  with offset, the telemetry rules of :mod:`connectors.mqtt.timestamps`) for when the state
  began; other keys are ignored (devices often add firmware version, IP, battery...).

``DeviceStatus.time`` is that ``ts`` when given, else the receive time. No freshness window
applies: a retained ``offline`` may rightly be days old. Note that for a retained message
without ``ts`` the receive time is when the bridge (re)subscribed, not when the device went
offline.

:func:`decode_status` never raises for any topic or payload; failures come back as a
:class:`~schemas.deadletter.DeadLetter`: ``topic_outside_layout`` (not a status topic of the
layout), ``payload_too_large``, ``unknown_device`` (only when a registry is given),
``device_mismatch`` (idem, topic district/kind differ from the registry), ``bad_timestamp``,
and ``malformed_payload`` for anything else — including an empty payload, which is how a
retained status is cleared (the caller may simply ignore those).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import orjson

from connectors.mqtt.timestamps import TimestampError, parse_timestamp, us_to_datetime
from connectors.mqtt.topics import parse_topic
from connectors.registry import Registry
from schemas.deadletter import DeadLetter, Reason

Status = Literal["online", "offline"]
MAX_STATUS_BYTES: Final = 1024
_STATES: Final[dict[str, Status]] = {"online": "online", "offline": "offline"}


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """The state a device reported, and since when (aware UTC)."""

    device_id: str
    district: str
    kind: str
    status: Status
    time: datetime
    time_source: Literal["device", "receive"] = "receive"


def decode_status(
    topic: str,
    payload: bytes | bytearray | memoryview,
    received_at: datetime,
    registry: Registry | None = None,
) -> DeviceStatus | DeadLetter:
    """Decode a status message (rules in the module docstring); never raises for bad input.

    ``received_at`` must be timezone-aware (a naive one is a programming error:
    ``ValueError``).
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    payload = payload if type(payload) is bytes else bytes(payload)
    safe_topic = topic.encode("utf-8", "backslashreplace").decode("utf-8")
    source = "mqtt:" + safe_topic
    parsed = parse_topic(topic)
    if parsed is None or parsed.channel != "status":
        return DeadLetter(
            "topic_outside_layout",
            "topic is not ioc/<district>/<kind>/<device-id>/status with safe slugs",
            source,
            safe_topic[:256],
            received_at,
            payload,
        )

    device_id = parsed.device_id

    def dead(reason: Reason, detail: str) -> DeadLetter:
        return DeadLetter(reason, detail, source, device_id, received_at, payload)

    if len(payload) > MAX_STATUS_BYTES:
        return dead("payload_too_large", f"status of {len(payload)} bytes (max {MAX_STATUS_BYTES})")
    if registry is not None:
        device = registry.device(parsed.device_id)
        if device is None:
            return dead("unknown_device", f"device {parsed.device_id!r} is not in the registry")
        if device.district != parsed.district or device.kind != parsed.kind:
            return dead(
                "device_mismatch",
                f"topic says {parsed.district}/{parsed.kind}, "
                f"registry has {device.district}/{device.kind}",
            )
    state: object = None
    ts: object = None
    text = payload.strip()
    if not text:
        return dead("malformed_payload", "empty status (a retained status being cleared)")
    if text.lower() in (b"online", b"offline"):
        state = text.lower().decode("ascii")
    else:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            return dead("malformed_payload", "status must be 'online', 'offline' or JSON")
        if type(document) is dict:
            state = document.get("status")
            ts = document.get("ts")
        else:
            state = document
    status = _STATES.get(state.strip().lower()) if isinstance(state, str) else None
    if status is None:
        return dead("malformed_payload", "status is neither 'online' nor 'offline'")
    received_utc = received_at.astimezone(UTC)
    if ts is None:
        return DeviceStatus(parsed.device_id, parsed.district, parsed.kind, status, received_utc)
    try:
        time = us_to_datetime(parse_timestamp(ts))
    except TimestampError as exc:
        return dead("bad_timestamp", str(exc))
    except OverflowError:
        return dead("bad_timestamp", "status time outside the calendar")
    return DeviceStatus(parsed.device_id, parsed.district, parsed.kind, status, time, "device")
