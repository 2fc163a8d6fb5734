"""MQTT topic layout: ``ioc/<district>/<device-kind>/<device-id>/<channel>``.

``channel`` is ``telemetry`` (JSON readings or a SenML pack) or ``status`` (``online`` /
``offline``, retained, also the device's will). Every other segment is a *safe slug*,
``[a-z0-9][a-z0-9_-]{0,63}`` (:data:`SEGMENT_PATTERN`): lowercase ASCII, so topics need no
escaping anywhere (Kafka keys, ClickHouse, URLs, Prometheus labels) and wildcards (``+``,
``#``), empty levels, ``$``-prefixed system topics and shared-subscription prefixes can never
be mistaken for a device.

Guarantees:

* :func:`parse_topic` never raises: any ``str`` gives a :class:`Topic` or ``None``.
* The builders raise :class:`ValueError` for a segment that is not a safe slug, so the
  platform never publishes (or subscribes to) a topic it would itself reject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

Channel = Literal["telemetry", "status"]

PREFIX: Final = "ioc"
SEGMENT_PATTERN: Final = r"[a-z0-9][a-z0-9_-]{0,63}"
_SEGMENT_RE: Final = re.compile(SEGMENT_PATTERN)
_TOPIC_RE: Final = re.compile(
    rf"ioc/({SEGMENT_PATTERN})/({SEGMENT_PATTERN})/({SEGMENT_PATTERN})/(telemetry|status)"
)
_MAX_TOPIC_CHARS: Final = 4 + 3 * 65 + len("telemetry")

TELEMETRY_FILTER: Final = "ioc/+/+/+/telemetry"
"""Every device's telemetry."""
STATUS_FILTER: Final = "ioc/+/+/+/status"
"""Every device's online/offline status."""


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic of the layout."""

    district: str
    kind: str
    device_id: str
    channel: Channel


def is_segment(value: str) -> bool:
    """True if ``value`` is a safe slug usable as one topic level."""
    return _SEGMENT_RE.fullmatch(value) is not None


def parse_topic(topic: str) -> Topic | None:
    """The parts of ``topic``, or ``None`` if it is outside the layout (never raises).

    Exactly five levels, the first ``ioc``, the last ``telemetry`` or ``status``, the three in
    between safe slugs. Case matters (``IOC/...`` is outside), and so does every byte: no
    trailing slash, no whitespace, no wildcard.
    """
    if len(topic) > _MAX_TOPIC_CHARS:
        return None
    match = _TOPIC_RE.fullmatch(topic)
    if match is None:
        return None
    district, kind, device_id, channel = match.groups()
    return Topic(district, kind, device_id, "telemetry" if channel == "telemetry" else "status")


def _check(**segments: str) -> None:
    for name, value in segments.items():
        if not isinstance(value, str) or not is_segment(value):
            raise ValueError(f"{name} {value!r} is not a safe topic segment ({SEGMENT_PATTERN})")


def telemetry_topic(district: str, kind: str, device_id: str) -> str:
    """``ioc/<district>/<kind>/<device_id>/telemetry``; ``ValueError`` on an unsafe segment."""
    _check(district=district, kind=kind, device_id=device_id)
    return f"{PREFIX}/{district}/{kind}/{device_id}/telemetry"


def status_topic(district: str, kind: str, device_id: str) -> str:
    """``ioc/<district>/<kind>/<device_id>/status``; ``ValueError`` on an unsafe segment."""
    _check(district=district, kind=kind, device_id=device_id)
    return f"{PREFIX}/{district}/{kind}/{device_id}/status"


def subscription_filter(
    channel: Channel = "telemetry",
    *,
    district: str = "+",
    kind: str = "+",
    device_id: str = "+",
    share_group: str | None = None,
) -> str:
    """A subscription filter for ``channel``, narrowed by any of district, kind or device.

    ``"+"`` (the default) matches any value at that level. With ``share_group`` the filter is
    an MQTT 5 shared subscription, ``$share/<group>/<filter>``, so several bridge replicas
    split the messages between them. Raises ``ValueError`` for an unsafe segment or group.
    """
    if channel not in ("telemetry", "status"):
        raise ValueError(f"channel must be 'telemetry' or 'status', got {channel!r}")
    levels = {"district": district, "kind": kind, "device_id": device_id}
    _check(**{k: v for k, v in levels.items() if v != "+"})
    base = f"{PREFIX}/{district}/{kind}/{device_id}/{channel}"
    if share_group is None:
        return base
    _check(share_group=share_group)
    return f"$share/{share_group}/{base}"


def subscription_filters(share_group: str | None = None) -> list[str]:
    """The bridge's filters: every telemetry and every status topic (optionally shared)."""
    return [
        subscription_filter("telemetry", share_group=share_group),
        subscription_filter("status", share_group=share_group),
    ]
