"""Packs (one internal message per input message and partition), the rules' metric filter and
the machine's cheap quiet copies: the alerter's fast path gives exactly what the plain one did."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from schemas.alerts import AlertState, evolve
from streams.alerting.inputs import (
    AlertInputError,
    ObservationBuilder,
    ObsInput,
    PackInput,
    decode_input,
    encode_input,
    group_observations,
    partition_of,
    reading_observations,
)
from streams.alerting.packing import PackBuffer
from streams.alerting.partition import AlertPartition
from streams.alerts import parse_rules
from streams.alerts.machine import observe, observe_all, observe_selected
from streams.alerts.model import Observation
from tests.unit.test_alert_alerting import RULES as LIFECYCLE_RULES

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
THRESHOLD = {
    "name": "pm25_high",
    "type": "threshold",
    "metric": "pm25",
    "subject": ["device_id"],
    "carry": ["district"],
    "ladder": [{"severity": "major", "at": 150, "clear": 100}],
    "for": "0s",
    "annotations": {"summary": {"vi": "{value}", "en": "{value}"}},
}
RULES = parse_rules({"version": 1, "rules": [THRESHOLD]})
PARTITIONS = 6


def pack_by_partition(items: list[ObsInput], partitions: int) -> dict[int, PackInput]:
    """The packs of one input message's items."""
    buffer = PackBuffer(partitions)
    buffer.add(items)
    return buffer.take()


def _reading(device: str, value: float, second: int, metric: str = "pm25") -> dict[str, object]:
    return {
        "device_id": device,
        "device_kind": "air_quality",
        "district": "long-xuyen",
        "metric": metric,
        "value": value,
        "event_time": (T0 + timedelta(seconds=second)).isoformat(),
    }


def _batches() -> list[list[dict[str, object]]]:
    """Ten batches of 40 devices, one crossing and clearing, pm10 beside pm25."""
    out = []
    for b in range(10):
        batch: list[dict[str, object]] = []
        for d in range(40):
            value = 200.0 if d == 7 and 3 <= b <= 5 else 40.0 + d
            batch.append(_reading(f"aq-{d:02d}", value, b))
            batch.append(_reading(f"aq-{d:02d}", 80.0, b, metric="pm10"))
        out.append(batch)
    return out


def test_partition_of_is_the_producers_partition_for_a_fingerprint_key() -> None:
    producer = DefaultPartitioner()
    for n in range(200):
        fp = f"{n:016x}"
        expected = producer(fp.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))
        assert partition_of(fp, PARTITIONS) == expected


def test_packs_round_trip_and_keep_order_within_a_partition() -> None:
    builder = ObservationBuilder()
    obs = reading_observations(builder, _batches()[0], RULES.metrics())
    items = group_observations(RULES, obs, T0)
    packs = pack_by_partition(items, PARTITIONS)
    flat = [i for p in sorted(packs) for i in packs[p].items]
    assert sorted(i.fingerprint for i in flat) == sorted(i.fingerprint for i in items)
    for p, pack in packs.items():
        assert all(partition_of(i.fingerprint, PARTITIONS) == p for i in pack.items)
        order = [items.index(i) for i in pack.items]
        assert order == sorted(order)
        assert decode_input(encode_input(pack)) == pack


def test_the_metric_filter_drops_only_what_no_rule_selects() -> None:
    builder = ObservationBuilder()
    batch = _batches()[0]
    everything = reading_observations(builder, batch)
    wanted = reading_observations(builder, batch, RULES.metrics())
    assert len(everything) == 80
    assert len(wanted) == 40
    assert group_observations(RULES, everything, T0) == group_observations(RULES, wanted, T0)
    absence = parse_rules(
        {
            "version": 1,
            "rules": [
                THRESHOLD,
                {
                    "name": "silent",
                    "type": "absence",
                    "subject": ["device_id"],
                    "after": "5m",
                    "severity": "major",
                    "annotations": {"summary": {"vi": "x", "en": "x"}},
                },
            ],
        }
    )
    assert RULES.metrics() == frozenset({"pm25"})
    assert absence.metrics() is None  # an absence rule takes every metric: no filter


def _plain(batches: list[list[dict[str, object]]]) -> tuple[list[object], dict[str, bytes]]:
    """One ``obs`` message per (rule, fingerprint), as before packs."""
    builder = ObservationBuilder()
    parts: dict[int, AlertPartition] = {}
    events: list[object] = []
    offsets: dict[int, int] = {}
    for batch in batches:
        for item in group_observations(RULES, reading_observations(builder, batch), T0):
            p = partition_of(item.fingerprint, PARTITIONS)
            part = parts.setdefault(p, AlertPartition(p, RULES))
            offsets[p] = offsets.get(p, -1) + 1
            events += part.apply(offsets[p], decode_input(encode_input(item))).events
    return events, {fp: part.record(fp) for part in parts.values() for fp in part.states}


def _packed(batches: list[list[dict[str, object]]]) -> tuple[list[object], dict[str, bytes]]:
    builder = ObservationBuilder()
    parts: dict[int, AlertPartition] = {}
    events: list[object] = []
    offsets: dict[int, int] = {}
    for batch in batches:
        items = group_observations(RULES, reading_observations(builder, batch, RULES.metrics()), T0)
        for p, pack in sorted(pack_by_partition(items, PARTITIONS).items()):
            part = parts.setdefault(p, AlertPartition(p, RULES))
            offsets[p] = offsets.get(p, -1) + 1
            events += part.apply(offsets[p], decode_input(encode_input(pack))).events
    return events, {fp: part.record(fp) for part in parts.values() for fp in part.states}


def test_packs_give_the_same_events_and_states_as_one_message_per_alert() -> None:
    plain_events, plain_states = _plain(_batches())
    packed_events, packed_states = _packed(_batches())
    kinds = [e.kind for e in packed_events]  # type: ignore[attr-defined]
    assert kinds == ["firing", "resolved"]
    assert packed_events == plain_events
    assert {fp: s[s.index(b'"state"') :] for fp, s in packed_states.items()} == {
        fp: s[s.index(b'"state"') :] for fp, s in plain_states.items()
    }


def test_a_replayed_pack_applies_only_to_fingerprints_not_yet_recorded() -> None:
    builder = ObservationBuilder()
    first, second = _batches()[2:4]
    p, pack = next(
        iter(
            pack_by_partition(
                group_observations(RULES, reading_observations(builder, first), T0), PARTITIONS
            ).items()
        )
    )
    part = AlertPartition(p, RULES)
    assert part.apply(0, pack).dirty
    again = part.apply(0, pack)
    assert again.replayed
    assert not again.dirty
    assert not again.events
    later = [
        i
        for i in group_observations(RULES, reading_observations(builder, second), T0)
        if partition_of(i.fingerprint, PARTITIONS) == p
    ]
    out = part.apply(1, PackInput(tuple(later)))
    assert not out.replayed
    assert sorted(out.dirty) == sorted(i.fingerprint for i in later)


def test_evolve_equals_replace_and_rejects_unknown_fields() -> None:
    state = AlertState("f1", "r", {"device_id": "aq-1"}, value=3.0, last_seen=T0)
    later = T0 + timedelta(seconds=1)
    assert evolve(state, value=4.0, last_seen=later) == replace(state, value=4.0, last_seen=later)
    assert evolve(state) == state
    with pytest.raises(TypeError, match="no field"):
        evolve(state, colour="red")


def test_observe_selected_is_observe_for_a_matched_observation() -> None:
    rule = RULES.rules[0]
    obs = Observation({"device_id": "aq-1", "district": "d"}, "pm25", 160.0, T0)
    fp = rule.fingerprint_of(obs)
    assert fp is not None
    assert observe_selected(None, rule, obs, fp, T0) == observe(None, rule, obs, T0)
    other = Observation({"device_id": "aq-2"}, "pm25", 1.0, T0)
    state, _ = observe(None, rule, other, T0)
    with pytest.raises(ValueError, match="not this observation"):
        observe_selected(state, rule, obs, fp, T0)
    with pytest.raises(ValueError, match="does not select"):
        observe(None, rule, Observation({"device_id": "aq-1"}, "pm10", 1.0, T0), T0)


def test_an_obs_input_still_decodes() -> None:
    """Messages written before packs (an upgrade with a backlog) are still applied."""
    obs = Observation({"device_id": "aq-1"}, "pm25", 12.0, T0)
    item = ObsInput("f", "pm25_high", (obs,), T0)
    assert decode_input(encode_input(item)) == item


def test_an_item_with_a_foreign_observation_is_rejected_with_a_reason() -> None:
    rule = RULES.rules[0]
    mine = Observation({"device_id": "aq-1", "district": "d"}, "pm25", 160.0, T0)
    fp = rule.fingerprint_of(mine)
    assert fp is not None
    other = Observation({"device_id": "aq-2", "district": "d"}, "pm25", 170.0, T0)
    part = AlertPartition(0, RULES)
    out = part.apply(0, ObsInput(fp, rule.name, (other, mine), T0))
    assert "does not give fingerprint" in out.rejected
    assert not out.events
    assert not out.dirty
    later = T0 + timedelta(seconds=1)
    mixed = ObsInput(fp, rule.name, (mine, replace(other, event_time=later)), later)
    out = part.apply(1, mixed)
    assert "does not select" in out.rejected
    assert [e.kind for e in out.events] == ["firing"]  # the matching observation still counts
    assert out.dirty == [fp]


def _lingered(
    batches: list[list[dict[str, object]]], per: int
) -> tuple[list[object], dict[str, bytes]]:
    """Packs gathered over ``per`` input messages at a time (the forwarders' linger)."""
    builder = ObservationBuilder()
    parts: dict[int, AlertPartition] = {}
    events: list[object] = []
    offsets: dict[int, int] = {}
    for start in range(0, len(batches), per):
        buffer = PackBuffer(PARTITIONS)
        for batch in batches[start : start + per]:
            buffer.add(group_observations(RULES, reading_observations(builder, batch), T0))
        for p, pack in sorted(buffer.take().items()):
            part = parts.setdefault(p, AlertPartition(p, RULES))
            offsets[p] = offsets.get(p, -1) + 1
            events += part.apply(offsets[p], decode_input(encode_input(pack))).events
    return events, {fp: part.record(fp) for part in parts.values() for fp in part.states}


@pytest.mark.parametrize("per", [2, 3, 10])
def test_gathering_several_messages_gives_the_same_events_and_states(per: int) -> None:
    plain_events, plain_states = _plain(_batches())
    events, states = _lingered(_batches(), per)
    assert events == plain_events
    assert {fp: s[s.index(b'"state"') :] for fp, s in states.items()} == {
        fp: s[s.index(b'"state"') :] for fp, s in plain_states.items()
    }


def test_the_buffer_merges_an_alert_once_per_pack_and_keeps_the_latest_absence() -> None:
    first = Observation({"device_id": "aq-1"}, "pm25", 1.0, T0)
    second = replace(first, value=2.0, event_time=T0 + timedelta(seconds=1))
    later = T0 + timedelta(seconds=5)
    buffer = PackBuffer(PARTITIONS, absence_rules=["silent"])
    buffer.add([ObsInput("fa", "pm25_high", (first,), T0), ObsInput("fb", "silent", (second,), T0)])
    buffer.add(
        [ObsInput("fa", "pm25_high", (second,), later), ObsInput("fb", "silent", (first,), later)]
    )
    assert buffer.observations == 3
    items = {i.fingerprint: i for pack in buffer.take().values() for i in pack.items}
    assert items["fa"] == ObsInput("fa", "pm25_high", (first, second), later)
    assert items["fb"] == ObsInput("fb", "silent", (second,), later)  # the latest seen only
    assert not buffer
    assert buffer.take() == {}


@pytest.mark.parametrize(
    "values",
    [
        [(95, 0), (120, 5), (130, 16), (160, 20), (145, 25), (80, 30), (85, 70), (200, 71)],
        [(120, 0), (80, 3), (120, 6), (125, 17), (124, 12), (90, 40), (91, 100)],  # one late
        [(50, 0), (60, 1), (70, 2)],
    ],
)
def test_observing_an_item_at_once_equals_observing_one_by_one(
    values: list[tuple[float, int]],
) -> None:
    rule = LIFECYCLE_RULES["pm25_high"]  # a ladder with for and keep_firing_for
    labels = {"device_id": "aq-9"}
    observations = [Observation(labels, "pm25", v, T0 + timedelta(seconds=s)) for v, s in values]
    fp = rule.fingerprint_of(observations[0])
    assert fp is not None
    now = T0 + timedelta(minutes=5)
    state, one_by_one = None, []
    for obs in observations:
        state, events = observe_selected(state, rule, obs, fp, now)
        one_by_one += events
    assert state is not None
    at_once = observe_all(None, rule, observations, fp, now)
    assert at_once == (state, one_by_one)
    if len(values) > 3:
        assert one_by_one  # the scripts do go through the lifecycle
    with pytest.raises(ValueError, match="at least one"):
        observe_all(None, rule, [], fp, now)


def test_compact_items_round_trip_mixed_labels_metrics_and_deadlines() -> None:
    a = Observation({"district": "d", "device_id": "x"}, "pm25", 1.5, T0, timedelta(seconds=30))
    b = Observation({"district": "d", "device_id": "y"}, "pm10", 2.0, T0, None, T0)
    c = replace(a, event_time=T0 + timedelta(microseconds=7), deadline=T0 + timedelta(days=3))
    item = ObsInput("fp", "district_rule", (a, b, c), T0 + timedelta(microseconds=1))
    pack = PackInput((item, ObsInput("fq", "r", (b,), T0)))
    assert decode_input(encode_input(pack)) == pack


@pytest.mark.parametrize(
    ("field", "bad"),
    [("value", "12"), ("value", True), ("t", "2026-11-28T09:00:00Z"), ("ei", -5), ("metric", "")],
)
def test_a_compact_item_with_a_bad_field_is_refused(field: str, bad: object) -> None:
    obs = Observation({"device_id": "aq-1"}, "pm25", 1.0, T0, timedelta(seconds=10))
    obj = orjson.loads(encode_input(PackInput((ObsInput("f", "r", (obs,), T0),))))
    row = obj["items"][0]["o"][0]
    if field == "metric":
        obj["items"][0]["metric"] = bad
    else:
        row[{"value": 0, "t": 1, "ei": 2}[field]] = bad
    with pytest.raises(AlertInputError):
        decode_input(orjson.dumps(obj))
