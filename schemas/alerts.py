"""Alert state, alert events and operator actions: the contracts of ``ioc.alerts`` and friends.

Three JSON documents (UTF-8), each with a ``schema`` tag:

* ``ioc.alert-state/v1`` — one :class:`AlertState`: the whole lifecycle state of one alert
  fingerprint, including the evaluator's memory (sample window, SLA deadline...). This is what
  the stream worker keeps in its Faust table; :func:`decode_state` restores it exactly.
* ``ioc.alerts/v1`` — one :class:`AlertEvent`: a state change (what, who, when, whether it is
  worth a notification) with a snapshot of the state after the change (memory left out). Key on
  Kafka: the fingerprint. ``(fingerprint, revision)`` identifies an event: a consumer that sees
  the same pair twice (at-least-once delivery) may drop the second copy; the snapshot with the
  highest revision is the latest state of the fingerprint.
* ``ioc.alert-actions/v1`` — one :class:`AlertAction` from an operator (acknowledge,
  unacknowledge, assign, resolve, silence, unsilence). Key on Kafka: the fingerprint.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

import orjson

from schemas.readings import parse_time

STATE_SCHEMA: Final = "ioc.alert-state/v1"
EVENT_SCHEMA: Final = "ioc.alerts/v1"
ACTION_SCHEMA: Final = "ioc.alert-actions/v1"

Severity = Literal["info", "warning", "minor", "major", "critical"]
#: Severities from the least to the most severe; the index is the rank.
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)

StateName = Literal["inactive", "pending", "firing", "resolved", "nodata"]
STATES: Final[tuple[StateName, ...]] = get_args(StateName)

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

ActionKind = Literal["acknowledge", "unacknowledge", "assign", "resolve", "silence", "unsilence"]
ACTION_KINDS: Final[tuple[ActionKind, ...]] = get_args(ActionKind)

#: The actor of every change the rules make by themselves (operators are named by their id).
SYSTEM_ACTOR: Final = "system"


class AlertFormatError(ValueError):
    """A document does not follow the alert state, alert event or alert action v1 format."""


def severity_rank(severity: Severity) -> int:
    """0 for ``info`` up to 4 for ``critical``; ``ValueError`` for an unknown name."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {SEVERITIES}") from None


def format_time_us(value: datetime) -> str:
    """UTC ISO 8601 with microseconds and ``Z``: ``2026-11-28T09:00:00.000000Z``."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not allowed; pass a timezone-aware datetime")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _aware(name: str, value: datetime | None) -> None:
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _finite(name: str, value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True, slots=True)
class Memory:
    """What an evaluator remembers about one subject between observations.

    * ``samples`` — ``(event time, value)`` pairs, oldest first: the sample window of a
      rate-of-change rule, or the start of the current run of equal values of a flat-line rule.
    * ``inputs`` — ``(metric, event time, value)``: the latest value per metric of a composite
      rule, sorted by metric.
    * ``deadline``/``outstanding`` — the due time of an SLA item and whether it still awaits
      its response.
    * ``interval_s`` — the subject's expected reporting interval (absence rules).
    """

    samples: tuple[tuple[datetime, float], ...] = ()
    inputs: tuple[tuple[str, datetime, float], ...] = ()
    deadline: datetime | None = None
    outstanding: bool = False
    interval_s: float | None = None

    def __post_init__(self) -> None:
        for when, value in self.samples:
            _aware("memory sample time", when)
            _finite("memory sample value", value)
        for _metric, when, value in self.inputs:
            _aware("memory input time", when)
            _finite("memory input value", value)
        _aware("deadline", self.deadline)
        _finite("interval_s", self.interval_s)


EMPTY_MEMORY: Final = Memory()


@dataclass(frozen=True, slots=True)
class AlertState:
    """The lifecycle state of one alert fingerprint (rule + identifying labels).

    ``episode`` counts the alerts that ever fired for this fingerprint; the current (or last)
    alert is ``alert_id`` = ``"{fingerprint}:{episode}"``. ``revision`` counts state changes
    (one per :class:`AlertEvent`). ``severity`` and ``value`` survive resolution (they show what
    the alert was when it ended). Times: ``pending_since``, ``active_since`` (when the condition
    of the current alert began), ``fired_at``, ``resolved_at``, ``keep_firing_until`` and
    ``last_evaluated``/``last_seen`` (latest observation's event time) come from the rules;
    ``acknowledged_at`` and ``silenced_until`` from operators.
    ``rearm_required`` is set by a manual resolve while the condition still held: no new alert
    until the condition has cleared once.
    """

    fingerprint: str
    rule: str
    labels: Mapping[str, str] = field(default_factory=dict)
    state: StateName = "inactive"
    severity: Severity | None = None
    value: float | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    episode: int = 0
    revision: int = 0
    pending_since: datetime | None = None
    active_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    keep_firing_until: datetime | None = None
    last_evaluated: datetime | None = None
    last_seen: datetime | None = None
    last_notified_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    assignee: str | None = None
    silenced_until: datetime | None = None
    silenced_by: str | None = None
    rearm_required: bool = False
    memory: Memory = EMPTY_MEMORY

    def __post_init__(self) -> None:
        if not self.fingerprint or not self.rule:
            raise ValueError("fingerprint and rule must not be empty")
        if self.state not in STATES:
            raise ValueError(f"unknown alert state {self.state!r}; expected one of {STATES}")
        if self.severity is not None:
            severity_rank(self.severity)
        _finite("value", self.value)
        if self.episode < 0 or self.revision < 0:
            raise ValueError("episode and revision must be >= 0")
        for name in _STATE_TIMES:
            _aware(name, getattr(self, name))
        for mapping in (self.labels, self.annotations):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
                raise ValueError("labels and annotations must map strings to strings")

    @property
    def alert_id(self) -> str | None:
        """``"{fingerprint}:{episode}"`` while firing, no-data or resolved; ``None`` otherwise."""
        if self.episode == 0 or self.state in ("inactive", "pending"):
            return None
        return f"{self.fingerprint}:{self.episode}"

    @property
    def is_open(self) -> bool:
        """Whether an alert is out (firing or no-data): what operators may ack or resolve."""
        return self.state in ("firing", "nodata")

    def silenced_at(self, now: datetime) -> bool:
        """Whether a silence covers ``now`` (``silenced_until`` is exclusive)."""
        return self.silenced_until is not None and now < self.silenced_until


_STATE_FIELDS: Final = tuple(AlertState.__dataclass_fields__)


def evolve(state: AlertState, **changes: Any) -> AlertState:
    """A copy of ``state`` with ``changes``, *without* re-running its validation.

    For the state machine's own quiet updates (value, memory, timers), whose types it
    guarantees, on its hot path (every observation); about five times cheaper than
    :func:`dataclasses.replace`. Anything from outside (decoded records, operator actions) and
    every lifecycle change goes through the validating constructor. Unknown field names raise
    ``TypeError``, as ``replace`` does.
    """
    unknown = changes.keys() - AlertState.__dataclass_fields__.keys()
    if unknown:
        raise TypeError(f"AlertState has no field(s) {sorted(unknown)}")
    new = object.__new__(AlertState)
    for name in _STATE_FIELDS:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(state, name))
    return new


_STATE_TIMES: Final = (
    "pending_since",
    "active_since",
    "fired_at",
    "resolved_at",
    "keep_firing_until",
    "last_evaluated",
    "last_seen",
    "last_notified_at",
    "acknowledged_at",
    "silenced_until",
)


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
        _aware("at", self.at)
        if not self.actor:
            raise ValueError("actor must not be empty")

    @property
    def event_id(self) -> str:
        """``"{fingerprint}#{revision}"``: unique per change, stable across redelivery."""
        return f"{self.fingerprint}#{self.revision}"


@dataclass(frozen=True, slots=True)
class AlertAction:
    """An operator's action on one alert fingerprint.

    ``alert_id`` (optional) pins the action to one alert: if the fingerprint has moved on to a
    newer alert, the action is rejected rather than applied to the wrong alert. ``silence``
    needs ``until``; ``assign`` needs ``assignee`` (``""`` removes the assignee).
    """

    action: ActionKind
    fingerprint: str
    actor: str
    at: datetime
    alert_id: str | None = None
    assignee: str | None = None
    until: datetime | None = None
    comment: str = ""
    action_id: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTION_KINDS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTION_KINDS}")
        if not self.fingerprint or not self.actor:
            raise ValueError("fingerprint and actor must not be empty")
        if self.actor == SYSTEM_ACTOR:
            raise ValueError(f"actor {SYSTEM_ACTOR!r} is reserved for the rules")
        _aware("at", self.at)
        _aware("until", self.until)
        if self.action == "silence" and self.until is None:
            raise ValueError("a silence needs 'until'")
        if self.action == "assign" and self.assignee is None:
            raise ValueError("an assignment needs 'assignee' ('' to unassign)")


# --- encoding -------------------------------------------------------------------------------


def _t(value: datetime | None) -> str | None:
    return None if value is None else format_time_us(value)


def memory_to_dict(memory: Memory) -> dict[str, Any]:
    """The memory as a JSON object."""
    return {
        "samples": [[format_time_us(t), v] for t, v in memory.samples],
        "inputs": [[m, format_time_us(t), v] for m, t, v in memory.inputs],
        "deadline": _t(memory.deadline),
        "outstanding": memory.outstanding,
        "interval_s": memory.interval_s,
    }


def state_to_dict(state: AlertState, *, with_memory: bool = True) -> dict[str, Any]:
    """The state as a JSON object (``alert_id`` included for readers; it is derived)."""
    obj: dict[str, Any] = {
        "fingerprint": state.fingerprint,
        "rule": state.rule,
        "alert_id": state.alert_id,
        "labels": dict(state.labels),
        "state": state.state,
        "severity": state.severity,
        "value": state.value,
        "annotations": dict(state.annotations),
        "episode": state.episode,
        "revision": state.revision,
        "resolved_by": state.resolved_by,
        "acknowledged_by": state.acknowledged_by,
        "assignee": state.assignee,
        "silenced_by": state.silenced_by,
        "rearm_required": state.rearm_required,
    }
    for name in _STATE_TIMES:
        obj[name] = _t(getattr(state, name))
    if with_memory:
        obj["memory"] = memory_to_dict(state.memory)
    return obj


def encode_state(state: AlertState) -> bytes:
    """Encode a state as an ``ioc.alert-state/v1`` document (for the worker's table)."""
    return orjson.dumps({"schema": STATE_SCHEMA, **state_to_dict(state)})


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


def encode_action(action: AlertAction) -> bytes:
    """Encode an operator action as one ``ioc.alert-actions`` message value."""
    return orjson.dumps(
        {
            "schema": ACTION_SCHEMA,
            "action": action.action,
            "fingerprint": action.fingerprint,
            "actor": action.actor,
            "at": format_time_us(action.at),
            "alert_id": action.alert_id,
            "assignee": action.assignee,
            "until": _t(action.until),
            "comment": action.comment,
            "action_id": action.action_id,
        }
    )


# --- decoding -------------------------------------------------------------------------------


def _load(data: bytes, schema: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise AlertFormatError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("schema") != schema:
        raise AlertFormatError(f"not a {schema} document")
    return obj


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {value!r}")
    return value


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    return None if obj.get(key) is None else _str(obj, key)


def _opt_time(obj: Mapping[str, Any], key: str) -> datetime | None:
    return None if obj.get(key) is None else parse_time(_str(obj, key))


def _num(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} must be a number, got {value!r}")
    return float(value)


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer, got {value!r}")
    return value


def _bool(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false, got {value!r}")
    return value


def _str_map(obj: Mapping[str, Any], key: str) -> dict[str, str]:
    value = obj.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError(f"{key} must map strings to strings")
    return dict(value)


def _memory_from(obj: object) -> Memory:
    if obj is None:
        return EMPTY_MEMORY
    if not isinstance(obj, dict):
        raise TypeError("memory must be an object")
    samples = tuple((parse_time(t), _num(v, "sample")) for t, v in obj.get("samples", []))
    inputs = tuple((str(m), parse_time(t), _num(v, "input")) for m, t, v in obj.get("inputs", []))
    interval = obj.get("interval_s")
    return Memory(
        samples=samples,
        inputs=inputs,
        deadline=_opt_time(obj, "deadline"),
        outstanding=_bool(obj, "outstanding"),
        interval_s=None if interval is None else _num(interval, "interval_s"),
    )


def state_from_dict(obj: Mapping[str, Any]) -> AlertState:
    """Build a state from its JSON object; raises :class:`AlertFormatError` if malformed."""
    try:
        value = obj.get("value")
        times = {name: _opt_time(obj, name) for name in _STATE_TIMES}
        return AlertState(
            fingerprint=_str(obj, "fingerprint"),
            rule=_str(obj, "rule"),
            labels=_str_map(obj, "labels"),
            state=_str(obj, "state"),  # type: ignore[arg-type]  # checked in __post_init__
            severity=_opt_str(obj, "severity"),  # type: ignore[arg-type]
            value=None if value is None else _num(value, "value"),
            annotations=_str_map(obj, "annotations"),
            episode=_int(obj, "episode"),
            revision=_int(obj, "revision"),
            resolved_by=_opt_str(obj, "resolved_by"),
            acknowledged_by=_opt_str(obj, "acknowledged_by"),
            assignee=_opt_str(obj, "assignee"),
            silenced_by=_opt_str(obj, "silenced_by"),
            rearm_required=_bool(obj, "rearm_required"),
            memory=_memory_from(obj.get("memory")),
            **times,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertFormatError(f"invalid alert state: {exc}") from None


def decode_state(data: bytes) -> AlertState:
    """Parse an ``ioc.alert-state/v1`` document; :class:`AlertFormatError` if malformed."""
    return state_from_dict(_load(data, STATE_SCHEMA))


def decode_event(data: bytes) -> AlertEvent:
    """Parse an ``ioc.alerts/v1`` message value; :class:`AlertFormatError` if malformed."""
    obj = _load(data, EVENT_SCHEMA)
    state_obj = obj.get("state")
    if not isinstance(state_obj, dict):
        raise AlertFormatError("invalid alert event: 'state' must be an object")
    state = state_from_dict(state_obj)
    try:
        notify = obj["notify"]
        if not isinstance(notify, bool):
            raise TypeError("notify must be true or false")
        return AlertEvent(
            fingerprint=_str(obj, "fingerprint"),
            rule=_str(obj, "rule"),
            alert_id=_opt_str(obj, "alert_id"),
            revision=_int(obj, "revision"),
            kind=_str(obj, "kind"),  # type: ignore[arg-type]  # checked in __post_init__
            at=parse_time(_str(obj, "at")),
            actor=_str(obj, "actor"),
            notify=notify,
            from_state=_str(obj, "from_state"),  # type: ignore[arg-type]
            to_state=_str(obj, "to_state"),  # type: ignore[arg-type]
            from_severity=_opt_str(obj, "from_severity"),  # type: ignore[arg-type]
            to_severity=_opt_str(obj, "to_severity"),  # type: ignore[arg-type]
            detail=str(obj.get("detail", "")),
            comment=str(obj.get("comment", "")),
            state=state,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertFormatError(f"invalid alert event: {exc}") from None


def decode_action(data: bytes) -> AlertAction:
    """Parse an ``ioc.alert-actions/v1`` message value; :class:`AlertFormatError` if malformed."""
    obj = _load(data, ACTION_SCHEMA)
    try:
        return AlertAction(
            action=_str(obj, "action"),  # type: ignore[arg-type]  # checked in __post_init__
            fingerprint=_str(obj, "fingerprint"),
            actor=_str(obj, "actor"),
            at=parse_time(_str(obj, "at")),
            alert_id=_opt_str(obj, "alert_id"),
            assignee=_opt_str(obj, "assignee"),
            until=_opt_time(obj, "until"),
            comment=str(obj.get("comment", "")),
            action_id=str(obj.get("action_id", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertFormatError(f"invalid alert action: {exc}") from None
