"""Evaluators: turn an observation (or a tick) into the condition the alert machine acts on.

One pure function per rule kind, dispatched by :func:`evaluate_observation` and
:func:`evaluate_tick`. Each returns an :class:`Evaluation`: the :class:`Condition` (is it a
problem, how severe, the value) or ``None`` when the input carries no evidence either way (a
tick for a value rule, a rate without enough samples, an SLA item without a deadline); the
updated per-subject :class:`~schemas.alerts.Memory`; and ``at``, the time the condition refers
to.

Time: value rules (threshold, rate of change, flat line, out of range, composite) live in
**event time** (``at`` is the observation's event time); clock rules (absence, SLA) compare
event times with the caller's ``now`` (``at`` is ``now``), because silence makes event time stop.

``held`` is the severity the alert holds (``None`` if none): ladders use it for hysteresis, so
a value between a rung's ``clear`` and ``at`` keeps the rung instead of flapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from schemas.alerts import Memory, Severity
from streams.alerts.durations import format_duration
from streams.alerts.model import Observation, effective_labels
from streams.alerts.rules import (
    AbsenceSpec,
    CompositeSpec,
    FlatLineSpec,
    Group,
    Ladder,
    Leaf,
    RangeSpec,
    RateSpec,
    Rule,
    SlaSpec,
    ThresholdSpec,
)
from streams.flood import ICT

Context = Mapping[str, str | float]


@dataclass(frozen=True, slots=True)
class Condition:
    """Whether the rule's condition holds, at which severity, the value, template extras."""

    active: bool
    severity: Severity | None
    value: float | None
    context: Context = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.active != (self.severity is not None):
            raise ValueError("an active condition has a severity, an inactive one has none")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What an evaluator found: ``condition`` (``None``: no evidence), memory, and time."""

    condition: Condition | None
    memory: Memory
    at: datetime


def ladder_condition(
    ladder: Ladder, value: float, held: Severity | None, extra: Context | None = None
) -> Condition:
    """The condition a ladder gives ``value`` with hysteresis around ``held``."""
    index = ladder.level(value, ladder.index_of(held))
    step = ladder.steps[0 if index is None else index]
    context: dict[str, str | float] = {
        "threshold": step.at,
        "clear_threshold": step.clear,
        "level_vi": step.label_vi,
        "level_en": step.label_en,
        **(extra or {}),
    }
    if index is None:
        return Condition(False, None, value, context)
    return Condition(True, step.severity, value, context)


def least_squares_slope(samples: tuple[tuple[datetime, float], ...]) -> float | None:
    """Slope in value units per second; ``None`` for fewer than 2 distinct times."""
    if len(samples) < 2:
        return None
    t0 = samples[0][0]
    xs = [(t - t0).total_seconds() for t, _ in samples]
    ys = [v for _, v in samples]
    x_mean = sum(xs) / len(xs)
    y_mean = sum(ys) / len(ys)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) / sxx


def _rate(spec: RateSpec, memory: Memory, obs: Observation, held: Severity | None) -> Evaluation:
    t = obs.event_time
    kept = [(w, v) for w, v in memory.samples if w != t and w >= t - spec.window]
    samples = tuple(sorted([*kept, (t, float(obs.value))], key=lambda s: s[0]))
    memory = replace(memory, samples=samples)
    covered = samples[-1][0] - samples[0][0]
    slope = least_squares_slope(samples)
    if len(samples) < spec.min_samples or covered < spec.window / 2 or slope is None:
        return Evaluation(None, memory, t)
    rate = slope * spec.per.total_seconds() * spec.scale
    extra: dict[str, str | float] = {
        "rate": rate,
        "unit": spec.unit,
        "window": format_duration(spec.window),
    }
    return Evaluation(ladder_condition(spec.ladder, rate, held, extra), memory, t)


def _flatline(spec: FlatLineSpec, memory: Memory, obs: Observation) -> Evaluation:
    t, value = obs.event_time, float(obs.value)
    run = memory.samples[0] if memory.samples else None
    if run is None or abs(value - run[1]) > spec.tolerance:
        run = (t, value)
    stuck_for = t - run[0]
    extra = {"stuck_for": format_duration(stuck_for), "duration": format_duration(spec.duration)}
    active = stuck_for >= spec.duration
    condition = Condition(active, spec.severity if active else None, run[1], extra)
    return Evaluation(condition, replace(memory, samples=(run,)), t)


def _range(spec: RangeSpec, memory: Memory, obs: Observation) -> Evaluation:
    value = float(obs.value)
    low = spec.min is not None and value < spec.min
    high = spec.max is not None and value > spec.max
    extra: dict[str, str | float] = {
        "side_vi": "thấp" if low else "cao",
        "side_en": "low" if low else "high",
    }
    if spec.min is not None:
        extra["min"] = spec.min
    if spec.max is not None:
        extra["max"] = spec.max
    active = low or high
    condition = Condition(active, spec.severity if active else None, value, extra)
    return Evaluation(condition, memory, obs.event_time)


def _absence(
    spec: AbsenceSpec, memory: Memory, last_seen: datetime | None, now: datetime
) -> Evaluation:
    limit = spec.silence_limit(memory.interval_s)
    if last_seen is None or limit is None:
        return Evaluation(None, memory, now)
    silent = max(now - last_seen, timedelta(0))
    extra = {
        "silent_for": format_duration(silent // timedelta(seconds=1) * timedelta(seconds=1)),
        "limit": format_duration(limit),
        "last_seen": last_seen.astimezone(ICT).strftime("%H:%M %d/%m/%Y"),
    }
    active = silent >= limit
    condition = Condition(active, spec.severity if active else None, silent.total_seconds(), extra)
    return Evaluation(condition, memory, now)


def _sla(spec: SlaSpec, memory: Memory, now: datetime, held: Severity | None) -> Evaluation:
    if memory.deadline is None:
        return Evaluation(None, memory, now)
    overdue = now - memory.deadline
    extra = {
        "overdue": format_duration(
            max(overdue, timedelta(0)) // timedelta(seconds=1) * timedelta(seconds=1)
        ),
        "deadline": memory.deadline.astimezone(ICT).strftime("%H:%M %d/%m/%Y"),
    }
    if not memory.outstanding:
        return Evaluation(Condition(False, None, overdue.total_seconds(), extra), memory, now)
    condition = ladder_condition(spec.ladder, overdue.total_seconds(), held, extra)
    return Evaluation(condition, memory, now)


_COMPARE: Final = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def group_holds(group: Group, latest: Mapping[str, float]) -> bool:
    """Evaluate an any/all tree on the latest values; a leaf without a value is false."""
    results = (
        (c.metric in latest and bool(_COMPARE[c.op](latest[c.metric], c.value)))
        if isinstance(c, Leaf)
        else group_holds(c, latest)
        for c in group.children
    )
    return any(results) if group.mode == "any" else all(results)


def _composite(spec: CompositeSpec, memory: Memory, obs: Observation) -> Evaluation:
    t = obs.event_time
    inputs = {m: (w, v) for m, w, v in memory.inputs if w >= t - spec.max_age}
    previous = inputs.get(obs.metric)
    if previous is None or previous[0] <= t:
        inputs[obs.metric] = (t, float(obs.value))
    memory = replace(memory, inputs=tuple((m, w, v) for m, (w, v) in sorted(inputs.items())))
    latest = {m: v for m, (_w, v) in inputs.items()}
    active = group_holds(spec.condition, latest)
    extra = {f"value_{m}": v for m, v in latest.items()}
    condition = Condition(active, spec.severity if active else None, float(obs.value), extra)
    return Evaluation(condition, memory, t)


def evaluate_observation(
    rule: Rule,
    memory: Memory,
    obs: Observation,
    *,
    held: Severity | None,
    last_seen: datetime | None,
    now: datetime,
) -> Evaluation:
    """Evaluate ``rule`` on an observation it selects (see :meth:`Rule.selects`).

    ``last_seen`` is the subject's latest event time before this observation.
    """
    spec = rule.spec
    if isinstance(spec, ThresholdSpec):
        ladder = rule.ladder_for(effective_labels(obs))
        if ladder is None:
            return Evaluation(None, memory, obs.event_time)
        condition = ladder_condition(ladder, float(obs.value), held)
        return Evaluation(condition, memory, obs.event_time)
    if isinstance(spec, RateSpec):
        return _rate(spec, memory, obs, held)
    if isinstance(spec, FlatLineSpec):
        return _flatline(spec, memory, obs)
    if isinstance(spec, RangeSpec):
        return _range(spec, memory, obs)
    if isinstance(spec, AbsenceSpec):
        if obs.expected_interval is not None:
            memory = replace(memory, interval_s=obs.expected_interval.total_seconds())
        seen = obs.event_time if last_seen is None else max(last_seen, obs.event_time)
        return _absence(spec, memory, seen, now)
    if isinstance(spec, SlaSpec):
        memory = replace(
            memory,
            outstanding=obs.value > 0,
            deadline=obs.deadline if obs.deadline is not None else memory.deadline,
        )
        return _sla(spec, memory, now, held)
    return _composite(spec, memory, obs)


def evaluate_tick(
    rule: Rule, memory: Memory, *, held: Severity | None, last_seen: datetime | None, now: datetime
) -> Evaluation:
    """Evaluate ``rule`` at clock time ``now``: only clock rules (absence, SLA) find evidence."""
    spec = rule.spec
    if isinstance(spec, AbsenceSpec):
        return _absence(spec, memory, last_seen, now)
    if isinstance(spec, SlaSpec):
        return _sla(spec, memory, now, held)
    return Evaluation(None, memory, now)
