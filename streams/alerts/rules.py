"""Alert rules: what to watch, when it is a problem, how bad, and what to tell operators.

Frozen dataclasses, built and validated by :mod:`streams.alerts.loader` from
``deploy/alerts/rules.yaml``. Constructors validate too and raise :class:`ValueError` with a
message naming the offending field, so a rule built in code is held to the same standard.

Rule kinds (``Rule.kind``) and their spec:

* ``threshold`` — :class:`ThresholdSpec`: a severity :class:`Ladder` on the observed value,
  optionally one ladder per value of a label (river level per gauge station).
* ``rate_of_change`` — :class:`RateSpec`: a ladder on the least-squares slope over a window.
* ``flatline`` — :class:`FlatLineSpec`: the same value (within a tolerance) for a duration.
* ``out_of_range`` — :class:`RangeSpec`: a value outside the plausible ``[min, max]``.
* ``absence`` — :class:`AbsenceSpec`: no observation for ``after``, or ``intervals`` × the
  subject's expected interval (device silent; a whole district silent).
* ``sla`` — :class:`SlaSpec`: an outstanding item past its deadline; a ladder on how late.
* ``composite`` — :class:`CompositeSpec`: any/all of conditions on the latest value of several
  metrics of the same subject.

Labels: the observation's labels plus ``metric`` (the observation's metric name) are what
matchers, ``subject``, ``carry`` and templates see. ``subject`` names the identifying labels:
with the rule name they make the alert's fingerprint. An observation that lacks one of them, or
whose metric the rule does not watch, or that a matcher refuses, is not selected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise
from typing import Final, Literal

from schemas.alerts import Severity, severity_rank
from streams.alerts.matchers import Matcher, matches_all
from streams.alerts.model import Observation, effective_labels, fingerprint

RuleKind = Literal[
    "threshold", "rate_of_change", "flatline", "out_of_range", "absence", "sla", "composite"
]
RULE_KINDS: Final[tuple[RuleKind, ...]] = (
    "threshold",
    "rate_of_change",
    "flatline",
    "out_of_range",
    "absence",
    "sla",
    "composite",
)
Direction = Literal["above", "below"]
CompareOp = Literal[">", ">=", "<", "<=", "==", "!="]
ANNOTATION_KEYS: Final = (
    "summary_vi",
    "summary_en",
    "description_vi",
    "description_en",
    "runbook_url",
    "dashboard_url",
)


@dataclass(frozen=True, slots=True)
class Step:
    """One rung of a ladder: fire ``severity`` at ``at``; hold it until past ``clear``.

    ``label_vi``/``label_en`` name the rung for people ("BĐ II" / "alarm level II") and are
    available to templates as ``level_vi``/``level_en``.
    """

    severity: Severity
    at: float
    clear: float
    label_vi: str = ""
    label_en: str = ""


@dataclass(frozen=True, slots=True)
class Ladder:
    """Severity rungs with hysteresis.

    For ``direction="above"``: rung *i* is reached when ``value >= at_i`` and, once reached, held
    while ``value >= clear_i`` (it clears only strictly below ``clear_i``). ``below`` mirrors
    this (reached at ``value <= at_i``, held while ``value <= clear_i``). Rungs are ordered from
    the least to the most severe; ``at`` strictly increases (decreases for ``below``), severities
    strictly increase, each ``clear`` is on the safe side of its ``at`` (or equal: no
    hysteresis) and the clears are monotonic too. Anything else raises ``ValueError``.
    """

    steps: tuple[Step, ...]
    direction: Direction = "above"

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("ladder: needs at least one step")
        if self.direction not in ("above", "below"):
            raise ValueError(f"direction: must be 'above' or 'below', got {self.direction!r}")
        sign = self._sign
        for i, step in enumerate(self.steps):
            severity_rank(step.severity)
            if sign * step.clear > sign * step.at:
                side = "at or below" if sign > 0 else "at or above"
                raise ValueError(
                    f"ladder[{i}].clear: {step.clear} is on the wrong side of the fire "
                    f"threshold {step.at}; for direction {self.direction!r} it must be {side} it"
                )
        for i, (a, b) in enumerate(pairwise(self.steps), start=1):
            if sign * b.at <= sign * a.at:
                order = "increase" if sign > 0 else "decrease"
                raise ValueError(
                    f"ladder[{i}].at: ladder not monotonic: thresholds must strictly {order} "
                    f"({a.at} then {b.at})"
                )
            if severity_rank(b.severity) <= severity_rank(a.severity):
                raise ValueError(
                    f"ladder[{i}].severity: ladder not monotonic: severities must increase "
                    f"({a.severity} then {b.severity})"
                )
            if sign * b.clear < sign * a.clear:
                raise ValueError(
                    f"ladder[{i}].clear: ladder not monotonic: clear thresholds must not go "
                    f"back ({a.clear} then {b.clear})"
                )

    @property
    def _sign(self) -> int:
        return 1 if self.direction == "above" else -1

    def index_of(self, severity: Severity | None) -> int | None:
        """The rung index of ``severity``, or ``None`` if the ladder has no such rung."""
        for i, step in enumerate(self.steps):
            if step.severity == severity:
                return i
        return None

    def level(self, value: float, held: int | None = None) -> int | None:
        """The rung index ``value`` reaches, given the rung ``held`` so far (hysteresis).

        Reached rungs count at ``at``; rungs up to ``held`` stay while ``value`` has not
        crossed their ``clear``. ``None`` means no rung: the condition is clear.
        """
        sign = self._sign
        reached = None
        for i, step in enumerate(self.steps):
            if sign * value >= sign * step.at:
                reached = i
        if held is not None:
            for j in range(min(held, len(self.steps) - 1) + 1):
                if sign * value >= sign * self.steps[j].clear and (reached is None or j > reached):
                    reached = j
        return reached


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """A ladder on the value; or one ladder per value of ``ladder_label`` (``ladders``)."""

    ladder: Ladder | None = None
    ladder_label: str | None = None
    ladders: Mapping[str, Ladder] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.ladder is None) == (self.ladder_label is None):
            raise ValueError("ladder: give either 'ladder' or 'ladder_by', not both or neither")
        if self.ladder_label is not None and not self.ladders:
            raise ValueError("ladder_by: no ladders")

    def ladder_for(self, labels: Mapping[str, str]) -> Ladder | None:
        """The ladder that applies to a subject, ``None`` if its label value has none."""
        if self.ladder is not None:
            return self.ladder
        assert self.ladder_label is not None
        return self.ladders.get(labels.get(self.ladder_label, ""))


@dataclass(frozen=True, slots=True)
class RateSpec:
    """Ladder on ``scale`` × the least-squares slope per ``per`` over the last ``window``.

    The rate exists only with at least ``min_samples`` samples covering at least half the
    window; ``unit`` is for people (``cm/h``).
    """

    ladder: Ladder
    window: timedelta
    per: timedelta = timedelta(hours=1)
    scale: float = 1.0
    min_samples: int = 3
    unit: str = ""

    def __post_init__(self) -> None:
        if self.window <= timedelta(0) or self.per <= timedelta(0):
            raise ValueError("window/per: must be positive durations")
        if self.min_samples < 2:
            raise ValueError("min_samples: must be at least 2")


@dataclass(frozen=True, slots=True)
class FlatLineSpec:
    """Fires when the value stays within ``tolerance`` of a run's first value for ``duration``."""

    duration: timedelta
    severity: Severity
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        severity_rank(self.severity)
        if self.duration <= timedelta(0):
            raise ValueError("duration: must be positive")
        if self.tolerance < 0:
            raise ValueError("tolerance: must be >= 0")


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """Fires while the value is outside the plausible closed range ``[min, max]``."""

    severity: Severity
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        severity_rank(self.severity)
        if self.min is None and self.max is None:
            raise ValueError("min/max: give at least one bound")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min/max: min {self.min} must be below max {self.max}")


@dataclass(frozen=True, slots=True)
class AbsenceSpec:
    """Fires when a subject has been silent for ``after``, or ``intervals`` × its interval.

    The interval is the one the latest observation carried (from the device registry) or
    ``expected_interval``.
    """

    severity: Severity
    after: timedelta | None = None
    intervals: float | None = None
    expected_interval: timedelta | None = None

    def __post_init__(self) -> None:
        severity_rank(self.severity)
        if (self.after is None) == (self.intervals is None):
            raise ValueError("after/intervals: give exactly one of them")
        if self.after is not None and self.after <= timedelta(0):
            raise ValueError("after: must be positive")
        if self.intervals is not None and self.intervals <= 0:
            raise ValueError("intervals: must be positive")
        if self.expected_interval is not None and self.expected_interval <= timedelta(0):
            raise ValueError("expected_interval: must be positive")

    def silence_limit(self, interval_s: float | None) -> timedelta | None:
        """How long a subject may stay silent; ``None`` if its interval is unknown."""
        if self.after is not None:
            return self.after
        assert self.intervals is not None
        if interval_s is not None:
            return timedelta(seconds=interval_s) * self.intervals
        if self.expected_interval is not None:
            return self.expected_interval * self.intervals
        return None


@dataclass(frozen=True, slots=True)
class SlaSpec:
    """Ladder on how late (seconds past the deadline) an outstanding item is."""

    ladder: Ladder


@dataclass(frozen=True, slots=True)
class Leaf:
    """``latest value of metric  op  value``; false when the metric has no fresh value."""

    metric: str
    op: CompareOp
    value: float


@dataclass(frozen=True, slots=True)
class Group:
    """``any`` or ``all`` of leaves and nested groups."""

    mode: Literal["any", "all"]
    children: tuple[Leaf | Group, ...]

    def __post_init__(self) -> None:
        if not self.children:
            raise ValueError(f"condition.{self.mode}: needs at least one condition")

    def metrics(self) -> frozenset[str]:
        """Every metric a leaf of this group reads."""
        found: set[str] = set()
        for child in self.children:
            found |= {child.metric} if isinstance(child, Leaf) else child.metrics()
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class CompositeSpec:
    """Fires while ``condition`` holds on the latest values no older than ``max_age``."""

    condition: Group
    severity: Severity
    max_age: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        severity_rank(self.severity)
        if self.max_age <= timedelta(0):
            raise ValueError("max_age: must be positive")


Spec = ThresholdSpec | RateSpec | FlatLineSpec | RangeSpec | AbsenceSpec | SlaSpec | CompositeSpec


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule. ``metrics`` ``None`` means any metric (absence rules).

    Lifecycle settings: ``for_`` (pending duration, event time), ``keep_firing_for`` (how long
    an alert stays firing after its condition cleared), ``nodata_after`` (a firing alert whose
    subject has been silent this long goes to ``nodata``), ``repeat_every`` (remind while
    firing and unacknowledged). ``annotations`` maps :data:`ANNOTATION_KEYS` to templates;
    ``template_vars`` are the rule file's ``vars``.
    """

    name: str
    kind: RuleKind
    spec: Spec
    subject: tuple[str, ...]
    metrics: frozenset[str] | None = None
    matchers: tuple[Matcher, ...] = ()
    carry: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    nodata_after: timedelta | None = None
    repeat_every: timedelta | None = None
    template_vars: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: must not be empty")
        if not self.subject:
            raise ValueError("subject: name at least one identifying label")
        if self.kind not in RULE_KINDS:
            raise ValueError(f"type: unknown rule type {self.kind!r}")
        for name, value in (("for", self.for_), ("keep_firing_for", self.keep_firing_for)):
            if value < timedelta(0):
                raise ValueError(f"{name}: must not be negative")
        for name, opt in (("nodata_after", self.nodata_after), ("repeat_every", self.repeat_every)):
            if opt is not None and opt <= timedelta(0):
                raise ValueError(f"{name}: must be positive")
        unknown = sorted(set(self.annotations) - set(ANNOTATION_KEYS))
        if unknown:
            raise ValueError(f"annotations: unknown key(s) {unknown}")

    @property
    def wall_clock(self) -> bool:
        """Whether the condition depends on the clock (absence, SLA) rather than on values."""
        return self.kind in ("absence", "sla")

    def ladder_for(self, labels: Mapping[str, str]) -> Ladder | None:
        """The ladder for a subject's labels (``None`` for kinds without one)."""
        spec = self.spec
        if isinstance(spec, ThresholdSpec):
            return spec.ladder_for(labels)
        if isinstance(spec, RateSpec | SlaSpec):
            return spec.ladder
        return None

    def subject_of(self, labels: Mapping[str, str]) -> dict[str, str] | None:
        """The identifying labels, or ``None`` if one is missing or empty."""
        subject = {name: labels.get(name, "") for name in self.subject}
        return subject if all(subject.values()) else None

    def selects(self, observation: Observation) -> bool:
        """Whether this rule applies to ``observation``: metric, matchers, subject, ladder."""
        if self.metrics is not None and observation.metric not in self.metrics:
            return False
        labels = effective_labels(observation)
        if not matches_all(self.matchers, labels) or self.subject_of(labels) is None:
            return False
        return not (isinstance(self.spec, ThresholdSpec) and self.ladder_for(labels) is None)

    def fingerprint_of(self, observation: Observation) -> str | None:
        """The fingerprint of the alert ``observation`` feeds, ``None`` if not selected.

        This is the key of the alert's state in the worker's table and on ``ioc.alerts``.
        """
        if not self.selects(observation):
            return None
        subject = self.subject_of(effective_labels(observation))
        return None if subject is None else fingerprint(self.name, subject)

    def alert_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels an alert carries: ``alertname``, the rule's, carried and subject labels."""
        out = {"alertname": self.name, **self.labels}
        out.update({n: labels[n] for n in self.carry if labels.get(n)})
        out.update({n: labels.get(n, "") for n in self.subject})
        return out


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules of one file, in file order, with unique names."""

    rules: tuple[Rule, ...]
    source: str = "<rules>"

    def __post_init__(self) -> None:
        names = [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate rule name(s) {duplicates}")

    def __getitem__(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def metrics(self) -> frozenset[str] | None:
        """Every metric some rule selects; ``None`` if a rule takes any metric (absence)."""
        found: set[str] = set()
        for rule in self.rules:
            if rule.metrics is None:
                return None
            found |= rule.metrics
        return frozenset(found)

    def selecting(self, observation: Observation) -> list[Rule]:
        """The rules that apply to ``observation``, in file order."""
        return [r for r in self.rules if r.selects(observation)]
