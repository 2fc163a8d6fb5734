"""Wire formats of alert state (Faust table), alert events (ioc.alerts) and actions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.alerts import (
    ACTION_KINDS,
    EVENT_KINDS,
    SEVERITIES,
    STATES,
    AlertAction,
    AlertEvent,
    AlertFormatError,
    AlertState,
    Memory,
    decode_action,
    decode_event,
    decode_state,
    encode_action,
    encode_event,
    encode_state,
    format_time_us,
)

ICT = timezone(timedelta(hours=7))
T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)

times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001  # hypothesis bounds are naive by design
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, ICT]),
)
opt_times = st.none() | times
text = st.text(max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False)
memories = st.builds(
    Memory,
    samples=st.lists(st.tuples(times, finite), max_size=4).map(tuple),
    inputs=st.lists(st.tuples(text, times, finite), max_size=3).map(tuple),
    deadline=opt_times,
    outstanding=st.booleans(),
    interval_s=st.none() | st.floats(min_value=0.001, max_value=1e6),
)
states = st.builds(
    AlertState,
    fingerprint=st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
    rule=st.text(min_size=1, max_size=20),
    labels=st.dictionaries(text, text, max_size=4),
    state=st.sampled_from(STATES),
    severity=st.none() | st.sampled_from(SEVERITIES),
    value=st.none() | finite,
    annotations=st.dictionaries(text, text, max_size=3),
    episode=st.integers(min_value=0, max_value=10**6),
    revision=st.integers(min_value=0, max_value=10**9),
    pending_since=opt_times,
    active_since=opt_times,
    fired_at=opt_times,
    resolved_at=opt_times,
    resolved_by=st.none() | text,
    keep_firing_until=opt_times,
    last_evaluated=opt_times,
    last_seen=opt_times,
    last_notified_at=opt_times,
    acknowledged_by=st.none() | text,
    acknowledged_at=opt_times,
    assignee=st.none() | text,
    silenced_until=opt_times,
    silenced_by=st.none() | text,
    rearm_required=st.booleans(),
    memory=memories,
)


@given(states)
def test_state_round_trip_is_exact(state: AlertState) -> None:
    decoded = decode_state(encode_state(state))
    assert decoded == state
    assert decoded.alert_id == state.alert_id
    assert all(t is None or t.tzinfo == UTC for t in (decoded.fired_at, decoded.last_seen))


@given(states, st.sampled_from(EVENT_KINDS), times, st.booleans())
def test_event_round_trip(state: AlertState, kind: str, at: datetime, notify: bool) -> None:
    snapshot = replace(state, memory=Memory())
    event = AlertEvent(
        fingerprint=state.fingerprint,
        rule=state.rule,
        alert_id=state.alert_id,
        revision=state.revision,
        kind=kind,  # type: ignore[arg-type]
        at=at,
        actor="system",
        notify=notify,
        from_state="pending",
        to_state=state.state,
        from_severity=None,
        to_severity=state.severity,
        state=snapshot,
        detail="pending -> firing",
        comment="ghi chú",
    )
    assert decode_event(encode_event(event)) == event


@given(st.sampled_from(ACTION_KINDS), times, st.none() | text)
def test_action_round_trip(kind: str, at: datetime, alert_id: str | None) -> None:
    action = AlertAction(
        kind,  # type: ignore[arg-type]
        "86a10f836f63bd33",
        "op.lan",
        at,
        alert_id=alert_id,
        assignee="to.xuan",
        until=at + timedelta(hours=1),
        comment="bảo trì",
        action_id="a-1",
    )
    assert decode_action(encode_action(action)) == action


def test_event_wire_shape() -> None:
    state = AlertState(
        "86a10f836f63bd33",
        "aqi",
        {"device_id": "aq-lx-001"},
        "firing",
        "major",
        163.0,
        episode=2,
        revision=5,
        fired_at=T0,
        memory=Memory(samples=((T0, 1.0),)),
    )
    event = AlertEvent(
        "86a10f836f63bd33",
        "aqi",
        state.alert_id,
        5,
        "escalated",
        T0,
        "system",
        True,
        "firing",
        "firing",
        "minor",
        "major",
        replace(state, memory=Memory()),
    )
    wire = orjson.loads(encode_event(event))
    assert wire["schema"] == "ioc.alerts/v1"
    assert wire["alert_id"] == "86a10f836f63bd33:2"
    assert wire["at"] == "2026-11-28T02:00:00.000000Z"
    assert wire["state"]["fired_at"] == "2026-11-28T02:00:00.000000Z"
    assert "memory" not in wire["state"]
    assert event.event_id == "86a10f836f63bd33#5"
    stored = orjson.loads(encode_state(state))
    assert stored["schema"] == "ioc.alert-state/v1"
    assert stored["memory"]["samples"] == [["2026-11-28T02:00:00.000000Z", 1.0]]


def test_times_are_utc_with_z_and_microseconds() -> None:
    local = datetime(2026, 11, 28, 9, 0, 0, 123456, tzinfo=ICT)
    assert format_time_us(local) == "2026-11-28T02:00:00.123456Z"
    with pytest.raises(ValueError, match="naive"):
        format_time_us(datetime(2026, 1, 1))  # noqa: DTZ001  # the point of the test


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"schema": "ioc.alert-state/v2", "fingerprint": "f", "rule": "r"}',
        b'{"schema": "ioc.alert-state/v1", "rule": "r", "episode": 0, "revision": 0}',
        b'{"schema": "ioc.alert-state/v1", "fingerprint": "f", "rule": "r", "episode": 0,'
        b' "revision": 0, "state": "exploded"}',
        b'{"schema": "ioc.alert-state/v1", "fingerprint": "f", "rule": "r", "episode": 0,'
        b' "revision": 0, "fired_at": "2026-11-28T02:00:00"}',
        b'{"schema": "ioc.alert-state/v1", "fingerprint": "f", "rule": "r", "episode": "1",'
        b' "revision": 0}',
        b'{"schema": "ioc.alert-state/v1", "fingerprint": "f", "rule": "r", "episode": 0,'
        b' "revision": 0, "memory": {"samples": [["2026-11-28T02:00:00Z"]]}}',
    ],
)
def test_malformed_state_documents_are_refused(data: bytes) -> None:
    with pytest.raises(AlertFormatError):
        decode_state(data)


def test_malformed_events_and_actions_are_refused() -> None:
    with pytest.raises(AlertFormatError, match="state"):
        decode_event(b'{"schema": "ioc.alerts/v1", "fingerprint": "f"}')
    with pytest.raises(AlertFormatError, match="invalid alert action"):
        decode_action(
            b'{"schema": "ioc.alert-actions/v1", "action": "snooze", "fingerprint": "f",'
            b' "actor": "a", "at": "2026-11-28T02:00:00Z"}'
        )


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    state = AlertState("f", "r")
    obj = orjson.loads(encode_state(state))
    obj["added_in_v1_1"] = {"x": 1}
    assert decode_state(orjson.dumps(obj)) == state


def test_state_validation() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        AlertState("f", "r", fired_at=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="severity"):
        AlertState("f", "r", severity="high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        AlertState("f", "r", value=float("nan"))
