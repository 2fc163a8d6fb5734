"""The alert lifecycle against scripted sequences with fixed timestamps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from schemas.alerts import AlertEvent, AlertState, decode_state, encode_state
from streams.alerts import (
    TICK,
    AlertAction,
    Observation,
    Rule,
    apply_action,
    can_forget,
    fingerprint,
    new_state,
    observe,
    parse_rules,
    step,
    tick,
)

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # 09:00 in Long Xuyên
DEVICE = {"device_id": "aq-lx-001", "device_kind": "air_quality", "district": "long-xuyen"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def make_rule(text: str) -> Rule:
    return parse_rules({"version": 1, "rules": [yaml.safe_load(text)]}, source="test").rules[0]


ANNOTATIONS = """
annotations:
  summary: {vi: "VN_AQI {value:.0f} tại {device_id}", en: "VN_AQI {value:.0f} at {device_id}"}
"""
AQI = make_rule(
    """
name: aqi
type: threshold
metric: vn_aqi_hourly
subject: [device_id]
carry: [district]
ladder:
  - {severity: minor, at: 101, clear: 91}
  - {severity: major, at: 151, clear: 141}
  - {severity: critical, at: 201, clear: 191}
"""
    + ANNOTATIONS
)


class Script:
    """Feeds observations, ticks and actions to one alert and keeps every event."""

    def __init__(self, rule: Rule, labels: dict[str, str] | None = None) -> None:
        self.rule = rule
        self.labels = dict(DEVICE if labels is None else labels)
        self.state: AlertState | None = None
        self.events: list[AlertEvent] = []

    def obs(
        self,
        minutes: float,
        value: float,
        *,
        metric: str | None = None,
        now: float | None = None,
        **extra: Any,
    ) -> list[AlertEvent]:
        assert self.rule.metrics is not None or metric is not None
        observation = Observation(
            self.labels,
            metric or sorted(self.rule.metrics or ())[0],
            value,
            at(minutes),
            **extra,
        )
        clock = at(minutes if now is None else now)
        self.state, events = observe(self.state, self.rule, observation, clock)
        self.events += events
        return events

    def tick(self, minutes: float) -> list[AlertEvent]:
        assert self.state is not None
        self.state, events = tick(self.state, self.rule, at(minutes))
        self.events += events
        return events

    def act(self, action: str, minutes: float, **fields: Any) -> list[AlertEvent]:
        assert self.state is not None
        request = AlertAction(action, self.state.fingerprint, "op.lan", at(minutes), **fields)  # type: ignore[arg-type]
        self.state, events = apply_action(self.state, request)
        self.events += events
        return events

    @property
    def current(self) -> AlertState:
        assert self.state is not None
        return self.state

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def notified(self) -> list[str]:
        return [e.kind for e in self.events if e.notify]


# --- threshold, hysteresis, pending --------------------------------------------------------------


def test_oscillation_inside_hysteresis_band_gives_one_alert_and_one_notification() -> None:
    s = Script(AQI)
    for minute, value in enumerate([95, 105, 98, 103, 92, 104, 96, 101, 93, 110]):
        s.obs(minute * 60, value)
    assert s.notified() == ["firing"]
    assert s.kinds() == ["firing"]
    assert s.current.state == "firing"
    s.obs(660, 90)  # strictly below the clear threshold 91
    assert s.notified() == ["firing", "resolved"]
    assert s.current.alert_id == f"{s.current.fingerprint}:1"


def test_without_hysteresis_the_same_oscillation_flaps() -> None:
    flappy = make_rule(
        """
name: aqi
type: threshold
metric: vn_aqi_hourly
subject: [device_id]
ladder: [{severity: minor, at: 101}]
"""
        + ANNOTATIONS
    )
    s = Script(flappy)
    for minute, value in enumerate([95, 105, 98, 103, 92, 104]):
        s.obs(minute * 60, value)
    assert s.notified().count("firing") == 3
    assert s.current.episode == 3


def test_clear_threshold_itself_still_holds_the_alert() -> None:
    s = Script(AQI)
    s.obs(0, 120)
    s.obs(60, 91)  # == clear: held ("clear only below the clear threshold")
    assert s.current.state == "firing"
    s.obs(120, 90.9)
    assert s.kinds() == ["firing", "resolved"]


PENDING = replace(AQI, for_=timedelta(minutes=10))


def test_pending_that_clears_before_for_produces_no_alert() -> None:
    s = Script(PENDING)
    s.obs(0, 120)
    s.obs(5, 125)
    s.obs(9, 80)
    s.obs(30, 85)
    assert s.kinds() == ["pending", "pending_cleared"]
    assert s.notified() == []
    assert s.current.state == "inactive"
    assert s.current.episode == 0
    assert s.current.alert_id is None


def test_pending_fires_on_first_observation_at_or_after_for() -> None:
    s = Script(PENDING)
    s.obs(0, 120)
    s.obs(9, 130)
    assert s.current.state == "pending"
    s.obs(10, 130)
    assert s.kinds() == ["pending", "firing"]
    firing = s.events[-1]
    assert firing.notify
    assert firing.state.active_since == at(0)
    assert firing.state.fired_at == at(10)
    assert firing.alert_id == f"{s.current.fingerprint}:1"


def test_pending_severity_at_fire_time_is_the_current_one() -> None:
    s = Script(PENDING)
    s.obs(0, 120)
    s.obs(5, 160)
    s.obs(10, 170)
    assert s.events[-1].kind == "firing"
    assert s.current.severity == "major"


def test_tick_never_promotes_a_value_rule_pending_alert() -> None:
    s = Script(PENDING)
    s.obs(0, 120)
    assert s.tick(60) == []
    assert s.current.state == "pending"


def test_pending_timer_survives_a_restart() -> None:
    s = Script(PENDING)
    s.obs(0, 120)
    s.state = decode_state(encode_state(s.current))  # worker restarts, table restored
    s.obs(10, 125)
    assert s.kinds() == ["pending", "firing"]
    assert s.current.active_since == at(0)


# --- severity ladder -----------------------------------------------------------------------------


def test_escalation_and_deescalation_update_severity_in_place() -> None:
    s = Script(AQI)
    s.obs(0, 120)
    alert_id = s.current.alert_id
    s.obs(60, 160)
    s.obs(120, 210)
    s.obs(180, 150)  # below critical's clear (191) but above major's clear (141)
    assert s.kinds() == ["firing", "escalated", "escalated", "deescalated"]
    assert [e.to_severity for e in s.events] == ["minor", "major", "critical", "major"]
    assert [e.notify for e in s.events] == [True, True, True, False]
    assert {e.alert_id for e in s.events} == {alert_id}
    assert s.current.episode == 1
    assert s.current.value == 150


def test_deescalation_skips_rungs_by_their_clear_thresholds() -> None:
    s = Script(AQI)
    s.obs(0, 250)
    s.obs(60, 95)  # below 141 and 191 but held at minor (>= 91)
    assert s.current.severity == "minor"
    assert s.current.state == "firing"


def test_escalation_after_acknowledgement_notifies_and_clears_the_ack() -> None:
    s = Script(AQI)
    s.obs(0, 120)
    s.act("acknowledge", 5)
    assert s.current.acknowledged_by == "op.lan"
    events = s.obs(60, 160)
    assert [(e.kind, e.notify) for e in events] == [("escalated", True)]
    assert s.current.acknowledged_by is None
    assert "acknowledgement cleared" in events[0].detail


def test_deescalation_keeps_the_acknowledgement() -> None:
    s = Script(AQI)
    s.obs(0, 160)
    s.act("acknowledge", 5)
    s.obs(60, 120)
    assert s.events[-1].kind == "deescalated"
    assert s.current.acknowledged_by == "op.lan"


# --- keep firing, new alerts, manual resolve ------------------------------------------------------

KEEP = replace(AQI, keep_firing_for=timedelta(minutes=30))


def test_keep_firing_bridges_a_short_clear_spell() -> None:
    s = Script(KEEP)
    s.obs(0, 120)
    s.obs(10, 80)  # clear: keep firing until 40
    assert s.current.state == "firing"
    assert s.current.keep_firing_until == at(40)
    s.obs(20, 130)  # back before 40: same alert
    assert s.current.keep_firing_until is None
    assert s.kinds() == ["firing"]


def test_keep_firing_resolves_on_tick_after_the_time() -> None:
    s = Script(KEEP)
    s.obs(0, 120)
    s.obs(10, 80)
    assert s.tick(39) == []
    events = s.tick(40)
    assert [(e.kind, e.notify) for e in events] == [("resolved", True)]
    assert s.current.resolved_at == at(40)


def test_keep_firing_resolves_on_a_clear_observation_after_the_time() -> None:
    s = Script(KEEP)
    s.obs(0, 120)
    s.obs(10, 80)
    s.obs(25, 85)
    s.obs(45, 82)
    assert s.kinds() == ["firing", "resolved"]
    assert s.current.resolved_at == at(45)


def test_value_in_band_during_keep_firing_does_not_rearm() -> None:
    s = Script(KEEP)
    s.obs(0, 120)
    s.obs(10, 80)
    s.obs(20, 95)  # between clear and at: the condition cleared and is not met again
    assert s.current.keep_firing_until == at(40)


def test_new_alert_only_after_the_previous_one_resolved() -> None:
    s = Script(AQI)
    s.obs(0, 120)
    s.act("acknowledge", 1)
    s.act("assign", 2, assignee="to.xuan")
    s.obs(60, 50)
    s.obs(120, 130)
    firsts = [e for e in s.events if e.kind == "firing"]
    assert [e.alert_id for e in firsts] == [
        f"{s.current.fingerprint}:1",
        f"{s.current.fingerprint}:2",
    ]
    assert s.current.active_since == at(120)
    assert s.current.acknowledged_by is None
    assert s.current.assignee is None


def test_manual_resolve_while_condition_holds_stays_resolved_until_rearmed() -> None:
    s = Script(AQI)
    s.obs(0, 120)
    events = s.act("resolve", 5, comment="đã xử lý nguồn đốt rác")
    assert [(e.kind, e.actor, e.notify) for e in events] == [("resolved", "op.lan", True)]
    assert s.current.resolved_by == "op.lan"
    s.obs(60, 130)
    s.obs(120, 140)
    assert s.current.state == "resolved"
    assert s.kinds() == ["firing", "resolved"]
    s.obs(180, 80)  # condition seen clear: re-armed
    assert not s.current.rearm_required
    s.obs(240, 125)
    assert s.kinds() == ["firing", "resolved", "firing"]
    assert s.current.episode == 2


# --- restart, duplicates, late data, determinism --------------------------------------------------

SEQUENCE = [(0, 95), (5, 120), (10, 130), (15, 160), (20, 150), (25, 95), (30, 85), (70, 80)]


def run_sequence(rule: Rule, *, restart: bool) -> list[AlertEvent]:
    s = Script(rule)
    for minute, value in SEQUENCE:
        s.obs(minute, value)
        if restart:
            s.state = decode_state(encode_state(s.current))
    s.tick(120)
    return s.events


def test_restart_from_stored_state_gives_the_same_events() -> None:
    rule = replace(AQI, for_=timedelta(minutes=5), keep_firing_for=timedelta(minutes=20))
    assert run_sequence(rule, restart=True) == run_sequence(rule, restart=False)
    kinds = [e.kind for e in run_sequence(rule, restart=False)]
    assert kinds == ["pending", "firing", "escalated", "deescalated", "resolved"]


def test_redelivered_observation_changes_nothing() -> None:
    s = Script(AQI)
    s.obs(0, 120)
    state = s.current
    assert s.obs(0, 120) == []
    assert s.current == state


def test_late_observation_is_ignored() -> None:
    s = Script(AQI)
    s.obs(10, 50)
    assert s.obs(5, 300) == []
    assert s.current.state == "inactive"


def test_same_inputs_give_same_outputs() -> None:
    first = run_sequence(AQI, restart=False)
    second = run_sequence(AQI, restart=False)
    assert first == second
    assert first[0] is not second[0]


def test_revisions_count_events_and_snapshots_leave_memory_out() -> None:
    events = run_sequence(replace(AQI, for_=timedelta(minutes=5)), restart=False)
    assert [e.revision for e in events] == list(range(1, len(events) + 1))
    assert all(e.state.revision == e.revision for e in events)
    assert all(e.event_id == f"{e.fingerprint}#{e.revision}" for e in events)


# --- labels, annotations, fingerprint ------------------------------------------------------------


def test_alert_carries_labels_and_rendered_annotations() -> None:
    s = Script(AQI)
    s.obs(0, 123.4)
    state = s.current
    assert state.labels == {"alertname": "aqi", "device_id": "aq-lx-001", "district": "long-xuyen"}
    assert state.annotations == {
        "summary_vi": "VN_AQI 123 tại aq-lx-001",
        "summary_en": "VN_AQI 123 at aq-lx-001",
    }
    assert state.fingerprint == fingerprint("aqi", {"device_id": "aq-lx-001"})
    assert AQI.fingerprint_of(Observation(DEVICE, "vn_aqi_hourly", 1.0, T0)) == state.fingerprint
    assert AQI.fingerprint_of(Observation(DEVICE, "pm25", 1.0, T0)) is None


def test_resolution_keeps_the_firing_annotations_and_records_the_end_value() -> None:
    s = Script(AQI)
    s.obs(0, 123.4)
    s.obs(60, 80)
    assert s.kinds() == ["firing", "resolved"]
    assert s.current.annotations["summary_en"] == "VN_AQI 123 at aq-lx-001"
    assert s.current.value == 80


def test_observe_refuses_observations_the_rule_does_not_select() -> None:
    other = Observation(DEVICE, "pm25", 10.0, T0)
    with pytest.raises(ValueError, match="does not select"):
        observe(None, AQI, other, T0)


def test_observe_refuses_a_state_of_another_fingerprint() -> None:
    s = Script(AQI)
    s.obs(0, 50)
    other = Observation({**DEVICE, "device_id": "aq-lx-002"}, "vn_aqi_hourly", 50.0, at(1))
    with pytest.raises(ValueError, match="not this observation"):
        observe(s.current, AQI, other, at(1))


def test_step_dispatches_and_a_tick_needs_a_state() -> None:
    observation = Observation(DEVICE, "vn_aqi_hourly", 120.0, T0)
    state, events = step(None, AQI, observation, T0)
    assert [e.kind for e in events] == ["firing"]
    assert step(state, AQI, TICK, at(1)) == (state, [])
    with pytest.raises(ValueError, match="existing state"):
        step(None, AQI, TICK, T0)


# --- no data, silences, reminders ----------------------------------------------------------------

NODATA = replace(AQI, nodata_after=timedelta(minutes=30))


def test_nodata_then_data_returns_still_firing() -> None:
    s = Script(NODATA)
    s.obs(0, 120)
    assert s.tick(29) == []
    events = s.tick(30)
    assert [(e.kind, e.notify, e.to_state) for e in events] == [("nodata", True, "nodata")]
    s.obs(40, 95)  # in the band: the held severity keeps it
    assert s.events[-1].kind == "data_returned"
    assert s.current.state == "firing"
    assert s.current.episode == 1


def test_nodata_then_data_returns_clear_resolves() -> None:
    s = Script(NODATA)
    s.obs(0, 120)
    s.tick(45)
    s.obs(50, 60)
    assert s.kinds() == ["firing", "nodata", "resolved"]


def test_nodata_drops_a_pending_alert_silently() -> None:
    s = Script(replace(NODATA, for_=timedelta(hours=2)))
    s.obs(0, 120)
    events = s.tick(31)
    assert [(e.kind, e.notify) for e in events] == [("pending_cleared", False)]


def test_silence_mutes_notifications_and_expiry_renotifies() -> None:
    s = Script(AQI)
    s.obs(0, 50)
    s.act("silence", 1, until=at(60))
    s.obs(10, 130)
    s.obs(20, 170)
    assert s.kinds() == ["silenced", "firing", "escalated"]
    assert s.notified() == []
    events = s.tick(60)
    assert [(e.kind, e.notify) for e in events] == [("unsilenced", True)]
    assert s.current.silenced_until is None


def test_silence_expiry_without_open_alert_is_not_notified() -> None:
    s = Script(AQI)
    s.obs(0, 50)
    s.act("silence", 1, until=at(60))
    events = s.obs(61, 60)
    assert [(e.kind, e.notify) for e in events] == [("unsilenced", False)]


def test_reminder_until_acknowledged() -> None:
    s = Script(replace(AQI, repeat_every=timedelta(hours=4)))
    s.obs(0, 120)
    assert s.tick(239) == []
    assert [(e.kind, e.notify) for e in s.tick(240)] == [("reminder", True)]
    assert s.tick(300) == []
    s.act("acknowledge", 301)
    assert s.tick(600) == []


def test_no_reminder_while_silenced() -> None:
    s = Script(replace(AQI, repeat_every=timedelta(hours=1)))
    s.obs(0, 120)
    s.act("silence", 10, until=at(200))
    assert s.tick(120) == []


# --- absence ------------------------------------------------------------------------------------

SILENT = make_rule(
    """
name: device_silent
type: absence
subject: [device_id]
intervals: 3
expected_interval: 60s
severity: warning
annotations:
  summary: {vi: "{device_id} im lặng {silent_for}", en: "{device_id} silent {silent_for}"}
"""
)


def test_absence_fires_and_clears() -> None:
    s = Script(SILENT)
    s.obs(0, 30.0, metric="pm25", expected_interval=timedelta(minutes=2))
    assert s.tick(5) == []  # 3 x 2 min = 6 min
    events = s.tick(6)
    assert [(e.kind, e.notify) for e in events] == [("firing", True)]
    assert s.current.annotations["summary_en"] == "aq-lx-001 silent 6m"
    events = s.obs(8, 31.0, metric="pm10", now=8.01)
    assert [(e.kind, e.notify) for e in events] == [("resolved", True)]


def test_absence_uses_the_rule_interval_when_the_device_gives_none() -> None:
    s = Script(SILENT)
    s.obs(0, 30.0, metric="pm25")
    assert s.tick(2.9) == []
    assert [e.kind for e in s.tick(3)] == ["firing"]


def test_district_silent_counts_any_device_of_the_district() -> None:
    rule = make_rule(
        """
name: district_silent
type: absence
subject: [district]
after: 15m
severity: major
annotations: {summary: {vi: "{district}", en: "{district}"}}
"""
    )
    one = Script(rule, {"district": "long-xuyen", "device_id": "aq-lx-001"})
    one.obs(0, 1.0, metric="pm25")
    two = Script(rule, {"district": "long-xuyen", "device_id": "rg-long-xuyen"})
    two.state = one.state
    two.obs(10, 1.9, metric="level")
    assert two.tick(20) == []
    assert [e.kind for e in two.tick(25)] == ["firing"]


def test_new_state_seeds_a_subject_from_the_registry() -> None:
    state = new_state(SILENT, {"device_id": "aq-lx-009", "district": "long-xuyen"})
    assert state.state == "inactive"
    assert state.fingerprint == fingerprint("device_silent", {"device_id": "aq-lx-009"})
    with pytest.raises(ValueError, match="identifying"):
        new_state(SILENT, {"district": "long-xuyen"})


# --- SLA ----------------------------------------------------------------------------------------

SLA = make_rule(
    """
name: feedback_sla
type: sla
metric: feedback_response
subject: [ticket_id]
ladder:
  - {severity: warning, overdue: 0s}
  - {severity: minor, overdue: 1d}
annotations: {summary: {vi: "{ticket_id} quá hạn {overdue}", en: "{ticket_id} overdue {overdue}"}}
"""
)


def test_sla_breach_escalates_over_time_and_resolves_on_response() -> None:
    s = Script(SLA, {"ticket_id": "PA-2026-0042", "district": "long-xuyen"})
    s.obs(0, 1, deadline=at(120))
    assert s.tick(119) == []
    assert [(e.kind, e.to_severity) for e in s.tick(120)] == [("firing", "warning")]
    assert [(e.kind, e.to_severity) for e in s.tick(120 + 24 * 60)] == [("escalated", "minor")]
    assert s.current.annotations["summary_en"] == "PA-2026-0042 overdue 1d"
    assert not can_forget(s.current, SLA)
    events = s.obs(1500, 0)  # responded
    assert [e.kind for e in events] == ["resolved"]
    assert can_forget(s.current, SLA)


def test_sla_response_before_deadline_never_fires() -> None:
    s = Script(SLA, {"ticket_id": "PA-2026-0043"})
    s.obs(0, 1, deadline=at(120))
    s.obs(60, 0)
    assert s.tick(600) == []
    assert s.events == []
