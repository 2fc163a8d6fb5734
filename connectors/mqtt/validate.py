"""One MQTT telemetry message to canonical readings and dead letters (pure, no I/O).

:func:`decode_message` is what the bridge calls for every message. It never raises for any
topic or payload: everything becomes either a :class:`~schemas.readings.Reading` or a
:class:`~schemas.deadletter.DeadLetter` with a reason from ``schemas.deadletter.REASONS``.

Whole-message checks, in order; the first failure gives **one** dead letter holding the whole
original payload, and no reading:

1. ``topic_outside_layout`` — not ``ioc/<district>/<kind>/<device-id>/telemetry`` with safe
   slugs (:mod:`connectors.mqtt.topics`); a status topic is also refused here (use
   :func:`connectors.mqtt.status.decode_status`).
2. ``payload_too_large`` — more than ``Limits.max_payload_bytes`` (default 64 KiB).
3. ``unknown_device`` — the device id is not in the registry. With
   ``Limits.unknown_device_policy == "quarantine"`` the dead letter's detail is
   ``"quarantined"`` and the payload is still decoded: readings that are numeric, finite and
   inside the time window go to :attr:`Decoded.quarantined` (never to ``readings``), with
   kind and district taken from the topic, no ward, and the unit sent (else the kind's
   registry unit for that metric, else ``""``); no metric, unit or range check applies, since
   nothing is known about the device. Quarantined readings are for inspection (e.g. a
   separate topic) before the device is registered; the dead letter remains the record.
4. ``device_mismatch`` — the topic's district or kind differs from the registry's.
5. ``malformed_json``, ``non_finite_value`` (NaN/Infinity literals), ``malformed_senml``,
   ``malformed_payload`` — see :mod:`connectors.mqtt.payload`.

Then every measurement is judged on its own; the first failing check wins:

``unknown_metric`` (not declared for the device, or a SenML name without a metric part) →
``non_numeric_value`` (string, boolean, data, sum, null, object or array) → ``wrong_unit`` (a
unit was sent and is neither the registry unit nor one of its aliases; without a unit the
registry unit is assumed) → ``non_finite_value`` → ``out_of_range`` (outside the registry's
inclusive ``[min, max]``) → ``bad_timestamp`` → ``timestamp_in_future`` (more than
``Limits.max_future`` after the receive time, default 5 min) → ``timestamp_too_old`` (more than
``Limits.max_past`` before it, default 7 days).

A rejected measurement gives one dead letter whose payload is that measurement alone, in its
original format (:meth:`connectors.mqtt.measurement.Measurement.extract`), so replaying it
never duplicates the accepted readings of the same message. Hence, for every message:
``len(readings) + len(rejections) == measurements`` when the payload decoded, else exactly
one dead letter.

Accepted readings carry the registry's kind, district, ward and canonical unit, the event time
as aware UTC (the receive time when the device sent none, ``time_source="receive"``),
``receive_time = received_at`` (as UTC) and ``source = "mqtt:<topic>"``. Dead letters carry
the same source, ``source_id`` = the device id (the topic itself, at most 256 characters, when
it is outside the layout) and ``received_at``.

Safety net: should the decoder itself fail on some input (a bug; the property tests look for
one), the message becomes one ``malformed_payload`` dead letter whose detail starts with
``internal decoder error`` and the traceback is logged at ERROR. One bad message can then
never stop the bridge, nor come back forever as an unacknowledged MQTT redelivery.

Speed: one regular expression per message (the topic; SenML adds one per distinct name), dict
lookups per measurement, orjson for parsing; datetimes are built once per distinct event time.
Roughly 150,000-300,000 readings/s on one core of the development machine (an ad hoc
measurement, not a benchmark).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from connectors.mqtt.measurement import Measurement
from connectors.mqtt.payload import DEFAULT_MAX_BYTES, PayloadError, decode_payload
from connectors.mqtt.timestamps import datetime_to_us, us_to_datetime
from connectors.mqtt.topics import parse_topic
from connectors.registry import Device, MetricSpec, Registry
from schemas.deadletter import DeadLetter, Reason
from schemas.readings import Reading

log = logging.getLogger(__name__)

UnknownDevicePolicy = Literal["reject", "quarantine"]
QUARANTINED: Final = "quarantined"
_MAX_SOURCE_ID: Final = 256
_US_PER_S: Final = 1_000_000
_US: Final = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Limits:
    """Acceptance limits of the MQTT decoder. ``ValueError`` on construction if nonsensical."""

    max_payload_bytes: int = DEFAULT_MAX_BYTES
    max_future: timedelta = timedelta(minutes=5)
    max_past: timedelta = timedelta(days=7)
    unknown_device_policy: UnknownDevicePolicy = "reject"

    def __post_init__(self) -> None:
        if self.max_payload_bytes < 1:
            raise ValueError(f"max_payload_bytes must be >= 1, got {self.max_payload_bytes}")
        if self.max_future < timedelta(0) or self.max_past < timedelta(0):
            raise ValueError("max_future and max_past must not be negative")
        if self.unknown_device_policy not in ("reject", "quarantine"):
            raise ValueError(
                f"unknown_device_policy must be 'reject' or 'quarantine', "
                f"got {self.unknown_device_policy!r}"
            )


@dataclass(slots=True)
class Decoded:
    """What one MQTT message gave: readings, dead letters and quarantined readings."""

    readings: list[Reading] = field(default_factory=list)
    rejections: list[DeadLetter] = field(default_factory=list)
    quarantined: list[Reading] = field(default_factory=list)
    measurements: int = 0
    """Measurements the payload held (0 when it failed as a whole)."""


def decode_message(
    topic: str,
    payload: bytes | bytearray | memoryview,
    received_at: datetime,
    registry: Registry,
    limits: Limits | None = None,
) -> Decoded:
    """Decode and validate one telemetry message (rules in the module docstring).

    Never raises for any ``topic`` and ``payload`` (paho's ``bytes`` or ``bytearray``; dead
    letters hold a ``bytes`` copy). ``received_at`` must be timezone-aware (a naive one is a
    programming error: ``ValueError``).
    """
    received_us = datetime_to_us(received_at)
    lim = limits if limits is not None else Limits()
    data = payload if type(payload) is bytes else bytes(payload)
    try:
        return _decode(topic, data, received_at, received_us, registry, lim)
    except Exception as exc:  # a decoder bug must not stop the bridge: log it, dead-letter
        log.exception("decoder error on a message from %r", topic[:_MAX_SOURCE_ID])
        return Decoded(
            rejections=[
                DeadLetter(
                    "malformed_payload",
                    f"internal decoder error ({type(exc).__name__}); please report",
                    _source(topic),
                    _safe(topic)[:_MAX_SOURCE_ID],
                    received_at,
                    data,
                )
            ]
        )


def _safe(text: str) -> str:
    """``text`` made encodable as UTF-8 (lone surrogates escaped)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _source(topic: str) -> str:
    return "mqtt:" + _safe(topic)


def _short(name: str) -> str:
    return repr(name) if len(name) <= 64 else repr(name[:64]) + "..."


def _decode(
    topic: str,
    payload: bytes,
    received_at: datetime,
    received_us: int,
    registry: Registry,
    limits: Limits,
) -> Decoded:
    parsed = parse_topic(topic)
    source = _source(topic)
    if parsed is None or parsed.channel != "telemetry":
        detail = (
            "status topic given to the telemetry decoder"
            if parsed is not None
            else "topic is not ioc/<district>/<kind>/<device-id>/telemetry with safe slugs"
        )
        dead = DeadLetter(
            "topic_outside_layout",
            detail,
            source,
            _safe(topic)[:_MAX_SOURCE_ID],
            received_at,
            payload,
        )
        return Decoded(rejections=[dead])

    device_id = parsed.device_id

    def whole(reason: Reason, detail: str) -> Decoded:
        return Decoded(
            rejections=[DeadLetter(reason, detail, source, device_id, received_at, payload)]
        )

    if len(payload) > limits.max_payload_bytes:
        return whole(
            "payload_too_large",
            f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes} bytes",
        )
    device = registry.device(device_id)
    if device is None:
        if limits.unknown_device_policy == "quarantine":
            out = whole("unknown_device", QUARANTINED)
            kind = registry.kind(parsed.kind)
            out.quarantined = _quarantine(
                parsed.district,
                parsed.kind,
                kind.metrics if kind is not None else {},
                device_id,
                payload,
                received_at,
                received_us,
                limits,
                source,
            )
            return out
        return whole("unknown_device", f"device {device_id!r} is not in the registry")
    if device.district != parsed.district or device.kind != parsed.kind:
        return whole(
            "device_mismatch",
            f"topic says district {parsed.district!r}, kind {parsed.kind!r}; the registry has "
            f"district {device.district!r}, kind {device.kind!r} for {device_id!r}",
        )
    try:
        measurements = decode_payload(payload, device_id, received_us, limits.max_payload_bytes)
    except PayloadError as exc:
        return whole(exc.reason, exc.detail)
    return _judge(device, measurements, received_at, received_us, limits, source)


def _window(received_us: int, limits: Limits) -> tuple[int, int]:
    """Earliest and latest acceptable event times, in microseconds since the epoch."""
    return (
        received_us - limits.max_past // _US,
        received_us + limits.max_future // _US,
    )


def _judge(
    device: Device,
    measurements: list[Measurement],
    received_at: datetime,
    received_us: int,
    limits: Limits,
    source: str,
) -> Decoded:
    out = Decoded(measurements=len(measurements))
    readings, rejections = out.readings, out.rejections
    metrics = device.metrics
    received_utc = received_at.astimezone(UTC)
    earliest, latest = _window(received_us, limits)
    times: dict[int, datetime] = {}
    reason: Reason
    why: str
    for m in measurements:
        spec = metrics.get(m.metric)
        value = m.value
        time_us = m.time_us
        if spec is None:
            reason, why = "unknown_metric", _unknown_metric(m, device)
        elif value is None:
            reason, why = "non_numeric_value", f"{m.value_type} value; only numbers are readings"
        elif m.unit is not None and m.unit != spec.unit and m.unit not in spec.aliases:
            reason, why = (
                "wrong_unit",
                f"unit {_short(m.unit)}, expected {spec.unit!r}"
                + (f" or one of {', '.join(map(repr, spec.aliases))}" if spec.aliases else ""),
            )
        elif not math.isfinite(value):
            reason, why = "non_finite_value", f"value {value!r} is not finite"
        elif value < spec.min or value > spec.max:
            reason, why = (
                "out_of_range",
                f"value {value!r} {spec.unit} is outside the plausible range "
                f"[{spec.min:g}, {spec.max:g}]",
            )
        elif m.time_error is not None:
            reason, why = "bad_timestamp", m.time_error
        elif time_us is not None and (time_us > latest or time_us < earliest):
            reason, why = _out_of_window(time_us, received_us, limits)
        else:
            event_time = received_utc if time_us is None else _at(time_us, times)
            if event_time is None:
                reason, why = "bad_timestamp", "event time outside the calendar (years 1-9999)"
            else:
                readings.append(
                    Reading(
                        device_id=device.id,
                        device_kind=device.kind,
                        district=device.district,
                        ward=device.ward,
                        metric=m.metric,
                        value=value,
                        unit=spec.unit,
                        event_time=event_time,
                        receive_time=received_utc,
                        time_source="receive" if time_us is None else m.time_source,
                        source=source,
                    )
                )
                continue
        rejections.append(
            DeadLetter(
                reason,
                f"measurement {m.index} ({_short(m.name)}): {why}",
                source,
                device.id,
                received_at,
                m.extract(),
            )
        )
    return out


def _at(time_us: int, cache: dict[int, datetime]) -> datetime | None:
    """The UTC datetime of ``time_us`` (cached: a payload's values often share a time)."""
    at = cache.get(time_us)
    if at is None:
        try:
            at = cache[time_us] = us_to_datetime(time_us)
        except OverflowError:
            return None
    return at


def _unknown_metric(m: Measurement, device: Device) -> str:
    if m.fmt == "senml" and not m.metric:
        return "the SenML name names the device itself, with no metric part"
    known = ", ".join(sorted(device.metrics))
    return (
        f"metric {_short(m.metric)} is not declared for {device.kind} device {device.id} ({known})"
    )


def _out_of_window(time_us: int, received_us: int, limits: Limits) -> tuple[Reason, str]:
    offset_s = (time_us - received_us) / _US_PER_S
    if offset_s > 0:
        return (
            "timestamp_in_future",
            f"event time is {offset_s:.3f} s after the receive time (limit {limits.max_future})",
        )
    return (
        "timestamp_too_old",
        f"event time is {-offset_s:.3f} s before the receive time (limit {limits.max_past})",
    )


def _quarantine(
    district: str,
    kind: str,
    kind_metrics: Mapping[str, MetricSpec],
    device_id: str,
    payload: bytes,
    received_at: datetime,
    received_us: int,
    limits: Limits,
    source: str,
) -> list[Reading]:
    """Readings of an unregistered device, as far as they can be read (see module docstring)."""
    try:
        measurements = decode_payload(payload, device_id, received_us, limits.max_payload_bytes)
    except PayloadError:
        return []
    received_utc = received_at.astimezone(UTC)
    earliest, latest = _window(received_us, limits)
    out: list[Reading] = []
    for m in measurements:
        value, time_us = m.value, m.time_us
        if not m.metric or value is None or not math.isfinite(value) or m.time_error:
            continue
        if time_us is not None and not earliest <= time_us <= latest:
            continue
        try:
            event_time = received_utc if time_us is None else us_to_datetime(time_us)
        except OverflowError:
            continue
        spec = kind_metrics.get(m.metric)
        unit = m.unit if m.unit is not None else (spec.unit if spec is not None else "")
        out.append(
            Reading(
                device_id=device_id,
                device_kind=kind,
                district=district,
                metric=m.metric,
                value=value,
                unit=unit,
                event_time=event_time,
                receive_time=received_utc,
                time_source="receive" if time_us is None else m.time_source,
                source=source,
            )
        )
    return out
