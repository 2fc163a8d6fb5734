"""Alert events: the ``ioc.alerts/v1`` contract, one message per alert state change.

One :class:`AlertEvent` says what changed, who did it, when, and whether it is worth a
notification, with a snapshot of the :class:`~schemas.alert_state.AlertState` right after the
change (the evaluator's memory left out). Key on Kafka: the fingerprint. Value: one JSON
object (UTF-8)::

    {"schema": "ioc.alerts/v1", "fingerprint": "3f6c0a1e9b2d4c57", "rule": "vn_aqi_station",
     "alert_id": "3f6c0a1e9b2d4c57:2", "revision": 5, "kind": "escalated",
     "at": "2026-11-28T09:00:00.000000Z", "actor": "system", "notify": true,
     "from_state": "firing", "to_state": "firing", "from_severity": "minor",
     "to_severity": "major", "detail": "severity minor -> major", "comment": "",
     "state": {"fingerprint": "3f6c0a1e9b2d4c57", "state": "firing", "severity": "major", ...}}

Guarantees:

* ``(fingerprint, revision)`` identifies an event (:attr:`AlertEvent.event_id`): a consumer
  that sees the same pair twice (at-least-once delivery) may drop the second copy; the
  snapshot with the highest revision is the latest state of the fingerprint.
* ``decode_event(encode_event(e)) == e`` whenever ``e.state`` has an empty memory (the
  snapshot never carries memory; decoding gives ``Memory()``). Times are UTC ISO 8601 with
  microseconds and ``Z``.
* :func:`decode_event` raises :class:`~schemas.alert_wire.AlertFormatError` (a ``ValueError``)
  for anything that is not a valid v1 event; it never returns a partially filled object.
  Unknown fields are ignored.
* :class:`AlertEvent` validates on construction (known kind, state and severity names, aware
  ``at``, non-empty actor) and raises ``ValueError`` on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

import orjson

from schemas.alert_state import (
    STATES,
    AlertState,
    Severity,
    StateName,
    severity_rank,
    state_from_dict,
    state_to_dict,
)
from schemas.alert_wire import (
    AlertFormatError,
    check_aware,
    format_time_us,
    load_document,
    read_int,
    read_opt_str,
    read_str,
)
from schemas.readings import parse_time

__all__ = [
    "EVENT_KINDS",
    "EVENT_SCHEMA",
    "AlertEvent",
    "EventKind",
    "decode_event",
    "encode_event",
    "event_to_dict",
]

EVENT_SCHEMA: Final = "ioc.alerts/v1"

EventKind = Literal[
    "pending",  # condition met, waiting for the rule's `for` duration (not notified)
    "pending_cleared",  # condition ended (or data stopped) before `for` elapsed (not notified)
    "firing",  # a new alert (new alert id)
    "escalated",  # severity went up in place
    "deescalated",  # severity went down in place
    "resolved",  # condition cleared (actor "system") or an operator resolved it
    "nodata",  # the subject went silent while the alert was firing
    "data_returned",  # data came back and the condition still holds
    "reminder",  # still firing, unacknowledged, rule's repeat interval elapsed
    "acknowledged",
    "unacknowledged",
    "assigned",
    "silenced",
    "unsilenced",  # an operator lifted the silence, or it expired
]
EVENT_KINDS: Final[tuple[EventKind, ...]] = get_args(EventKind)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One state change of one alert: what changed, who did it, when, and whether to notify.

    ``notify`` is the final word for notifiers: the change is notification-worthy *and* no
    silence covered it. ``state`` is the state right after the change, without the evaluator's
    memory (``Memory()``).
    """

    fingerprint: str
    rule: str
    alert_id: str | None
    revision: int
    kind: EventKind
    at: datetime
    actor: str
    notify: bool
    from_state: StateName
    to_state: StateName
    from_severity: Severity | None
    to_severity: Severity | None
    state: AlertState
    detail: str = ""
    comment: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        if self.from_state not in STATES or self.to_state not in STATES:
            raise ValueError("from_state/to_state must be alert state names")
        for sev in (self.from_severity, self.to_severity):
            if sev is not None:
                severity_rank(sev)
        check_aware("at", self.at)
        if not self.actor:
            raise ValueError("actor must not be empty")

    @property
    def event_id(self) -> str:
        """``"{fingerprint}#{revision}"``: unique per change, stable across redelivery."""
        return f"{self.fingerprint}#{self.revision}"


def event_to_dict(event: AlertEvent) -> dict[str, Any]:
    """The event as the JSON object published on ``ioc.alerts``."""
    return {
        "schema": EVENT_SCHEMA,
        "fingerprint": event.fingerprint,
        "rule": event.rule,
        "alert_id": event.alert_id,
        "revision": event.revision,
        "kind": event.kind,
        "at": format_time_us(event.at),
        "actor": event.actor,
        "notify": event.notify,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "from_severity": event.from_severity,
        "to_severity": event.to_severity,
        "detail": event.detail,
        "comment": event.comment,
        "state": state_to_dict(event.state, with_memory=False),
    }


def encode_event(event: AlertEvent) -> bytes:
    """Encode an event as one ``ioc.alerts`` message value."""
    return orjson.dumps(event_to_dict(event))


def decode_event(data: bytes) -> AlertEvent:
    """Parse an ``ioc.alerts/v1`` message value; :class:`AlertFormatError` if malformed."""
    obj = load_document(data, EVENT_SCHEMA)
    state_obj = obj.get("state")
    if not isinstance(state_obj, dict):
        raise AlertFormatError("invalid alert event: 'state' must be an object")
    state = state_from_dict(state_obj)
    try:
        notify = obj["notify"]
        if not isinstance(notify, bool):
            raise TypeError("notify must be true or false")
        return AlertEvent(
            fingerprint=read_str(obj, "fingerprint"),
            rule=read_str(obj, "rule"),
            alert_id=read_opt_str(obj, "alert_id"),
            revision=read_int(obj, "revision"),
            kind=read_str(obj, "kind"),  # type: ignore[arg-type]  # checked in __post_init__
            at=parse_time(read_str(obj, "at")),
            actor=read_str(obj, "actor"),
            notify=notify,
            from_state=read_str(obj, "from_state"),  # type: ignore[arg-type]
            to_state=read_str(obj, "to_state"),  # type: ignore[arg-type]
            from_severity=read_opt_str(obj, "from_severity"),  # type: ignore[arg-type]
            to_severity=read_opt_str(obj, "to_severity"),  # type: ignore[arg-type]
            detail=str(obj.get("detail", "")),
            comment=str(obj.get("comment", "")),
            state=state,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertFormatError(f"invalid alert event: {exc}") from None
