"""Operator actions: acknowledge, unacknowledge, assign, resolve, silence, with an audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.alerts import AlertAction, AlertState
from streams.alerts import ActionRejected, Observation, apply_action, observe, parse_rules

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
RULE = parse_rules(
    {
        "version": 1,
        "rules": [
            {
                "name": "level",
                "type": "threshold",
                "metric": "level",
                "subject": ["device_id"],
                "ladder": [{"severity": "minor", "at": 1.9, "clear": 1.8}],
                "annotations": {"summary": {"vi": "{value}", "en": "{value}"}},
            }
        ],
    }
).rules[0]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def state_with_level(level: float) -> AlertState:
    obs = Observation({"device_id": "rg-long-xuyen"}, "level", level, T0)
    state, _ = observe(None, RULE, obs, T0)
    return state


def action(state: AlertState, kind: str, minutes: float = 1, **fields: object) -> AlertAction:
    return AlertAction(kind, state.fingerprint, "op.lan", at(minutes), **fields)  # type: ignore[arg-type]


def test_acknowledge_is_audited_and_idempotent() -> None:
    firing = state_with_level(2.0)
    acked, events = apply_action(firing, action(firing, "acknowledge", comment="đang kiểm tra"))
    assert [(e.kind, e.actor, e.comment, e.notify) for e in events] == [
        ("acknowledged", "op.lan", "đang kiểm tra", False)
    ]
    assert acked.acknowledged_by == "op.lan"
    assert acked.acknowledged_at == at(1)
    assert acked.revision == firing.revision + 1
    again, events = apply_action(acked, action(acked, "acknowledge", 2))
    assert (again, events) == (acked, [])
    other = AlertAction("acknowledge", acked.fingerprint, "op.binh", at(3))
    assert apply_action(acked, other) == (acked, [])


def test_unacknowledge_needs_an_acknowledgement() -> None:
    firing = state_with_level(2.0)
    with pytest.raises(ActionRejected, match="not acknowledged"):
        apply_action(firing, action(firing, "unacknowledge"))
    acked, _ = apply_action(firing, action(firing, "acknowledge"))
    back, events = apply_action(acked, action(acked, "unacknowledge", 2))
    assert [e.kind for e in events] == ["unacknowledged"]
    assert back.acknowledged_by is None


def test_assign_and_unassign() -> None:
    firing = state_with_level(2.0)
    assigned, events = apply_action(firing, action(firing, "assign", assignee="to.xuan"))
    assert [(e.kind, e.detail) for e in events] == [("assigned", "assigned to to.xuan")]
    assert assigned.assignee == "to.xuan"
    assert apply_action(assigned, action(assigned, "assign", 2, assignee="to.xuan"))[1] == []
    cleared, _ = apply_action(assigned, action(assigned, "assign", 3, assignee=""))
    assert cleared.assignee is None


@pytest.mark.parametrize("kind", ["acknowledge", "assign", "resolve"])
def test_actions_on_alerts_that_are_not_open_are_rejected(kind: str) -> None:
    quiet = state_with_level(1.0)
    extra: dict[str, Any] = {"assignee": "to.xuan"} if kind == "assign" else {}
    with pytest.raises(ActionRejected, match="no open alert"):
        apply_action(quiet, action(quiet, kind, **extra))


def test_action_pinned_to_an_older_alert_is_rejected() -> None:
    firing = state_with_level(2.0)
    with pytest.raises(ActionRejected, match="stale"):
        apply_action(firing, action(firing, "acknowledge", alert_id=f"{firing.fingerprint}:7"))
    pinned = action(firing, "acknowledge", alert_id=firing.alert_id)
    assert apply_action(firing, pinned)[0].acknowledged_by == "op.lan"


def test_action_for_another_fingerprint_is_rejected() -> None:
    firing = state_with_level(2.0)
    wrong = AlertAction("acknowledge", "0000000000000000", "op.lan", at(1))
    with pytest.raises(ActionRejected, match="given the state of"):
        apply_action(firing, wrong)


def test_resolve_twice_is_a_no_op() -> None:
    firing = state_with_level(2.0)
    resolved, events = apply_action(firing, action(firing, "resolve"))
    assert [(e.kind, e.notify, e.to_state) for e in events] == [("resolved", True, "resolved")]
    assert resolved.rearm_required
    assert apply_action(resolved, action(resolved, "resolve", 2)) == (resolved, [])


def test_silence_validation_and_unsilence() -> None:
    firing = state_with_level(2.0)
    with pytest.raises(ActionRejected, match="end after"):
        apply_action(firing, action(firing, "silence", 5, until=at(5)))
    silenced, events = apply_action(firing, action(firing, "silence", until=at(60)))
    assert [(e.kind, e.notify) for e in events] == [("silenced", False)]
    assert silenced.silenced_by == "op.lan"
    assert apply_action(silenced, action(silenced, "silence", 2, until=at(60)))[1] == []
    lifted, events = apply_action(silenced, action(silenced, "unsilence", 3))
    assert [(e.kind, e.notify) for e in events] == [("unsilenced", True)]
    assert lifted.silenced_until is None
    assert apply_action(lifted, action(lifted, "unsilence", 4))[1] == []


def test_silence_ahead_of_maintenance_on_a_quiet_subject() -> None:
    quiet = state_with_level(1.0)
    silenced, events = apply_action(quiet, action(quiet, "silence", until=at(120)))
    assert [e.kind for e in events] == ["silenced"]
    obs = Observation({"device_id": "rg-long-xuyen"}, "level", 2.1, at(30))
    firing, events = observe(silenced, RULE, obs, at(30))
    assert [(e.kind, e.notify) for e in events] == [("firing", False)]
    assert firing.last_notified_at is None


def test_action_validation_on_construction() -> None:
    with pytest.raises(ValueError, match="until"):
        AlertAction("silence", "f", "op.lan", T0)
    with pytest.raises(ValueError, match="assignee"):
        AlertAction("assign", "f", "op.lan", T0)
    with pytest.raises(ValueError, match="reserved"):
        AlertAction("acknowledge", "f", "system", T0)
    with pytest.raises(ValueError, match="unknown action"):
        AlertAction("snooze", "f", "op.lan", T0)  # type: ignore[arg-type]
