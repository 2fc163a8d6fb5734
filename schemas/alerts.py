"""Alert state, alert events and operator actions: the contracts of ``ioc.alerts`` and friends.

This module is the single import point of the three alert documents; the code lives in one
module per concept, and every name is re-exported here unchanged:

* :mod:`schemas.alert_state` — ``ioc.alert-state/v1``, one :class:`AlertState`: the whole
  lifecycle state of one alert fingerprint, including the evaluator's :class:`Memory` (sample
  window, SLA deadline...). This is what the stream worker keeps in its Faust table;
  :func:`decode_state` restores it exactly. Also the severity and state vocabularies.
* :mod:`schemas.alert_events` — ``ioc.alerts/v1``, one :class:`AlertEvent`: a state change
  (what, who, when, whether it is worth a notification) with a snapshot of the state after the
  change (memory left out). Key on Kafka: the fingerprint. ``(fingerprint, revision)``
  identifies an event: a consumer that sees the same pair twice (at-least-once delivery) may
  drop the second copy; the snapshot with the highest revision is the latest state of the
  fingerprint.
* :mod:`schemas.alert_actions` — ``ioc.alert-actions/v1``, one :class:`AlertAction` from an
  operator (acknowledge, unacknowledge, assign, resolve, silence, unsilence). Key on Kafka: the
  fingerprint.
* :mod:`schemas.alert_wire` — what the three share: :class:`AlertFormatError`,
  :func:`format_time_us` and the field checks and readers.

Example ``ioc.alerts/v1`` value (state abridged)::

    {"schema": "ioc.alerts/v1", "fingerprint": "3f6c0a1e9b2d4c57", "rule": "vn_aqi_station",
     "alert_id": "3f6c0a1e9b2d4c57:2", "revision": 5, "kind": "escalated",
     "at": "2026-11-28T09:00:00.000000Z", "actor": "system", "notify": true,
     "from_state": "firing", "to_state": "firing", "from_severity": "minor",
     "to_severity": "major", "detail": "severity minor -> major", "comment": "",
     "state": {"fingerprint": "3f6c0a1e9b2d4c57", "state": "firing", "severity": "major", ...}}

Guarantees:

* Every time is UTC ISO 8601 with a ``Z`` suffix, like ``ioc.readings``, but with
  **microsecond** precision so that ``decode_state(encode_state(s)) == s`` holds exactly (a
  restarted worker resumes from precisely the state it stored).
* Decoders raise :class:`AlertFormatError` (a ``ValueError``) for anything that is not a valid
  v1 document; they never return a partially filled object. Unknown fields are ignored, so a
  newer writer may add fields without breaking an older reader.
* The dataclasses validate on construction (aware datetimes, known state/severity/kind names,
  finite values) and raise ``ValueError`` on bad input.
* The names below are the same objects as in their home modules, and the bytes written are
  those of the single-module version this was split from (pinned by
  ``tests/unit/test_alert_schema_split.py``).
"""

from __future__ import annotations

from schemas.alert_actions import (
    ACTION_KINDS,
    ACTION_SCHEMA,
    SYSTEM_ACTOR,
    ActionKind,
    AlertAction,
    decode_action,
    encode_action,
)
from schemas.alert_events import (
    EVENT_KINDS,
    EVENT_SCHEMA,
    AlertEvent,
    EventKind,
    decode_event,
    encode_event,
    event_to_dict,
)
from schemas.alert_state import (
    EMPTY_MEMORY,
    SEVERITIES,
    STATE_SCHEMA,
    STATES,
    AlertState,
    Memory,
    Severity,
    StateName,
    decode_state,
    encode_state,
    evolve,
    memory_to_dict,
    severity_rank,
    state_from_dict,
    state_to_dict,
)
from schemas.alert_wire import AlertFormatError, format_time_us

__all__ = [
    "ACTION_KINDS",
    "ACTION_SCHEMA",
    "EMPTY_MEMORY",
    "EVENT_KINDS",
    "EVENT_SCHEMA",
    "SEVERITIES",
    "STATES",
    "STATE_SCHEMA",
    "SYSTEM_ACTOR",
    "ActionKind",
    "AlertAction",
    "AlertEvent",
    "AlertFormatError",
    "AlertState",
    "EventKind",
    "Memory",
    "Severity",
    "StateName",
    "decode_action",
    "decode_event",
    "decode_state",
    "encode_action",
    "encode_event",
    "encode_state",
    "event_to_dict",
    "evolve",
    "format_time_us",
    "memory_to_dict",
    "severity_rank",
    "state_from_dict",
    "state_to_dict",
]
