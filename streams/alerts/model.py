"""What the alert machine consumes (observations, ticks) and how alerts are identified.

The state, event and action types are the wire contracts of ``schemas.alerts`` and are
re-exported here so that alert code imports one module.

**Fingerprint.** ``fingerprint(rule, subject)`` is the first 16 hex digits (64 bits) of the
SHA-256 of the canonical JSON ``["<rule name>", [["<label>", "<value>"], ...]]`` with the
identifying labels sorted by name (UTF-8, no spaces). It is the same in every process and
Python version (no ``hash()``), does not depend on label order, and ignores every label that is
not identifying (a device moved to another ward keeps its alerts). Severity is not part of it:
an alert escalates in place.

**Observation.** One value of one metric (a reading, a closed-window indicator, or the status of
a tracked item such as a citizen's feedback) for one subject, at an event time. For SLA rules
``value > 0`` means the item still awaits its response and ``deadline`` is its due time.
``expected_interval`` is the subject's reporting interval from the device registry (absence
rules). Constructors raise ``ValueError`` for naive times, non-finite values or non-string
labels.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import orjson

from schemas.alerts import (
    EMPTY_MEMORY,
    SEVERITIES,
    SYSTEM_ACTOR,
    AlertAction,
    AlertEvent,
    AlertState,
    EventKind,
    Memory,
    Severity,
    StateName,
    severity_rank,
)

__all__ = [
    "EMPTY_MEMORY",
    "SEVERITIES",
    "SYSTEM_ACTOR",
    "TICK",
    "AlertAction",
    "AlertEvent",
    "AlertState",
    "EventKind",
    "Memory",
    "Observation",
    "Severity",
    "StateName",
    "Tick",
    "effective_labels",
    "fingerprint",
    "severity_rank",
]

#: The pseudo-label that carries an observation's metric name for matchers and templates.
METRIC_LABEL: Final = "metric"


@dataclass(frozen=True, slots=True)
class Observation:
    """One value of one metric for one subject at one event time (see module docstring)."""

    labels: Mapping[str, str]
    metric: str
    value: float
    event_time: datetime
    expected_interval: timedelta | None = None
    deadline: datetime | None = None

    def __post_init__(self) -> None:
        if not self.metric:
            raise ValueError("metric must not be empty")
        if (
            isinstance(self.value, bool)
            or not isinstance(self.value, int | float)
            or not math.isfinite(self.value)
        ):
            raise ValueError(f"value must be a finite number, got {self.value!r}")
        for name in ("event_time", "deadline"):
            when = getattr(self, name)
            if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
                raise ValueError(f"{name} must be a timezone-aware datetime, got {when!r}")
        if self.expected_interval is not None and self.expected_interval <= timedelta(0):
            raise ValueError("expected_interval must be positive")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.labels.items()):
            raise ValueError("labels must map strings to strings")

    @classmethod
    def trusted(
        cls,
        labels: Mapping[str, str],
        metric: str,
        value: float,
        event_time: datetime,
        expected_interval: timedelta | None = None,
        deadline: datetime | None = None,
    ) -> Observation:
        """An observation built *without* the checks above: only for decoders whose output
        already has the right types (string labels, a non-empty metric, a finite float, aware
        times, a positive interval); the alerter's internal messages, decoded on every step."""
        obs = object.__new__(cls)
        for name, field_value in (
            ("labels", labels),
            ("metric", metric),
            ("value", value),
            ("event_time", event_time),
            ("expected_interval", expected_interval),
            ("deadline", deadline),
        ):
            object.__setattr__(obs, name, field_value)
        return obs


@dataclass(frozen=True, slots=True)
class Tick:
    """The passage of time: lets clock-driven conditions (absence, SLA, timers) move on."""


TICK: Final = Tick()


def effective_labels(observation: Observation) -> dict[str, str]:
    """The observation's labels plus ``metric`` (its metric name, which wins on a clash)."""
    return {**observation.labels, METRIC_LABEL: observation.metric}


_FINGERPRINTS: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}  # a pure cache
_FINGERPRINTS_MAX: Final = 100_000  # cleared when full (subjects are devices, districts...)


def fingerprint(rule_name: str, subject: Mapping[str, str]) -> str:
    """Stable 64-bit hex fingerprint of a rule name and identifying labels (module docstring).

    Remembered per (rule, subject): the alerter asks for every observation it forwards."""
    key = (rule_name, tuple(sorted(subject.items())))
    found = _FINGERPRINTS.get(key)
    if found is None:
        canonical = orjson.dumps([rule_name, key[1]])
        found = hashlib.sha256(canonical).hexdigest()[:16]
        if len(_FINGERPRINTS) >= _FINGERPRINTS_MAX:
            _FINGERPRINTS.clear()
        _FINGERPRINTS[key] = found
    return found
