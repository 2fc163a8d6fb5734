"""Property tests: whatever arrives over MQTT, the decoder answers and never raises.

For every input: no unhandled exception; every dead letter has a reason in ``REASONS``,
encodes for ``ioc.deadletter`` and decodes back equal; a whole-payload failure is exactly
one dead letter holding the original bytes; otherwise readings and dead letters account for
every measurement; and every reading is finite, in range, in the registry unit and inside
the time window.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.mqtt.status import DeviceStatus, decode_status
from connectors.mqtt.topics import parse_topic
from connectors.mqtt.validate import Decoded, Limits, decode_message
from connectors.registry import Registry
from schemas.deadletter import REASONS, DeadLetter
from schemas.readings import decode_batch, encode_batch
from tests.unit.test_mqtt_payload import AQ, RECEIVED, RECEIVED_MS, REGISTRY

FEW = settings(max_examples=150, deadline=None)
SOME = settings(max_examples=60, deadline=None)
BIG = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
QUARANTINE = Limits(unknown_device_policy="quarantine")


def check(
    decoded: Decoded,
    payload: bytes,
    received_at: datetime = RECEIVED,
    limits: Limits | None = None,
    registry: Registry = REGISTRY,
) -> None:
    """The invariants of the module docstring."""
    limits = limits or Limits()
    for dead in decoded.rejections:
        assert dead.reason in REASONS
        assert not dead.detail.startswith("internal decoder error"), dead.detail
        assert DeadLetter.decode(dead.encode()) == dead
    if decoded.measurements == 0:
        assert decoded.readings == []
        assert len(decoded.rejections) == 1
        assert decoded.rejections[0].payload == payload
    else:
        assert len(decoded.readings) + len(decoded.rejections) == decoded.measurements
        for dead in decoded.rejections:
            orjson.loads(dead.payload)  # the extract of one measurement is JSON
    earliest, latest = received_at - limits.max_past, received_at + limits.max_future
    for reading in decoded.readings:
        device = registry.device(reading.device_id)
        assert device is not None
        spec = device.metrics[reading.metric]
        assert math.isfinite(reading.value)
        assert spec.min <= reading.value <= spec.max
        assert reading.unit == spec.unit
        assert reading.event_time.utcoffset() == timedelta(0)
        assert earliest <= reading.event_time <= latest
        assert reading.receive_time == received_at
    for reading in decoded.quarantined:
        assert math.isfinite(reading.value)
        assert earliest <= reading.event_time <= latest
    everything = decoded.readings + decoded.quarantined
    assert len(decode_batch(encode_batch(everything))) == len(everything)


def run(
    payload: bytes,
    topic: str = AQ,
    received_at: datetime = RECEIVED,
    limits: Limits | None = None,
) -> Decoded:
    decoded = decode_message(topic, payload, received_at, REGISTRY, limits or Limits())
    check(decoded, payload, received_at, limits)
    return decoded


# -- strategies -----------------------------------------------------------------------------

METRICS = st.sampled_from(["pm25", "pm10", "temperature", "humidity", "no2", "", "PM25"])
NAMES = METRICS | st.text(max_size=12)
NUMBERS = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-20, max_value=1200)
)
SCALARS = st.none() | st.booleans() | NUMBERS | st.text(max_size=12)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=20,
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-3))])
TIMESTAMPS = (
    st.integers(min_value=RECEIVED_MS - 10**10, max_value=RECEIVED_MS + 10**10)
    | st.integers(min_value=(RECEIVED_MS - 10**10) // 1000, max_value=(RECEIVED_MS + 10**9) // 1000)
    | NUMBERS
    | st.datetimes(timezones=ZONES).map(lambda d: d.isoformat())
    | st.datetimes().map(lambda d: d.isoformat())
    | SCALARS
)
RECEIVE_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=ZONES,
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def to_bytes(value: object) -> bytes:
    """JSON as a careless device writes it: NaN/Infinity literals, huge ints, any text."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


PLATFORM = st.fixed_dictionaries(
    {"values": st.dictionaries(NAMES, NUMBERS | SCALARS, max_size=6)},
    optional={"ts": TIMESTAMPS},
)
SENML_RECORD = st.fixed_dictionaries(
    {},
    optional={
        "bn": st.sampled_from(["aq-lx-001:", "urn:dev:mac:aq-lx-001:", "aq-lx-002/", ""])
        | st.text(max_size=12),
        "bt": TIMESTAMPS,
        "bu": st.sampled_from(["ug/m3", "µg/m3", "Cel", "%RH", ""]) | SCALARS,
        "bv": NUMBERS | SCALARS,
        "bver": st.integers(min_value=-1, max_value=12) | SCALARS,
        "n": NAMES | SCALARS,
        "u": st.sampled_from(["ug/m3", "Cel", "%RH", "m"]) | SCALARS,
        "v": NUMBERS | SCALARS,
        "vs": SCALARS,
        "vb": SCALARS,
        "s": NUMBERS,
        "t": st.integers(min_value=-(10**6), max_value=2**29) | NUMBERS | SCALARS,
        "x_": SCALARS,
        "extra": JSON_VALUES,
    },
)


# -- properties -----------------------------------------------------------------------------


@FEW
@given(st.binary(max_size=512))
def test_arbitrary_bytes(payload: bytes) -> None:
    run(payload)


@FEW
@given(JSON_VALUES)
def test_arbitrary_json_including_nan_and_huge_numbers(value: object) -> None:
    run(to_bytes(value))


@FEW
@given(st.one_of(PLATFORM, st.lists(PLATFORM, max_size=4)), RECEIVE_TIMES)
def test_platform_json_with_odd_values_and_timestamps(value: Any, received_at: datetime) -> None:
    run(to_bytes(value), received_at=received_at)


@FEW
@given(st.lists(SENML_RECORD, max_size=6), RECEIVE_TIMES)
def test_broken_senml(pack: list[dict[str, Any]], received_at: datetime) -> None:
    run(to_bytes(pack), received_at=received_at)


@FEW
@given(
    st.lists(
        st.fixed_dictionaries(
            {"n": METRICS, "v": st.floats(min_value=-50, max_value=2500)},
            optional={"t": st.integers(min_value=-(10**6), max_value=600), "u": st.just("Cel")},
        ),
        min_size=1,
        max_size=8,
    )
)
def test_plausible_senml_every_record_is_accounted_for(pack: list[dict[str, Any]]) -> None:
    decoded = run(to_bytes([{"bn": "aq-lx-001:"}, *pack]))
    assert decoded.measurements == len(pack)


@FEW
@given(st.text(max_size=80) | st.builds("/".join, st.lists(st.text(max_size=8), max_size=7)))
def test_hostile_topics(topic: str) -> None:
    decoded = run(b'{"pm25": 1}', topic=topic)
    if parse_topic(topic) is None:
        assert [d.reason for d in decoded.rejections] == ["topic_outside_layout"]
    result = decode_status(topic, b"online", RECEIVED)
    assert isinstance(result, (DeviceStatus, DeadLetter))


@FEW
@given(
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True),
    st.sampled_from(["long-xuyen", "chau-doc"]),
    st.sampled_from(["air_quality", "traffic", "river_gauge"]),
    st.one_of(PLATFORM.map(to_bytes), st.lists(SENML_RECORD, max_size=4).map(to_bytes)),
)
def test_hostile_device_ids_in_both_policies(
    device_id: str, district: str, kind: str, payload: bytes
) -> None:
    topic = f"ioc/{district}/{kind}/{device_id}/telemetry"
    run(payload, topic=topic)
    run(payload, topic=topic, limits=QUARANTINE)


@FEW
@given(st.binary(max_size=300), st.text(max_size=60))
def test_status_never_raises(payload: bytes, topic: str) -> None:
    for t in (topic, "ioc/long-xuyen/air_quality/aq-lx-001/status"):
        result = decode_status(t, payload, RECEIVED, REGISTRY)
        if isinstance(result, DeadLetter):
            assert result.reason in REASONS
            assert DeadLetter.decode(result.encode()) == result


@BIG
@given(
    st.integers(min_value=1, max_value=200_000),
    st.sampled_from([b"[]", b'{"a":}', b'{"pm25":}', b'{"ts":}']),
    st.sampled_from([b"1", b"NaN"]),
)
def test_deep_nesting_costs_no_stack(depth: int, brackets: bytes, core: bytes) -> None:
    opening, closing = brackets[:-1], brackets[-1:]
    payload = opening * depth + core + closing * depth
    run(payload, limits=Limits(max_payload_bytes=10**7))
    run(payload)  # and with the default limit, mostly payload_too_large


@pytest.mark.parametrize("depth", [1, 253, 254, 255, 1023, 1024])
@pytest.mark.parametrize(
    "template",
    [
        '{{"pm25": {deep}}}',
        '{{"ts": {deep}, "values": {{"pm25": 1}}}}',
        '[{{"n": "pm25", "vs": "x", "extra": {deep}}}]',
    ],
)
def test_nesting_around_the_encoder_limit(depth: int, template: str) -> None:
    # orjson reads 1024 levels but writes only 254: dead-letter extracts must still encode.
    deep = "[" * depth + "1" + "]" * depth
    run(template.format(deep=deep).encode())


@BIG
@given(st.integers(min_value=1, max_value=20_000), st.booleans())
def test_huge_packs_are_bounded_and_accounted_for(records: int, nan: bool) -> None:
    body = ",".join(['{"n":"pm25","v":12.5,"t":-1}'] * records)
    tail = ',{"n":"pm25","v":NaN}' if nan else ""
    data = f'[{{"bn":"aq-lx-001:"}},{body}{tail}]'.encode()
    decoded = run(data, limits=Limits(max_payload_bytes=10**6))
    if nan:
        assert [d.reason for d in decoded.rejections] == ["non_finite_value"]
    else:
        assert len(decoded.readings) == records
    small = run(data)
    if len(data) > 64 * 1024:
        assert [d.reason for d in small.rejections] == ["payload_too_large"]
