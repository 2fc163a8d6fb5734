"""Operator actions on alerts (from ``ioc.alert-actions``): pure, audited, idempotent.

``apply_action(state, action)`` returns the next state and the events (one per change, with the
operator as ``actor`` and their comment). The action's own time ``action.at`` is the clock.

Rules:

* ``acknowledge``, ``assign`` and ``resolve`` need an open alert (firing or no-data);
  ``unacknowledge`` an acknowledged one. Otherwise :class:`ActionRejected` explains why.
* ``alert_id`` pins an action to one alert: if the fingerprint has moved to another alert (or
  to none), the action is rejected instead of landing on the wrong alert.
* Repeating an action that is already in effect (the same acknowledgement, assignee or silence
  end, resolving a resolved alert) changes nothing and emits no
  event, so at-least-once delivery of actions is harmless. A second acknowledgement by someone
  else is also a no-op: the first acknowledgement stands.
* ``silence`` works in any state (muting a subject ahead of maintenance included) and needs
  ``until`` after ``at``; a silence mutes notifications, never events.
* ``resolve`` by an operator sets ``rearm_required`` (see :mod:`streams.alerts.machine`).
* Notification-worthy: ``resolve`` (a resolved notice) and ``unsilence`` of an open alert; the
  others are published and kept in history but not notified.
"""

from __future__ import annotations

from schemas.alerts import AlertAction, AlertEvent, AlertState
from streams.alerts.machine import Recorder, expire_silence, resolve


class ActionRejected(ValueError):
    """An operator action that cannot apply to the alert's current state (reason inside)."""


def apply_action(state: AlertState, action: AlertAction) -> tuple[AlertState, list[AlertEvent]]:
    """Apply an operator action; :class:`ActionRejected` if it cannot apply (module docstring)."""
    if action.fingerprint != state.fingerprint:
        raise ActionRejected(
            f"action for {action.fingerprint} given the state of {state.fingerprint}"
        )
    rec = Recorder(state, action.at)
    expire_silence(rec)
    current = rec.state
    if action.alert_id is not None and action.alert_id != current.alert_id:
        raise ActionRejected(
            f"{action.action} of alert {action.alert_id} is stale: the current alert is "
            f"{current.alert_id or 'none'} ({current.state})"
        )
    kind = action.action
    needs_open = kind in ("acknowledge", "assign", "resolve")
    if needs_open and not current.is_open:
        if kind == "resolve" and current.state == "resolved":
            return rec.state, rec.events  # already resolved (e.g. a redelivered resolve)
        raise ActionRejected(f"cannot {kind}: no open alert (state {current.state})")
    common = {"actor": action.actor, "comment": action.comment}
    if kind == "acknowledge":
        if current.acknowledged_by is None:
            rec.emit(
                "acknowledged",
                action.at,
                worthy=False,
                detail=f"acknowledged by {action.actor}",
                acknowledged_by=action.actor,
                acknowledged_at=action.at,
                **common,
            )
    elif kind == "unacknowledge":
        if current.acknowledged_by is None:
            raise ActionRejected("cannot unacknowledge: the alert is not acknowledged")
        rec.emit(
            "unacknowledged",
            action.at,
            worthy=False,
            detail=f"acknowledgement by {current.acknowledged_by} withdrawn",
            acknowledged_by=None,
            acknowledged_at=None,
            **common,
        )
    elif kind == "assign":
        assignee = action.assignee or None
        if assignee != current.assignee:
            rec.emit(
                "assigned",
                action.at,
                worthy=False,
                detail=f"assigned to {assignee}" if assignee else "assignee removed",
                assignee=assignee,
                **common,
            )
    elif kind == "resolve":
        resolve(
            rec,
            action.at,
            actor=action.actor,
            comment=action.comment,
            detail="resolved by operator",
        )
    elif kind == "silence":
        assert action.until is not None
        if action.until <= action.at:
            raise ActionRejected(
                f"silence must end after it starts ({action.until} <= {action.at})"
            )
        if action.until != current.silenced_until:
            rec.emit(
                "silenced",
                action.at,
                worthy=False,
                detail=f"silenced until {action.until.isoformat()}",
                silenced_until=action.until,
                silenced_by=action.actor,
                **common,
            )
    elif current.silenced_until is not None:  # unsilence
        rec.emit(
            "unsilenced",
            action.at,
            worthy=current.is_open,
            detail=f"silence lifted by {action.actor}",
            silenced_until=None,
            silenced_by=None,
            **common,
        )
    return rec.state, rec.events
