"""The split of ``schemas.alerts`` into modules changed no wire byte and no importable name.

The expected bytes and error messages below were captured once from the single-module
``schemas/alerts.py`` (before the split) for the objects built here; they are literals on
purpose: if an encoder changes a single byte, or a decoder a message, these tests fail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Final

import pytest

import schemas.alert_actions
import schemas.alert_events
import schemas.alert_state
import schemas.alert_wire
import schemas.alerts
from schemas.alerts import (
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
    evolve,
    state_from_dict,
    state_to_dict,
)

ICT = timezone(timedelta(hours=7))
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 28, 16, 5, 30, 123456, tzinfo=ICT)  # 09:05:30.123456Z


def _states() -> dict[str, AlertState]:
    memory = Memory(
        samples=((T0, 41.5), (T1, -3.0)),
        inputs=(("aqi", T0, 152.0), ("pm25", T1, 0.1)),
        deadline=T1 + timedelta(minutes=30),
        outstanding=True,
        interval_s=60.0,
    )
    return {
        "minimal": AlertState(fingerprint="0000000000000001", rule="r"),
        "firing_full": AlertState(
            fingerprint="3f6c0a1e9b2d4c57",
            rule="vn_aqi_station",
            labels={"station": "lx-01", "district": "Mỹ Bình"},
            state="firing",
            severity="major",
            value=152.25,
            annotations={"summary": "AQI cao — hạn chế ra ngoài", "q": '"quoted"\n'},
            episode=2,
            revision=5,
            pending_since=T0,
            active_since=T0,
            fired_at=T1,
            keep_firing_until=T1 + timedelta(seconds=90),
            last_evaluated=T1,
            last_seen=T1,
            last_notified_at=T1,
            acknowledged_by="op.lan",
            acknowledged_at=T1,
            assignee="op.minh",
            silenced_until=T1 + timedelta(hours=1),
            silenced_by="op.lan",
            rearm_required=True,
            memory=memory,
        ),
        "resolved": AlertState(
            fingerprint="aa55aa55aa55aa55",
            rule="flat_line",
            labels={"device": "wl-7"},
            state="resolved",
            severity="critical",
            value=0.0,
            episode=7,
            revision=31,
            fired_at=T0,
            resolved_at=T1,
            resolved_by="system",
            last_seen=T1,
        ),
    }


def _events() -> dict[str, AlertEvent]:
    states = _states()
    snapshot = AlertState(
        **{
            name: getattr(states["firing_full"], name)
            for name in AlertState.__dataclass_fields__
            if name != "memory"
        }
    )
    return {
        "escalated": AlertEvent(
            fingerprint=snapshot.fingerprint,
            rule=snapshot.rule,
            alert_id=snapshot.alert_id,
            revision=snapshot.revision,
            kind="escalated",
            at=T1,
            actor="system",
            notify=True,
            from_state="firing",
            to_state="firing",
            from_severity="minor",
            to_severity="major",
            state=snapshot,
            detail="severity minor -> major",
        ),
        "pending": AlertEvent(
            fingerprint="0000000000000001",
            rule="r",
            alert_id=None,
            revision=1,
            kind="pending",
            at=T0,
            actor="system",
            notify=False,
            from_state="inactive",
            to_state="pending",
            from_severity=None,
            to_severity=None,
            state=AlertState(
                fingerprint="0000000000000001",
                rule="r",
                state="pending",
                revision=1,
                pending_since=T0,
            ),
        ),
        "acknowledged": AlertEvent(
            fingerprint=states["resolved"].fingerprint,
            rule=states["resolved"].rule,
            alert_id=states["resolved"].alert_id,
            revision=32,
            kind="acknowledged",
            at=T1,
            actor="op.lan",
            notify=False,
            from_state="resolved",
            to_state="resolved",
            from_severity="critical",
            to_severity="critical",
            state=states["resolved"],
            detail="",
            comment="đã xem",
        ),
    }


def _actions() -> dict[str, AlertAction]:
    return {
        "acknowledge": AlertAction(
            action="acknowledge", fingerprint="3f6c0a1e9b2d4c57", actor="op.lan", at=T0
        ),
        "silence": AlertAction(
            action="silence",
            fingerprint="3f6c0a1e9b2d4c57",
            actor="op.minh",
            at=T1,
            alert_id="3f6c0a1e9b2d4c57:2",
            until=T1 + timedelta(hours=2),
            comment="bảo trì trạm",
            action_id="a-0001",
        ),
        "unassign": AlertAction(
            action="assign",
            fingerprint="aa55aa55aa55aa55",
            actor="op.lan",
            at=T1,
            assignee="",
        ),
    }


STATE_BYTES: Final[dict[str, bytes]] = {
    "minimal": (
        b'{"schema":"ioc.alert-state/v1","fingerprint":"0000000000000001","rule":"r",'
        b'"alert_id":null,"labels":{},"state":"inactive","severity":null,"value":null,'
        b'"annotations":{},"episode":0,"revision":0,"resolved_by":null,"acknowledged_by":null,'
        b'"assignee":null,"silenced_by":null,"rearm_required":false,"pending_since":null,'
        b'"active_since":null,"fired_at":null,"resolved_at":null,"keep_firing_until":null,'
        b'"last_evaluated":null,"last_seen":null,"last_notified_at":null,"acknowledged_at":null,'
        b'"silenced_until":null,"memory":{"samples":[],"inputs":[],"deadline":null,'
        b'"outstanding":false,"interval_s":null}}'
    ),
    "firing_full": (
        b'{"schema":"ioc.alert-state/v1","fingerprint":"3f6c0a1e9b2d4c57",'
        b'"rule":"vn_aqi_station","alert_id":"3f6c0a1e9b2d4c57:2","labels":{"station":"lx-01",'
        b'"district":"M\xe1\xbb\xb9 B\xc3\xacnh"},"state":"firing","severity":"major",'
        b'"value":152.25,"annotations":{"summary":"AQI cao \xe2\x80\x94 h\xe1\xba\xa1n '
        b'ch\xe1\xba\xbf ra ngo\xc3\xa0i","q":"\\"quoted\\"\\n"},"episode":2,"revision":5,'
        b'"resolved_by":null,"acknowledged_by":"op.lan","assignee":"op.minh",'
        b'"silenced_by":"op.lan","rearm_required":true,'
        b'"pending_since":"2026-11-28T09:00:00.000000Z",'
        b'"active_since":"2026-11-28T09:00:00.000000Z","fired_at":"2026-11-28T09:05:30.123456Z",'
        b'"resolved_at":null,"keep_firing_until":"2026-11-28T09:07:00.123456Z",'
        b'"last_evaluated":"2026-11-28T09:05:30.123456Z",'
        b'"last_seen":"2026-11-28T09:05:30.123456Z",'
        b'"last_notified_at":"2026-11-28T09:05:30.123456Z",'
        b'"acknowledged_at":"2026-11-28T09:05:30.123456Z",'
        b'"silenced_until":"2026-11-28T10:05:30.123456Z",'
        b'"memory":{"samples":[["2026-11-28T09:00:00.000000Z",41.5],'
        b'["2026-11-28T09:05:30.123456Z",-3.0]],"inputs":[["aqi","2026-11-28T09:00:00.000000Z",'
        b'152.0],["pm25","2026-11-28T09:05:30.123456Z",0.1]],'
        b'"deadline":"2026-11-28T09:35:30.123456Z","outstanding":true,"interval_s":60.0}}'
    ),
    "resolved": (
        b'{"schema":"ioc.alert-state/v1","fingerprint":"aa55aa55aa55aa55","rule":"flat_line",'
        b'"alert_id":"aa55aa55aa55aa55:7","labels":{"device":"wl-7"},"state":"resolved",'
        b'"severity":"critical","value":0.0,"annotations":{},"episode":7,"revision":31,'
        b'"resolved_by":"system","acknowledged_by":null,"assignee":null,"silenced_by":null,'
        b'"rearm_required":false,"pending_since":null,"active_since":null,'
        b'"fired_at":"2026-11-28T09:00:00.000000Z","resolved_at":"2026-11-28T09:05:30.123456Z",'
        b'"keep_firing_until":null,"last_evaluated":null,'
        b'"last_seen":"2026-11-28T09:05:30.123456Z","last_notified_at":null,'
        b'"acknowledged_at":null,"silenced_until":null,"memory":{"samples":[],"inputs":[],'
        b'"deadline":null,"outstanding":false,"interval_s":null}}'
    ),
}

EVENT_BYTES: Final[dict[str, bytes]] = {
    "escalated": (
        b'{"schema":"ioc.alerts/v1","fingerprint":"3f6c0a1e9b2d4c57","rule":"vn_aqi_station",'
        b'"alert_id":"3f6c0a1e9b2d4c57:2","revision":5,"kind":"escalated",'
        b'"at":"2026-11-28T09:05:30.123456Z","actor":"system","notify":true,'
        b'"from_state":"firing","to_state":"firing","from_severity":"minor",'
        b'"to_severity":"major","detail":"severity minor -> major","comment":"",'
        b'"state":{"fingerprint":"3f6c0a1e9b2d4c57","rule":"vn_aqi_station",'
        b'"alert_id":"3f6c0a1e9b2d4c57:2","labels":{"station":"lx-01","district":"M\xe1\xbb\xb9 '
        b'B\xc3\xacnh"},"state":"firing","severity":"major","value":152.25,'
        b'"annotations":{"summary":"AQI cao \xe2\x80\x94 h\xe1\xba\xa1n ch\xe1\xba\xbf ra '
        b'ngo\xc3\xa0i","q":"\\"quoted\\"\\n"},"episode":2,"revision":5,"resolved_by":null,'
        b'"acknowledged_by":"op.lan","assignee":"op.minh","silenced_by":"op.lan",'
        b'"rearm_required":true,"pending_since":"2026-11-28T09:00:00.000000Z",'
        b'"active_since":"2026-11-28T09:00:00.000000Z","fired_at":"2026-11-28T09:05:30.123456Z",'
        b'"resolved_at":null,"keep_firing_until":"2026-11-28T09:07:00.123456Z",'
        b'"last_evaluated":"2026-11-28T09:05:30.123456Z",'
        b'"last_seen":"2026-11-28T09:05:30.123456Z",'
        b'"last_notified_at":"2026-11-28T09:05:30.123456Z",'
        b'"acknowledged_at":"2026-11-28T09:05:30.123456Z",'
        b'"silenced_until":"2026-11-28T10:05:30.123456Z"}}'
    ),
    "pending": (
        b'{"schema":"ioc.alerts/v1","fingerprint":"0000000000000001","rule":"r","alert_id":null,'
        b'"revision":1,"kind":"pending","at":"2026-11-28T09:00:00.000000Z","actor":"system",'
        b'"notify":false,"from_state":"inactive","to_state":"pending","from_severity":null,'
        b'"to_severity":null,"detail":"","comment":"","state":{"fingerprint":"0000000000000001",'
        b'"rule":"r","alert_id":null,"labels":{},"state":"pending","severity":null,"value":null,'
        b'"annotations":{},"episode":0,"revision":1,"resolved_by":null,"acknowledged_by":null,'
        b'"assignee":null,"silenced_by":null,"rearm_required":false,'
        b'"pending_since":"2026-11-28T09:00:00.000000Z","active_since":null,"fired_at":null,'
        b'"resolved_at":null,"keep_firing_until":null,"last_evaluated":null,"last_seen":null,'
        b'"last_notified_at":null,"acknowledged_at":null,"silenced_until":null}}'
    ),
    "acknowledged": (
        b'{"schema":"ioc.alerts/v1","fingerprint":"aa55aa55aa55aa55","rule":"flat_line",'
        b'"alert_id":"aa55aa55aa55aa55:7","revision":32,"kind":"acknowledged",'
        b'"at":"2026-11-28T09:05:30.123456Z","actor":"op.lan","notify":false,'
        b'"from_state":"resolved","to_state":"resolved","from_severity":"critical",'
        b'"to_severity":"critical","detail":"","comment":"\xc4\x91\xc3\xa3 xem",'
        b'"state":{"fingerprint":"aa55aa55aa55aa55","rule":"flat_line",'
        b'"alert_id":"aa55aa55aa55aa55:7","labels":{"device":"wl-7"},"state":"resolved",'
        b'"severity":"critical","value":0.0,"annotations":{},"episode":7,"revision":31,'
        b'"resolved_by":"system","acknowledged_by":null,"assignee":null,"silenced_by":null,'
        b'"rearm_required":false,"pending_since":null,"active_since":null,'
        b'"fired_at":"2026-11-28T09:00:00.000000Z","resolved_at":"2026-11-28T09:05:30.123456Z",'
        b'"keep_firing_until":null,"last_evaluated":null,'
        b'"last_seen":"2026-11-28T09:05:30.123456Z","last_notified_at":null,'
        b'"acknowledged_at":null,"silenced_until":null}}'
    ),
}

ACTION_BYTES: Final[dict[str, bytes]] = {
    "acknowledge": (
        b'{"schema":"ioc.alert-actions/v1","action":"acknowledge",'
        b'"fingerprint":"3f6c0a1e9b2d4c57","actor":"op.lan","at":"2026-11-28T09:00:00.000000Z",'
        b'"alert_id":null,"assignee":null,"until":null,"comment":"","action_id":""}'
    ),
    "silence": (
        b'{"schema":"ioc.alert-actions/v1","action":"silence","fingerprint":"3f6c0a1e9b2d4c57",'
        b'"actor":"op.minh","at":"2026-11-28T09:05:30.123456Z","alert_id":"3f6c0a1e9b2d4c57:2",'
        b'"assignee":null,"until":"2026-11-28T11:05:30.123456Z","comment":"b\xe1\xba\xa3o '
        b'tr\xc3\xac tr\xe1\xba\xa1m","action_id":"a-0001"}'
    ),
    "unassign": (
        b'{"schema":"ioc.alert-actions/v1","action":"assign","fingerprint":"aa55aa55aa55aa55",'
        b'"actor":"op.lan","at":"2026-11-28T09:05:30.123456Z","alert_id":null,"assignee":"",'
        b'"until":null,"comment":"","action_id":""}'
    ),
}

FORMAT_ERRORS: Final[tuple[tuple[str, bytes, str], ...]] = (
    (
        "decode_state",
        b"not json",
        "not JSON: invalid literal, expected 'null': line 1 column 1 (char 0)",
    ),
    (
        "decode_state",
        b'{"schema":"ioc.alerts/v1"}',
        "not a ioc.alert-state/v1 document",
    ),
    (
        "decode_state",
        b"[1]",
        "not a ioc.alert-state/v1 document",
    ),
    (
        "decode_state",
        b'{"schema":"ioc.alert-state/v1","fingerprint":"f","rule":"r","episode":0}',
        "invalid alert state: 'state'",
    ),
    (
        "decode_state",
        b'{"schema":"ioc.alert-state/v1","fingerprint":"f","rule":"r","state":"gone","episode":0,'
        b'"revision":0}',
        "invalid alert state: unknown alert state 'gone'; expected one of ('inactive', 'pending',"
        " 'firing', 'resolved', 'nodata')",
    ),
    (
        "decode_state",
        b'{"schema":"ioc.alert-state/v1","fingerprint":"f","rule":"r","state":"firing",'
        b'"episode":0,"revision":0,"memory":{"samples":[["2026-11-28T09:00:00Z",true]]}}',
        "invalid alert state: sample must be a number, got True",
    ),
    (
        "decode_event",
        b'{"schema":"ioc.alerts/v1","state":[]}',
        "invalid alert event: 'state' must be an object",
    ),
    (
        "decode_event",
        b'{"schema":"ioc.alerts/v1","state":{"fingerprint":"f","rule":"r","state":"firing",'
        b'"episode":1,"revision":1},"notify":1}',
        "invalid alert event: notify must be true or false",
    ),
    (
        "decode_action",
        b'{"schema":"ioc.alert-actions/v1","action":"silence","fingerprint":"f","actor":"op",'
        b'"at":"2026-11-28T09:00:00Z"}',
        "invalid alert action: a silence needs 'until'",
    ),
    (
        "decode_action",
        b'{"schema":"ioc.alert-actions/v1","action":"acknowledge","fingerprint":"f",'
        b'"actor":"system","at":"2026-11-28T09:00:00Z"}',
        "invalid alert action: actor 'system' is reserved for the rules",
    ),
)

#: Every name ``schemas.alerts`` defined before the split (imports it merely used excluded).
PUBLIC_NAMES: Final = (
    "ACTION_KINDS",
    "ACTION_SCHEMA",
    "EMPTY_MEMORY",
    "EVENT_KINDS",
    "EVENT_SCHEMA",
    "SEVERITIES",
    "STATES",
    "STATE_SCHEMA",
    "SYSTEM_ACTOR",
    "ActionKind",
    "AlertAction",
    "AlertEvent",
    "AlertFormatError",
    "AlertState",
    "EventKind",
    "Memory",
    "Severity",
    "StateName",
    "decode_action",
    "decode_event",
    "decode_state",
    "encode_action",
    "encode_event",
    "encode_state",
    "event_to_dict",
    "evolve",
    "format_time_us",
    "memory_to_dict",
    "severity_rank",
    "state_from_dict",
    "state_to_dict",
)

SPLIT_MODULES: Final = (
    schemas.alert_wire,
    schemas.alert_state,
    schemas.alert_events,
    schemas.alert_actions,
)


@pytest.mark.parametrize("name", sorted(STATE_BYTES))
def test_state_bytes_unchanged_and_round_trip(name: str) -> None:
    state = _states()[name]
    assert encode_state(state) == STATE_BYTES[name]
    assert decode_state(STATE_BYTES[name]) == state
    assert state_from_dict(state_to_dict(state)) == state


@pytest.mark.parametrize("name", sorted(EVENT_BYTES))
def test_event_bytes_unchanged_and_round_trip(name: str) -> None:
    event = _events()[name]
    assert encode_event(event) == EVENT_BYTES[name]
    assert decode_event(EVENT_BYTES[name]) == event


def test_event_leaves_the_memory_out() -> None:
    event = _events()["escalated"]
    with_memory = evolve(event.state, memory=_states()["firing_full"].memory)
    assert with_memory.memory != Memory()
    assert encode_event(evolve_event(event, with_memory)) == EVENT_BYTES["escalated"]


def evolve_event(event: AlertEvent, state: AlertState) -> AlertEvent:
    return AlertEvent(
        **{
            name: getattr(event, name)
            for name in AlertEvent.__dataclass_fields__
            if name != "state"
        },
        state=state,
    )


@pytest.mark.parametrize("name", sorted(ACTION_BYTES))
def test_action_bytes_unchanged_and_round_trip(name: str) -> None:
    action = _actions()[name]
    assert encode_action(action) == ACTION_BYTES[name]
    assert decode_action(ACTION_BYTES[name]) == action


@pytest.mark.parametrize(("decoder", "data", "message"), FORMAT_ERRORS)
def test_format_errors_unchanged(decoder: str, data: bytes, message: str) -> None:
    with pytest.raises(AlertFormatError) as raised:
        getattr(schemas.alerts, decoder)(data)
    assert str(raised.value) == message


def test_every_name_still_importable_from_schemas_alerts() -> None:
    assert sorted(schemas.alerts.__all__) == sorted(PUBLIC_NAMES)
    for name in PUBLIC_NAMES:
        assert hasattr(schemas.alerts, name), name


def test_reexports_are_the_split_modules_own_objects() -> None:
    homes = {name: [m for m in SPLIT_MODULES if name in vars(m)] for name in PUBLIC_NAMES}
    for name, modules in homes.items():
        assert modules, f"{name} is defined in no split module"
        for module in modules:
            assert getattr(module, name) is getattr(schemas.alerts, name), name
