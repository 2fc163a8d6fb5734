"""The alert lifecycle: a pure, deterministic state machine.

``observe(state, rule, observation, now)`` and ``tick(state, rule, now)`` (or ``step`` for
either) return the next :class:`AlertState` and the :class:`AlertEvent` list of the changes. No
clock is read: time comes only from the observation's event time and ``now``; the same inputs
always give the same outputs. Operator actions are in :mod:`streams.alerts.actions`.

States: ``inactive → pending → firing → resolved``, plus ``nodata``.

Policies (each is tested in ``tests/unit/test_alert_machine.py``):

* **Pending** (``for``) is measured in event time: the alert fires on the first observation that
  still meets the condition at ``pending_since + for`` or later. A tick never promotes a value
  rule's pending alert (a tick carries no evidence that the condition still holds). If the
  condition clears first, the pending ends (``pending_cleared``, not notified): no alert.
* **Hysteresis**: a ladder rung fires at ``at`` and clears only past its ``clear``; a value
  oscillating inside the band gives one alert and one notification.
* **Keep firing**: when the condition clears, a firing alert stays firing until
  ``keep_firing_until`` = the clearing observation's time + ``keep_firing_for``; the condition
  coming back meanwhile continues the same alert. An observation or a tick at or after
  ``keep_firing_until`` resolves it.
* **Severity** moves in place (same alert id): ``escalated`` is notified, ``deescalated`` is
  not (it is published and kept in history). An escalation clears an acknowledgement: the
  acknowledger accepted a lesser problem, so the new severity notifies again and needs a new
  acknowledgement (PagerDuty's re-trigger practice; Alertmanager also notifies on a label
  change). A de-escalation keeps the acknowledgement.
* **New alert or same alert**: a new alert (``episode`` + 1, new ``alert_id``, new
  ``active_since``, acknowledgement and assignee reset) starts only from ``inactive`` or
  ``resolved``. While an alert is firing or no-data, every change belongs to it.
* **Manual resolve** while the condition still holds: the alert stays resolved
  (``rearm_required``) until the condition has been seen clear once; only then can a new alert
  start (going through ``for`` again). This avoids an instant re-fire of what the operator just
  closed.
* **No data**: for value rules with ``nodata_after``, a tick at ``now − last_seen ≥
  nodata_after`` turns a firing alert into ``nodata`` (notified) and drops a pending one. When
  data returns the alert goes back to ``firing`` (``data_returned``, notified, same alert) or
  resolves.
* **Silences** mute notifications (``notify=False``) but never hide events: changes during a
  silence are still published and kept. When a silence ends (expiry seen by any step, or
  ``unsilence``) an open alert is notified again. Silences cover a fingerprint, not one alert.
* **Reminders**: with ``repeat_every``, a tick re-notifies an open, unacknowledged, unsilenced
  alert once ``repeat_every`` has passed since the last notification.
* **Late observations** (event time before ``last_evaluated``) are ignored; replaying the last
  observation again changes nothing, so at-least-once redelivery never fires twice.
* ``revision`` increases by one per event; each event carries a snapshot of the state after it.
  Not events (the state is stored, nothing is published): value and memory updates, the start
  or cancellation of a keep-firing period, and severity moves while pending.
* **Annotations** are rendered from the rule's templates on ``pending``, ``firing``,
  ``escalated``, ``deescalated`` and ``data_returned``; a resolution keeps the last ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final

from schemas.alerts import (
    EMPTY_MEMORY,
    SYSTEM_ACTOR,
    AlertEvent,
    AlertState,
    EventKind,
    Severity,
    evolve,
    severity_rank,
)
from streams.alerts.evaluate import Condition, evaluate_observation, evaluate_tick
from streams.alerts.model import Observation, Tick, effective_labels, fingerprint
from streams.alerts.rules import Rule
from streams.alerts.templates import render

SEVERITY_NAMES: Final[Mapping[Severity, tuple[str, str]]] = {
    "critical": ("Khẩn cấp", "critical"),
    "major": ("Nghiêm trọng", "major"),
    "minor": ("Đáng lưu ý", "minor"),
    "warning": ("Cảnh báo", "warning"),
    "info": ("Thông tin", "info"),
}


#: Fields an observation updates on every step, which lifecycle decisions never read.
_OBSERVED: Final = frozenset({"labels", "memory", "last_seen", "last_evaluated", "value"})


class Recorder:
    """Accumulates one step's state changes and events (used by the machine and actions).

    :meth:`quiet` changes fields without an event (value, memory, timers); :meth:`emit` records
    a state change: bumps ``revision``, decides ``notify`` (worthy and not silenced at ``now``)
    and appends the event.
    """

    def __init__(self, state: AlertState, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        self._state = state
        self._quiet: dict[str, Any] = {}  # quiet changes not yet applied to _state
        self.now = now
        self.events: list[AlertEvent] = []

    @property
    def state(self) -> AlertState:
        """The state with every change so far."""
        if self._quiet:
            self._state, self._quiet = evolve(self._state, **self._quiet), {}
        return self._state

    @state.setter
    def state(self, value: AlertState) -> None:
        self._state, self._quiet = value, {}

    @property
    def lifecycle(self) -> AlertState:
        """The state for reading lifecycle fields (``state``, ``severity``, timers,
        acknowledgement, ``rearm_required``, ``episode``): quiet changes of the observation's
        own fields (:data:`_OBSERVED`) may not be applied yet. Saves a copy per observation."""
        if self._quiet.keys() <= _OBSERVED:
            return self._state
        return self.state

    def field(self, name: str) -> Any:
        """One field's current value (pending quiet changes included) without a copy."""
        return self._quiet[name] if name in self._quiet else getattr(self._state, name)

    def quiet(self, **changes: Any) -> None:
        """Change fields that are not a lifecycle change (no event, same revision).

        The machine's own values (``value``, ``memory``, timers) of the right types only: the
        copy, made once when the state is next read, skips :class:`AlertState`'s validation
        (it runs on every observation).
        """
        self._quiet.update(changes)

    def emit(
        self,
        kind: EventKind,
        at: datetime,
        *,
        worthy: bool,
        actor: str = SYSTEM_ACTOR,
        detail: str = "",
        comment: str = "",
        **changes: Any,
    ) -> None:
        """Record a state change and its event."""
        before = self.state
        after = replace(before, revision=before.revision + 1, **changes)
        notify = worthy and not after.silenced_at(self.now)
        if notify:
            after = replace(after, last_notified_at=self.now)
        if not detail:
            detail = f"{before.state} -> {after.state}"
            if before.severity != after.severity and after.severity is not None:
                detail += f", severity {before.severity} -> {after.severity}"
        self.state = after
        self.events.append(
            AlertEvent(
                fingerprint=after.fingerprint,
                rule=after.rule,
                alert_id=after.alert_id,
                revision=after.revision,
                kind=kind,
                at=at,
                actor=actor,
                notify=notify,
                from_state=before.state,
                to_state=after.state,
                from_severity=before.severity,
                to_severity=after.severity,
                state=replace(after, memory=EMPTY_MEMORY),
                detail=detail,
                comment=comment,
            )
        )


def render_annotations(
    rule: Rule,
    labels: Mapping[str, str],
    severity: Severity | None,
    value: float | None,
    state: str,
    context: Mapping[str, str | float],
) -> dict[str, str]:
    """Render the rule's annotation templates for one alert (never raises)."""
    fields: dict[str, object] = {**rule.template_vars, **labels, **context}
    fields.update(alertname=rule.name, state=state, severity=severity or "")
    vi, en = SEVERITY_NAMES.get(severity, ("", "")) if severity else ("", "")
    fields.update(severity_vi=vi, severity_en=en)
    if value is not None:
        fields["value"] = value
    return {key: render(template, fields) for key, template in rule.annotations.items()}


def new_state(rule: Rule, labels: Mapping[str, str]) -> AlertState:
    """A fresh inactive state for the subject ``labels`` identify (``ValueError`` if they don't).

    Useful to seed absence rules from the device registry, so that a device that never reports
    after a restart is still detected (its ``last_seen`` is then the seeding observation's).
    """
    subject = rule.subject_of(labels)
    if subject is None:
        raise ValueError(f"rule {rule.name!r}: labels lack identifying label(s) {rule.subject}")
    return AlertState(fingerprint(rule.name, subject), rule.name, rule.alert_labels(labels))


def _held(state: AlertState) -> Severity | None:
    if state.state in ("pending", "firing", "nodata") and state.keep_firing_until is None:
        return state.severity
    return None


def _annotations(
    rec: Recorder, rule: Rule, cond: Condition, severity: Severity | None, state: str
) -> dict[str, str]:
    return render_annotations(rule, rec.state.labels, severity, cond.value, state, cond.context)


def fire(rec: Recorder, rule: Rule, cond: Condition, at: datetime, since: datetime) -> None:
    """Start a new alert (new episode, ack and assignee reset)."""
    rec.emit(
        "firing",
        at,
        worthy=True,
        state="firing",
        episode=rec.state.episode + 1,
        severity=cond.severity,
        value=cond.value,
        active_since=since,
        fired_at=at,
        pending_since=None,
        resolved_at=None,
        resolved_by=None,
        keep_firing_until=None,
        acknowledged_by=None,
        acknowledged_at=None,
        assignee=None,
        rearm_required=False,
        annotations=_annotations(rec, rule, cond, cond.severity, "firing"),
    )


def resolve(
    rec: Recorder,
    at: datetime,
    *,
    value: float | None = None,
    actor: str = SYSTEM_ACTOR,
    comment: str = "",
    detail: str = "",
) -> None:
    """End the open alert; an operator's resolve (``actor`` not system) requires a re-arm.

    The annotations stay those of the last firing change: a resolved notice describes the
    problem that ended ("RESOLVED: <summary>"), while ``value`` shows the value at the end.
    """
    manual = actor != SYSTEM_ACTOR
    rec.emit(
        "resolved",
        at,
        worthy=True,
        actor=actor,
        comment=comment,
        detail=detail,
        state="resolved",
        resolved_at=at,
        resolved_by=actor if manual else None,
        keep_firing_until=None,
        pending_since=None,
        rearm_required=manual,
        value=rec.state.value if value is None else value,
    )


def expire_silence(rec: Recorder) -> None:
    """End a silence whose ``silenced_until`` has passed (re-notifies an open alert)."""
    state = rec.state
    if state.silenced_until is not None and rec.now >= state.silenced_until:
        rec.emit(
            "unsilenced",
            rec.now,
            worthy=state.is_open,
            detail="silence expired",
            silenced_until=None,
            silenced_by=None,
        )


def _firing_update(rec: Recorder, rule: Rule, cond: Condition, at: datetime) -> None:
    state = rec.state
    assert cond.severity is not None
    assert state.severity is not None
    old, new = severity_rank(state.severity), severity_rank(cond.severity)
    if new == old:
        rec.quiet(value=cond.value, keep_firing_until=None)
        return
    changes: dict[str, Any] = {
        "severity": cond.severity,
        "value": cond.value,
        "keep_firing_until": None,
        "annotations": _annotations(rec, rule, cond, cond.severity, "firing"),
    }
    detail = ""
    if new > old and state.acknowledged_by is not None:
        detail = f"severity {state.severity} -> {cond.severity}; acknowledgement cleared"
        changes.update(acknowledged_by=None, acknowledged_at=None)
    kind: EventKind = "escalated" if new > old else "deescalated"
    rec.emit(kind, at, worthy=new > old, detail=detail, **changes)


def advance(rec: Recorder, rule: Rule, cond: Condition, at: datetime) -> None:
    """Apply a condition observed at ``at`` to the lifecycle (see the module's policies)."""
    state = rec.lifecycle
    if state.state in ("inactive", "resolved"):
        if state.rearm_required:
            rec.quiet(value=cond.value, rearm_required=cond.active)
        elif not cond.active:
            rec.quiet(value=cond.value)
        elif rule.for_ <= timedelta(0):
            fire(rec, rule, cond, at, since=at)
        else:
            rec.emit(
                "pending",
                at,
                worthy=False,
                state="pending",
                pending_since=at,
                severity=cond.severity,
                value=cond.value,
                annotations=_annotations(rec, rule, cond, cond.severity, "pending"),
            )
    elif state.state == "pending":
        assert state.pending_since is not None
        if not cond.active:
            rec.emit(
                "pending_cleared",
                at,
                worthy=False,
                state="inactive",
                pending_since=None,
                severity=None,
                value=cond.value,
            )
        elif at - state.pending_since >= rule.for_:
            fire(rec, rule, cond, at, since=state.pending_since)
        else:
            rec.quiet(severity=cond.severity, value=cond.value)
    elif state.state == "firing":
        if cond.active:
            _firing_update(rec, rule, cond, at)
        elif rule.keep_firing_for > timedelta(0) and state.keep_firing_until is None:
            rec.quiet(value=cond.value, keep_firing_until=at + rule.keep_firing_for)
        elif state.keep_firing_until is not None and at < state.keep_firing_until:
            rec.quiet(value=cond.value)
        else:
            resolve(rec, at, value=cond.value)
    elif cond.active:  # nodata, and data came back still meeting the condition
        rec.emit(
            "data_returned",
            at,
            worthy=True,
            state="firing",
            severity=cond.severity,
            value=cond.value,
            keep_firing_until=None,
            annotations=_annotations(rec, rule, cond, cond.severity, "firing"),
        )
    else:  # nodata, and data came back clear
        resolve(rec, at, value=cond.value, detail="data returned, clear")


def _check(state: AlertState, rule: Rule) -> None:
    if state.rule != rule.name:
        raise ValueError(f"state of rule {state.rule!r} given with rule {rule.name!r}")


def observe(
    state: AlertState | None, rule: Rule, obs: Observation, now: datetime
) -> tuple[AlertState, list[AlertEvent]]:
    """Apply one observation; ``state`` is ``None`` for a fingerprint not seen before.

    Raises ``ValueError`` if the rule does not select the observation (callers pick rules with
    :meth:`Rule.selects`) or if ``state`` belongs to another fingerprint.
    """
    fp = rule.fingerprint_of(obs)
    if fp is None:
        raise ValueError(f"rule {rule.name!r} does not select metric {obs.metric!r} {obs.labels}")
    return observe_selected(state, rule, obs, fp, now)


def observe_selected(
    state: AlertState | None, rule: Rule, obs: Observation, fp: str, now: datetime
) -> tuple[AlertState, list[AlertEvent]]:
    """:func:`observe` for an observation the caller has already matched: ``fp`` must be
    ``rule.fingerprint_of(obs)`` (the alerter checks that once per item, not per observation).

    Raises ``ValueError`` if ``state`` belongs to another fingerprint or rule.
    """
    return observe_all(state, rule, (obs,), fp, now)


def observe_all(
    state: AlertState | None,
    rule: Rule,
    observations: Sequence[Observation],
    fp: str,
    now: datetime,
) -> tuple[AlertState, list[AlertEvent]]:
    """:func:`observe_selected` of each observation in turn, as one step: the same state and
    events as that loop, with one copy of the state instead of one per observation (quiet
    changes are gathered and applied once). ``observations`` must not be empty."""
    if not observations:
        raise ValueError("observe_all needs at least one observation")
    rec: Recorder | None = None
    seen_labels: tuple[Mapping[str, str], str] | None = None
    alert_labels: dict[str, str] = {}
    for obs in observations:
        if seen_labels is None or obs.labels is not seen_labels[0] or obs.metric != seen_labels[1]:
            alert_labels = rule.alert_labels(effective_labels(obs))
            seen_labels = (obs.labels, obs.metric)
        if rec is None:
            if state is None:
                state = AlertState(fp, rule.name, alert_labels)
            elif state.fingerprint != fp:
                raise ValueError(f"state {state.fingerprint} is not this observation's {fp}")
            _check(state, rule)
            rec = Recorder(state, now)
            expire_silence(rec)
        last_evaluated = rec.field("last_evaluated")
        if last_evaluated is not None and obs.event_time < last_evaluated:
            continue
        last_seen = rec.field("last_seen")
        evaluation = evaluate_observation(
            rule, rec.field("memory"), obs, held=_held(rec.lifecycle), last_seen=last_seen, now=now
        )
        seen = obs.event_time if last_seen is None else max(last_seen, obs.event_time)
        rec.quiet(
            labels=alert_labels,
            memory=evaluation.memory,
            last_seen=seen,
            last_evaluated=obs.event_time,
        )
        if evaluation.condition is not None:
            advance(rec, rule, evaluation.condition, evaluation.at)
    assert rec is not None
    return rec.state, rec.events


def _remind(rec: Recorder, rule: Rule) -> None:
    state = rec.state
    if rule.repeat_every is None or not state.is_open or state.acknowledged_by is not None:
        return
    base = state.last_notified_at or state.fired_at
    if base is not None and rec.now - base >= rule.repeat_every and not state.silenced_at(rec.now):
        rec.emit("reminder", rec.now, worthy=True, detail=f"still {state.state}, unacknowledged")


def tick(state: AlertState, rule: Rule, now: datetime) -> tuple[AlertState, list[AlertEvent]]:
    """Let time pass to ``now`` (the caller's clock, aware): silences, timers, absence, SLA."""
    _check(state, rule)
    rec = Recorder(state, now)
    expire_silence(rec)
    current = rec.state
    if rule.wall_clock:
        evaluation = evaluate_tick(
            rule, current.memory, held=_held(current), last_seen=current.last_seen, now=now
        )
        if evaluation.condition is not None:
            advance(rec, rule, evaluation.condition, evaluation.at)
    elif (
        current.state == "firing"
        and current.keep_firing_until is not None
        and now >= current.keep_firing_until
    ):
        resolve(rec, now, detail="condition clear for the keep-firing time")
    elif (
        rule.nodata_after is not None
        and current.state in ("pending", "firing")
        and current.last_seen is not None
        and now - current.last_seen >= rule.nodata_after
    ):
        if current.state == "pending":
            rec.emit(
                "pending_cleared",
                now,
                worthy=False,
                detail="no data",
                state="inactive",
                pending_since=None,
                severity=None,
            )
        else:
            rec.emit("nodata", now, worthy=True, detail="no data", state="nodata")
    _remind(rec, rule)
    return rec.state, rec.events


def step(
    state: AlertState | None, rule: Rule, item: Observation | Tick, now: datetime
) -> tuple[AlertState, list[AlertEvent]]:
    """:func:`observe` an observation or :func:`tick`; a tick needs an existing state."""
    if isinstance(item, Observation):
        return observe(state, rule, item, now)
    if state is None:
        raise ValueError("a tick needs an existing state (there is nothing to age)")
    return tick(state, rule, now)


def can_forget(state: AlertState, rule: Rule) -> bool:
    """Whether a stored state may be deleted without changing any future outcome.

    True only for SLA items that are closed (no longer outstanding), with no open alert and no
    silence: nothing about them can happen again. Other kinds keep memory (last seen, sample
    windows) that future observations depend on.
    """
    return (
        rule.kind == "sla"
        and not state.memory.outstanding
        and state.state in ("inactive", "resolved")
        and state.silenced_until is None
    )
