"""The alerter's pure parts: internal messages, observation building and replay-safe states."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.alerts import AlertAction
from schemas.events import Event
from schemas.indicator_values import IndicatorValue, encode_value
from schemas.indicators import WindowResult, encode_indicator
from schemas.readings import format_time
from streams.alerting.clock import Progress, tick_time
from streams.alerting.inputs import (
    ActionInput,
    AlertInputError,
    ObservationBuilder,
    ObsInput,
    TickInput,
    decode_input,
    encode_input,
    group_observations,
    reading_observations,
)
from streams.alerting.partition import AlertPartition, StateRecordError
from streams.alerts import load_rules, parse_rules
from streams.alerts.model import Observation, fingerprint

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
RULES = parse_rules(
    {
        "version": 1,
        "rules": [
            {
                "name": "pm25_high",
                "type": "threshold",
                "metric": "pm25",
                "subject": ["device_id"],
                "ladder": [
                    {"severity": "minor", "at": 100, "clear": 90},
                    {"severity": "major", "at": 150, "clear": 140},
                ],
                "for": "10s",
                "keep_firing_for": "1m",
                "annotations": {"summary": {"vi": "{value}", "en": "{value}"}},
            },
            {
                "name": "district_silent",
                "type": "absence",
                "subject": ["district"],
                "matchers": ['device_id!=""'],
                "after": "5m",
                "severity": "major",
                "annotations": {"summary": {"vi": "{district}", "en": "{district}"}},
            },
        ],
    }
)
FP = fingerprint("pm25_high", {"device_id": "aq-1"})


def _obs(value: float, seconds: int, device: str = "aq-1") -> Observation:
    labels = {"device_id": device, "district": "long-xuyen"}
    return Observation(labels, "pm25", value, T0 + timedelta(seconds=seconds))


def _input(value: float, seconds: int) -> ObsInput:
    return ObsInput(FP, "pm25_high", (_obs(value, seconds),), T0 + timedelta(seconds=seconds))


def test_internal_messages_round_trip() -> None:
    obs = Observation(
        {"device_id": "aq-1"}, "pm25", 12.5, T0, timedelta(seconds=60), T0 + timedelta(hours=1)
    )
    action = AlertAction("silence", FP, "op", T0, until=T0 + timedelta(hours=1))
    for item in (ObsInput(FP, "r", (obs,), T0), ActionInput(action), TickInput(T0)):
        assert decode_input(encode_input(item)) == item


@pytest.mark.parametrize(
    "data", [b"nope", b"{}", orjson.dumps({"schema": "ioc.alert-input/v1", "kind": "x"})]
)
def test_bad_internal_messages_raise(data: bytes) -> None:
    with pytest.raises(AlertInputError):
        decode_input(data)


def test_observations_are_grouped_per_rule_and_fingerprint() -> None:
    builder = ObservationBuilder()
    objs = [
        {
            "device_id": d,
            "device_kind": "air_quality",
            "district": "long-xuyen",
            "ward": "w",
            "metric": "pm25",
            "value": v,
            "event_time": f"2026-11-28T09:00:0{i}.000Z",
        }
        for i, (d, v) in enumerate([("aq-1", 1.0), ("aq-2", 2.0), ("aq-1", 3.0)])
    ]
    objs.append({"device_id": "aq-3"})  # unusable: skipped
    groups = group_observations(RULES, reading_observations(builder, objs), T0)
    by_rule = {(g.rule, g.fingerprint): g for g in groups}
    assert [o.value for o in by_rule[("pm25_high", FP)].observations] == [1.0, 3.0]
    district = by_rule[
        ("district_silent", fingerprint("district_silent", {"district": "long-xuyen"}))
    ]
    assert [o.value for o in district.observations] == [3.0]  # absence: only the latest


def test_indicator_records_become_observations() -> None:
    builder = ObservationBuilder()
    window = WindowResult(
        "reading_stats_1m",
        "aq-1",
        "air_quality",
        "lx",
        "w",
        "pm25",
        "ug/m3",
        T0,
        T0 + timedelta(minutes=1),
        3,
        40.0,
        1.0,
        80.0,
        2.0,
        1.0,
    )
    obs = builder.from_indicator_message(encode_indicator(window))
    assert (obs.metric, obs.value, obs.event_time) == ("pm25_mean_1m", 40.0, window.window_end)
    value = IndicatorValue("vn_aqi_1h", "district", "lx", "lx", T0, T0 + timedelta(hours=1), 160)
    obs = builder.from_indicator_message(encode_value(value))
    assert obs.metric == "vn_aqi_hourly_district"
    assert obs.labels["district"] == "lx"
    with pytest.raises(ValueError, match="indicator"):
        builder.from_indicator_message(b'{"schema": "other"}')


def test_replayed_input_is_skipped_and_reapplying_is_deterministic() -> None:
    inputs = [_input(120, 0), _input(130, 12), _input(160, 20)]
    first = AlertPartition(0, RULES)
    outcomes = [first.apply(i, item) for i, item in enumerate(inputs)]
    assert [e.kind for o in outcomes for e in o.events] == ["pending", "firing", "escalated"]
    assert first.apply(2, inputs[2]).replayed
    # a crash after offset 0's record was written: restore and replay 1 and 2
    restored = AlertPartition.restore([(FP.encode(), _record_after(inputs[:1]))], RULES)[0]
    again = [restored.apply(i, inputs[i]) for i in (1, 2)]
    assert [e for o in again for e in o.events] == [e for o in outcomes[1:] for e in o.events]
    assert restored.record(FP) == first.record(FP)


def _record_after(inputs: list[ObsInput]) -> bytes:
    part = AlertPartition(0, RULES)
    for i, item in enumerate(inputs):
        part.apply(i, item)
    return part.record(FP)


def test_tick_ends_keep_firing_and_quiet_ticks_write_nothing() -> None:
    part = AlertPartition(0, RULES)
    part.apply(0, _input(120, 0))
    part.apply(1, _input(130, 12))
    cleared = part.apply(2, _input(50, 20))  # keep firing for 1 min
    assert cleared.events == []
    assert cleared.dirty == [FP]
    quiet = part.apply(3, TickInput(T0 + timedelta(seconds=40)))
    assert (quiet.events, quiet.dirty) == ([], [])
    older = part.apply(4, TickInput(T0 + timedelta(seconds=30)))
    assert older.replayed
    done = part.apply(5, TickInput(T0 + timedelta(seconds=80)))
    assert [e.kind for e in done.events] == ["resolved"]
    assert done.dirty == [FP]


def test_actions_apply_or_are_rejected_with_a_reason() -> None:
    part = AlertPartition(0, RULES)
    ack = AlertAction("acknowledge", FP, "op", T0 + timedelta(seconds=30))
    assert "no alert" in part.apply(0, ActionInput(ack)).rejected
    part.apply(1, _input(120, 0))
    assert "cannot acknowledge" in part.apply(2, ActionInput(ack)).rejected
    part.apply(3, _input(130, 12))
    out = part.apply(4, ActionInput(ack))
    assert [e.kind for e in out.events] == ["acknowledged"]
    assert part.apply(4, ActionInput(ack)).replayed


def test_unknown_rule_is_rejected_and_corrupt_records_raise() -> None:
    part = AlertPartition(0, RULES)
    assert "not loaded" in part.apply(0, ObsInput(FP, "gone", (_obs(1, 0),), T0)).rejected
    with pytest.raises(StateRecordError):
        AlertPartition.restore([(b"x", b'{"v": 1, "p": 0}')], RULES)
    with pytest.raises(StateRecordError):
        AlertPartition.restore([(b"other", _record_after([_input(120, 0)]))], RULES)


def _feedback(kind: str, at: datetime) -> Event:
    data = {
        "ticket_id": "PA-1",
        "agency": "ubnd-my-binh",
        "district": "long-xuyen",
        "ward": "my-binh",
        "category": "moi-truong",
        "created_at": format_time(T0),
        "due_at": format_time(T0 + timedelta(hours=1)),
    }
    return Event(f"e-{kind}", "/test", f"vn.longxuyen.feedback.{kind}", "PA-1", at, data, at)


def test_city_events_drive_sla_alerts_on_the_clock() -> None:
    rules = load_rules()
    builder = ObservationBuilder()
    created = builder.from_event(_feedback("created", T0))
    assert created is not None
    assert (created.metric, created.value, created.deadline) == (
        "feedback_response",
        1.0,
        T0 + timedelta(hours=1),
    )
    assert created.labels["category"] == "moi-truong"
    assert builder.from_event(replace(_feedback("created", T0), type="vn.other")) is None
    [item] = [g for g in group_observations(rules, [created], T0) if g.rule.endswith("sla")]
    part = AlertPartition(0, rules)
    assert part.apply(0, item).events == []
    assert part.apply(1, TickInput(T0 + timedelta(minutes=59))).events == []
    fired = part.apply(2, TickInput(T0 + timedelta(hours=1, minutes=1))).events
    assert [(e.kind, e.to_severity) for e in fired] == [("firing", "warning")]
    responded = builder.from_event(_feedback("responded", T0 + timedelta(hours=2)))
    assert responded is not None
    [done] = [
        g
        for g in group_observations(rules, [responded], T0 + timedelta(hours=2))
        if g.rule.endswith("sla")
    ]
    assert [e.kind for e in part.apply(3, done).events] == ["resolved"]


def test_tick_time_is_held_back_by_a_backlog() -> None:
    wall = T0 + timedelta(hours=1)
    hold = timedelta(seconds=30)
    early, late = timedelta(seconds=5), timedelta(seconds=31)
    assert tick_time(wall, [], {}, early, hold) == wall
    assert tick_time(wall, ["r0", "r1"], {"r0": Progress(0, T0)}, early, hold) is None
    assert tick_time(wall, ["r0", "r1"], {"r0": Progress(0, T0)}, late, hold) == wall
    lagging = {"r0": Progress(120, T0 + timedelta(minutes=5)), "r1": Progress(3, T0)}
    assert tick_time(wall, ["r0", "r1"], lagging, early, hold) == T0
    future = {"r0": Progress(1, wall + timedelta(seconds=9))}  # a producer's clock ahead
    assert tick_time(wall, ["r0"], future, early, hold) == wall


def test_commands_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.alerting.alerts_cli import run as alerts
    from streams.alerting.cli import run

    assert run(["--help"]) == 0
    assert "ioc.alerts" in capsys.readouterr().out
    assert alerts(["--help"]) == 0
    assert alerts(["ack", "--help"]) == 0
    assert "--actor" in capsys.readouterr().out
    assert run(["--check"]) == 0
    assert "rules valid" in capsys.readouterr().out
    assert alerts(["silence", "fp", "--actor", "an", "--duration", "soon"]) == 2
