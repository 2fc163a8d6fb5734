"""Alert state: the lifecycle of one alert fingerprint, and its ``ioc.alert-state/v1`` form.

One :class:`AlertState` is everything the stream worker knows about one fingerprint (rule +
identifying labels), including the evaluator's :class:`Memory` (sample window, SLA
deadline...). The worker keeps it in its Faust table as an ``ioc.alert-state/v1`` JSON
document (UTF-8, ``schema`` tag first); alert events (:mod:`schemas.alert_events`) embed the
same JSON object without the memory. The severity and state vocabularies live here too.

Guarantees:

* ``decode_state(encode_state(s)) == s`` exactly: every time is UTC ISO 8601 with
  **microsecond** precision and a ``Z`` suffix, so a restarted worker resumes from precisely
  the state it stored.
* :func:`decode_state` and :func:`state_from_dict` raise
  :class:`~schemas.alert_wire.AlertFormatError` (a ``ValueError``) for anything that is not a
  valid v1 state; they never return a partially filled object. Unknown fields are ignored, so
  a newer writer may add fields without breaking an older reader; ``alert_id`` is written for
  readers but never read back (it is derived).
* :class:`AlertState` and :class:`Memory` validate on construction (aware datetimes, known
  state and severity names, finite values, string labels) and raise ``ValueError`` on bad
  input. Only :func:`evolve` skips that validation, for the state machine's own updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, get_args

import orjson

from schemas.alert_wire import (
    AlertFormatError,
    check_aware,
    check_finite,
    format_opt_time,
    format_time_us,
    load_document,
    read_bool,
    read_int,
    read_number,
    read_opt_str,
    read_opt_time,
    read_str,
    read_str_map,
)
from schemas.readings import parse_time

__all__ = [
    "EMPTY_MEMORY",
    "SEVERITIES",
    "STATES",
    "STATE_SCHEMA",
    "AlertState",
    "Memory",
    "Severity",
    "StateName",
    "decode_state",
    "encode_state",
    "evolve",
    "memory_to_dict",
    "severity_rank",
    "state_from_dict",
    "state_to_dict",
]

STATE_SCHEMA: Final = "ioc.alert-state/v1"

Severity = Literal["info", "warning", "minor", "major", "critical"]
#: Severities from the least to the most severe; the index is the rank.
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)

StateName = Literal["inactive", "pending", "firing", "resolved", "nodata"]
STATES: Final[tuple[StateName, ...]] = get_args(StateName)


def severity_rank(severity: Severity) -> int:
    """0 for ``info`` up to 4 for ``critical``; ``ValueError`` for an unknown name."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {SEVERITIES}") from None


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
            check_aware("memory sample time", when)
            check_finite("memory sample value", value)
        for _metric, when, value in self.inputs:
            check_aware("memory input time", when)
            check_finite("memory input value", value)
        check_aware("deadline", self.deadline)
        check_finite("interval_s", self.interval_s)


EMPTY_MEMORY: Final = Memory()

#: The time fields of :class:`AlertState`, in their order on the wire.
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
class AlertState:
    """The lifecycle state of one alert fingerprint (rule + identifying labels).

    ``episode`` counts the alerts that ever fired for this fingerprint; the current (or last)
    alert is ``alert_id`` = ``"{fingerprint}:{episode}"``. ``revision`` counts state changes
    (one per :class:`~schemas.alert_events.AlertEvent`). ``severity`` and ``value`` survive
    resolution (they show what the alert was when it ended). Times: ``pending_since``,
    ``active_since`` (when the condition of the current alert began), ``fired_at``,
    ``resolved_at``, ``keep_firing_until`` and ``last_evaluated``/``last_seen`` (latest
    observation's event time) come from the rules; ``acknowledged_at`` and ``silenced_until``
    from operators. ``rearm_required`` is set by a manual resolve while the condition still
    held: no new alert until the condition has cleared once.
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
        check_finite("value", self.value)
        if self.episode < 0 or self.revision < 0:
            raise ValueError("episode and revision must be >= 0")
        for name in _STATE_TIMES:
            check_aware(name, getattr(self, name))
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


# --- encoding -------------------------------------------------------------------------------


def memory_to_dict(memory: Memory) -> dict[str, Any]:
    """The memory as a JSON object."""
    return {
        "samples": [[format_time_us(t), v] for t, v in memory.samples],
        "inputs": [[m, format_time_us(t), v] for m, t, v in memory.inputs],
        "deadline": format_opt_time(memory.deadline),
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
        obj[name] = format_opt_time(getattr(state, name))
    if with_memory:
        obj["memory"] = memory_to_dict(state.memory)
    return obj


def encode_state(state: AlertState) -> bytes:
    """Encode a state as an ``ioc.alert-state/v1`` document (for the worker's table)."""
    return orjson.dumps({"schema": STATE_SCHEMA, **state_to_dict(state)})


# --- decoding -------------------------------------------------------------------------------


def _memory_from(obj: object) -> Memory:
    if obj is None:
        return EMPTY_MEMORY
    if not isinstance(obj, dict):
        raise TypeError("memory must be an object")
    samples = tuple((parse_time(t), read_number(v, "sample")) for t, v in obj.get("samples", []))
    inputs = tuple(
        (str(m), parse_time(t), read_number(v, "input")) for m, t, v in obj.get("inputs", [])
    )
    interval = obj.get("interval_s")
    return Memory(
        samples=samples,
        inputs=inputs,
        deadline=read_opt_time(obj, "deadline"),
        outstanding=read_bool(obj, "outstanding"),
        interval_s=None if interval is None else read_number(interval, "interval_s"),
    )


def state_from_dict(obj: Mapping[str, Any]) -> AlertState:
    """Build a state from its JSON object; raises :class:`AlertFormatError` if malformed."""
    try:
        value = obj.get("value")
        times = {name: read_opt_time(obj, name) for name in _STATE_TIMES}
        return AlertState(
            fingerprint=read_str(obj, "fingerprint"),
            rule=read_str(obj, "rule"),
            labels=read_str_map(obj, "labels"),
            state=read_str(obj, "state"),  # type: ignore[arg-type]  # checked in __post_init__
            severity=read_opt_str(obj, "severity"),  # type: ignore[arg-type]
            value=None if value is None else read_number(value, "value"),
            annotations=read_str_map(obj, "annotations"),
            episode=read_int(obj, "episode"),
            revision=read_int(obj, "revision"),
            resolved_by=read_opt_str(obj, "resolved_by"),
            acknowledged_by=read_opt_str(obj, "acknowledged_by"),
            assignee=read_opt_str(obj, "assignee"),
            silenced_by=read_opt_str(obj, "silenced_by"),
            rearm_required=read_bool(obj, "rearm_required"),
            memory=_memory_from(obj.get("memory")),
            **times,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertFormatError(f"invalid alert state: {exc}") from None


def decode_state(data: bytes) -> AlertState:
    """Parse an ``ioc.alert-state/v1`` document; :class:`AlertFormatError` if malformed."""
    return state_from_dict(load_document(data, STATE_SCHEMA))
