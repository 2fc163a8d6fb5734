"""Evaluators per rule type, with fixed timestamps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from schemas.alerts import Memory
from streams.alerts import Observation, Rule, evaluate_observation, evaluate_tick, parse_rules
from streams.alerts.evaluate import Evaluation, group_holds, least_squares_slope
from streams.alerts.rules import Group, Ladder, Leaf, Step

T0 = datetime(2026, 10, 5, 0, 0, tzinfo=UTC)
GAUGE = {"device_id": "rg-long-xuyen", "device_kind": "river_gauge", "station": "long-xuyen"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def make_rule(text: str) -> Rule:
    raw = yaml.safe_load(text)
    raw.setdefault("annotations", {"summary": {"vi": "x", "en": "x"}})
    return parse_rules({"version": 1, "rules": [raw]}, source="test").rules[0]


def feed(
    rule: Rule, values: Sequence[tuple[float, float]], metric: str = "level", **labels: str
) -> Evaluation:
    memory = Memory()
    evaluation = None
    for minutes, value in values:
        obs = Observation({**GAUGE, **labels}, metric, value, at(minutes))
        evaluation = evaluate_observation(
            rule, memory, obs, held=None, last_seen=None, now=at(minutes)
        )
        memory = evaluation.memory
    assert evaluation is not None
    return evaluation


# --- ladders ------------------------------------------------------------------------------------

LADDER = Ladder(
    (Step("minor", 101, 91), Step("major", 151, 141), Step("critical", 201, 191)), "above"
)
LOW_OXYGEN = Ladder((Step("warning", 4.0, 4.5), Step("major", 2.0, 2.5)), "below")


@pytest.mark.parametrize(
    ("value", "held", "expected"),
    [
        (100.9, None, None),
        (101, None, 0),  # the fire threshold counts
        (151, None, 1),
        (250, None, 2),
        (95, None, None),  # in the band but nothing held
        (95, 0, 0),  # held by hysteresis
        (91, 0, 0),  # == clear still holds
        (90.99, 0, None),
        (145, 2, 1),  # critical released, major held
        (120, 2, 0),
        (160, 0, 1),  # escalation ignores the held rung
    ],
)
def test_ladder_levels_with_hysteresis(
    value: float, held: int | None, expected: int | None
) -> None:
    assert LADDER.level(value, held) == expected


@pytest.mark.parametrize(
    ("value", "held", "expected"),
    [(5.0, None, None), (4.0, None, 0), (4.3, 0, 0), (4.6, 0, None), (1.5, None, 1), (2.4, 1, 1)],
)
def test_ladder_direction_below(value: float, held: int | None, expected: int | None) -> None:
    assert LOW_OXYGEN.level(value, held) == expected


def test_threshold_ladder_per_station() -> None:
    rule = make_rule(
        """
name: level
type: threshold
metric: level
subject: [device_id]
ladder_by:
  label: station
  ladders:
    long-xuyen: [{severity: minor, at: 1.9, label: {vi: BĐ I, en: alarm level I}}]
    chau-doc: [{severity: minor, at: 3.0}]
"""
    )
    lx = feed(rule, [(0, 2.0)]).condition
    assert lx is not None
    assert (lx.active, lx.severity, lx.context["level_vi"]) == (True, "minor", "BĐ I")
    cd = feed(rule, [(0, 2.0)], station="chau-doc").condition
    assert cd is not None
    assert not cd.active
    obs = Observation({**GAUGE, "station": "tan-chau"}, "level", 5.0, T0)
    assert not rule.selects(obs)


# --- rate of change -----------------------------------------------------------------------------

RATE = make_rule(
    """
name: rise
type: rate_of_change
metric: level
subject: [device_id]
window: 3h
per: 1h
scale: 100
unit: cm/h
min_samples: 4
ladder:
  - {severity: warning, at: 5, clear: 3}
  - {severity: major, at: 10, clear: 8}
"""
)


def ramp(cm_per_h: float, hours: float = 3, every_min: int = 10) -> list[tuple[float, float]]:
    steps = int(hours * 60 / every_min)
    return [(i * every_min, 1.5 + cm_per_h / 100 * i * every_min / 60) for i in range(steps + 1)]


@pytest.mark.parametrize(("cm_per_h", "severity"), [(2.0, None), (6.0, "warning"), (12.0, "major")])
def test_rate_of_change_on_a_linear_rise(cm_per_h: float, severity: str | None) -> None:
    condition = feed(RATE, ramp(cm_per_h)).condition
    assert condition is not None
    assert condition.value == pytest.approx(cm_per_h)
    assert condition.severity == severity


def test_rate_needs_enough_samples_covering_half_the_window() -> None:
    assert feed(RATE, ramp(12.0, hours=1.4)).condition is None  # 84 min < 90 min
    assert feed(RATE, [(0, 1.0), (120, 2.0)]).condition is None  # 2 samples < 4


def test_rate_window_forgets_old_samples_and_replaces_same_time() -> None:
    history = [(m, 5.0) for m in range(0, 300, 10)]  # flat for 5 h, then a fast rise
    history += [(300 + m, 5.0 + 0.2 * m / 60) for m in range(10, 190, 10)]
    evaluation = feed(RATE, history)
    samples = evaluation.memory.samples
    assert samples[0][0] >= samples[-1][0] - timedelta(hours=3)
    assert evaluation.condition is not None
    assert evaluation.condition.severity == "major"
    obs = Observation(GAUGE, "level", 9.9, samples[-1][0])
    again = evaluate_observation(
        RATE, evaluation.memory, obs, held=None, last_seen=None, now=samples[-1][0]
    )
    assert len(again.memory.samples) == len(samples)
    assert again.memory.samples[-1][1] == 9.9


def test_least_squares_slope() -> None:
    samples = tuple((at(m), 2.0 * m * 60) for m in range(5))
    assert least_squares_slope(samples) == pytest.approx(2.0)
    assert least_squares_slope(samples[:1]) is None
    assert least_squares_slope(((T0, 1.0), (T0, 2.0))) is None


# --- flat line, out of range ----------------------------------------------------------------------

FLAT = make_rule(
    """
name: stuck
type: flatline
metric: level
subject: [device_id, metric]
duration: 2h
tolerance: 0.005
severity: warning
"""
)


def test_flatline_fires_after_the_duration_of_equal_values() -> None:
    stuck = feed(FLAT, [(m, 1.234 + (0.004 if m % 20 else 0)) for m in range(0, 121, 10)])
    assert stuck.condition is not None
    assert stuck.condition.active
    assert stuck.condition.context["stuck_for"] == "2h"
    assert stuck.memory.samples == ((T0, 1.234),)
    short = feed(FLAT, [(m, 1.234) for m in range(0, 120, 10)])
    assert short.condition is not None
    assert not short.condition.active


def test_flatline_run_restarts_when_the_value_moves() -> None:
    moved = feed(FLAT, [(0, 1.0), (60, 1.0), (90, 1.2), (209, 1.2)])
    assert moved.condition is not None
    assert not moved.condition.active  # 119 min since the value moved
    moved = feed(FLAT, [(0, 1.0), (60, 1.0), (90, 1.2), (210, 1.2)])
    assert moved.condition is not None
    assert moved.condition.active
    assert moved.memory.samples == ((at(90), 1.2),)
    moving = feed(FLAT, [(m, 1.0 + m / 1000) for m in range(0, 300, 10)])
    assert moving.condition is not None
    assert not moving.condition.active


RANGE = make_rule(
    """
name: plausible
type: out_of_range
metric: level
subject: [device_id, metric]
min: -1
max: 7
severity: warning
"""
)


@pytest.mark.parametrize(
    ("value", "active", "side"),
    [(-1.0, False, "high"), (7.0, False, "high"), (-1.01, True, "low"), (7.5, True, "high")],
)
def test_out_of_range_bounds_are_inclusive(value: float, active: bool, side: str) -> None:
    condition = feed(RANGE, [(0, value)]).condition
    assert condition is not None
    assert condition.active is active
    assert condition.context["side_en"] == side


# --- absence, SLA -------------------------------------------------------------------------------

ABSENT = make_rule(
    """
name: silent
type: absence
subject: [device_id]
intervals: 3
expected_interval: 10m
severity: warning
"""
)


def test_absence_limit_from_the_device_interval_or_the_rule() -> None:
    memory = Memory(interval_s=300)
    found = evaluate_tick(ABSENT, memory, held=None, last_seen=T0, now=at(15))
    assert found.condition is not None
    assert found.condition.active
    assert found.condition.value == 900
    fallback = evaluate_tick(ABSENT, Memory(), held=None, last_seen=T0, now=at(15))
    assert fallback.condition is not None
    assert not fallback.condition.active
    assert evaluate_tick(ABSENT, Memory(), held=None, last_seen=None, now=at(99)).condition is None


def test_absence_observation_records_the_interval_and_is_alive() -> None:
    obs = Observation(GAUGE, "level", 1.0, at(10), expected_interval=timedelta(minutes=5))
    found = evaluate_observation(ABSENT, Memory(), obs, held=None, last_seen=T0, now=at(10))
    assert found.memory.interval_s == 300
    assert found.condition is not None
    assert not found.condition.active
    assert found.at == at(10)


SLA = make_rule(
    """
name: sla
type: sla
metric: application_processing
subject: [application_id]
ladder:
  - {severity: warning, overdue: 0s}
  - {severity: major, overdue: 5d}
"""
)


def test_sla_ladder_on_lateness() -> None:
    memory = Memory(deadline=T0, outstanding=True)
    early = evaluate_tick(SLA, memory, held=None, last_seen=None, now=at(-1)).condition
    due = evaluate_tick(SLA, memory, held=None, last_seen=None, now=T0).condition
    late = evaluate_tick(SLA, memory, held=None, last_seen=None, now=T0 + timedelta(days=6))
    assert early is not None
    assert not early.active
    assert due is not None
    assert due.severity == "warning"
    assert late.condition is not None
    assert late.condition.severity == "major"
    assert late.condition.context["overdue"] == "6d"


def test_sla_item_without_deadline_gives_no_evidence_and_done_is_clear() -> None:
    labels = {"application_id": "HS-001"}
    obs = Observation(labels, "application_processing", 1, T0)
    assert (
        evaluate_observation(SLA, Memory(), obs, held=None, last_seen=None, now=T0).condition
        is None
    )
    done = Observation(labels, "application_processing", 0, at(10))
    memory = Memory(deadline=T0, outstanding=True)
    found = evaluate_observation(SLA, memory, done, held="warning", last_seen=None, now=at(10))
    assert found.condition is not None
    assert not found.condition.active
    assert not found.memory.outstanding


# --- composite ----------------------------------------------------------------------------------

COMPOSITE = make_rule(
    """
name: humid
type: composite
subject: [device_id]
max_age: 5m
severity: info
condition:
  all:
    - {metric: pm25, op: ">=", value: 80}
    - any:
        - {metric: humidity, op: ">=", value: 95}
        - {metric: rain, op: ">", value: 0}
"""
)


def test_composite_all_and_any_on_latest_fresh_values() -> None:
    both = feed(COMPOSITE, [(0, 85)], metric="pm25")
    assert both.condition is not None
    assert not both.condition.active  # humidity unknown: its leaves are false
    memory = both.memory
    obs = Observation(GAUGE, "humidity", 97, at(2))
    found = evaluate_observation(COMPOSITE, memory, obs, held=None, last_seen=None, now=at(2))
    assert found.condition is not None
    assert found.condition.active
    assert found.condition.context == {"value_pm25": 85.0, "value_humidity": 97.0}
    stale = Observation(GAUGE, "humidity", 97, at(6))
    later = evaluate_observation(
        COMPOSITE, found.memory, stale, held=None, last_seen=None, now=at(6)
    )
    assert later.condition is not None
    assert not later.condition.active  # pm25 from minute 0 is older than 5 minutes
    assert [m for m, _t, _v in later.memory.inputs] == ["humidity"]
    assert COMPOSITE.metrics == frozenset({"pm25", "humidity", "rain"})


def test_group_holds() -> None:
    group = Group(
        "any", (Leaf("a", "<", 1), Group("all", (Leaf("b", "==", 2), Leaf("c", "!=", 3))))
    )
    assert group_holds(group, {"a": 0})
    assert group_holds(group, {"a": 5, "b": 2, "c": 4})
    assert not group_holds(group, {"a": 5, "b": 2, "c": 3})
    assert not group_holds(group, {})


def test_value_rules_find_no_evidence_on_a_tick() -> None:
    for rule in (RATE, FLAT, RANGE, COMPOSITE):
        found = evaluate_tick(rule, Memory(), held=None, last_seen=T0, now=at(600))
        assert found.condition is None
