"""Decoding and validating MQTT telemetry: worked examples for every rule.

The platform JSON format (ThingsBoard's shape), SenML packs (RFC 8428, including the RFC's own
examples), timestamps, limits and every dead-letter reason. The registry here is built in the
test, so the examples do not depend on the shipped ``deploy/devices.yaml``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from connectors.mqtt.senml import strip_device
from connectors.mqtt.validate import QUARANTINED, Decoded, Limits, decode_message
from connectors.registry import Registry
from schemas.deadletter import REASONS, DeadLetter
from schemas.readings import Reading

RECEIVED = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # 09:00 in Long Xuyên
RECEIVED_MS = 1_795_831_200_000
RECEIVED_S = RECEIVED_MS // 1000
AQ = "ioc/long-xuyen/air_quality/aq-lx-001/telemetry"
ONE_WIRE = "urn:dev:ow:10e2073a01080063"  # RFC 8428's example device


def registry_doc(**aq_metrics: Any) -> dict[str, Any]:
    lab = {"district": "lab", "location": {"lat": 10.0, "lon": 105.0}, "kind": "sensor"}
    return {
        "version": 1,
        "kinds": {
            "air_quality": {
                "expected_interval_s": 60,
                "metrics": {
                    "pm25": {"unit": "ug/m3", "min": 0, "max": 1000, "aliases": ["µg/m3"]},
                    "pm10": {"unit": "ug/m3", "min": 0, "max": 2000},
                    "temperature": {"unit": "Cel", "min": -10, "max": 60},
                    "humidity": {"unit": "%RH", "min": 0, "max": 100},
                    **aq_metrics,
                },
            },
            "sensor": {
                "expected_interval_s": 1,
                "metrics": {
                    "temp": {"unit": "Cel", "min": -40, "max": 85},
                    "voltage": {"unit": "V", "min": 0, "max": 400},
                    "current": {"unit": "A", "min": 0, "max": 100},
                },
            },
        },
        "devices": [
            {
                "id": "aq-lx-001",
                "kind": "air_quality",
                "district": "long-xuyen",
                "ward": "my-binh",
                "location": {"lat": 10.387, "lon": 105.437},
            },
            {"id": "10e2073a01080063", **lab},
            {"id": "10e2073a0108006", **lab},
        ],
    }


REGISTRY = Registry.from_dict(registry_doc())


def decode(
    payload: bytes | str | object,
    topic: str = AQ,
    received_at: datetime = RECEIVED,
    limits: Limits | None = None,
    registry: Registry = REGISTRY,
) -> Decoded:
    if isinstance(payload, str):
        data = payload.encode()
    elif isinstance(payload, bytes):
        data = payload
    else:
        data = orjson.dumps(payload)
    return decode_message(topic, data, received_at, registry, limits or Limits())


def reasons(decoded: Decoded) -> list[str]:
    return [d.reason for d in decoded.rejections]


def values(decoded: Decoded) -> list[tuple[str, float, str, datetime, str]]:
    return [(r.metric, r.value, r.unit, r.event_time, r.time_source) for r in decoded.readings]


def whole(decoded: Decoded, payload: bytes) -> DeadLetter:
    """The single dead letter of a whole-payload failure (checks the payload is kept whole)."""
    assert decoded.readings == []
    assert decoded.measurements == 0
    assert len(decoded.rejections) == 1
    dead = decoded.rejections[0]
    assert dead.payload == payload
    assert dead.reason in REASONS
    return dead


# -- platform JSON format ------------------------------------------------------------------


def test_json_reading_with_epoch_ms_becomes_canonical_readings() -> None:
    decoded = decode({"ts": RECEIVED_MS - 60_000, "values": {"pm25": 35.2, "pm10": 51}})
    event = RECEIVED - timedelta(minutes=1)
    common: dict[str, Any] = {
        "device_id": "aq-lx-001",
        "device_kind": "air_quality",
        "district": "long-xuyen",
        "ward": "my-binh",
        "unit": "ug/m3",
        "event_time": event,
        "receive_time": RECEIVED,
        "time_source": "device",
        "source": f"mqtt:{AQ}",
    }
    assert decoded.readings == [
        Reading(metric="pm25", value=35.2, **common),
        Reading(metric="pm10", value=51.0, **common),
    ]
    assert decoded.rejections == []
    assert decoded.measurements == 2
    assert decoded.readings[0].event_time.tzinfo is UTC


@pytest.mark.parametrize(
    "ts",
    [
        RECEIVED_MS,  # epoch ms
        RECEIVED_S,  # epoch s
        float(RECEIVED_S),
        "2026-11-28T02:00:00Z",
        "2026-11-28T09:00:00+07:00",  # Long Xuyên local time with its offset
        "2026-11-28T02:00:00.000+00:00",
    ],
)
def test_json_timestamp_forms(ts: object) -> None:
    decoded = decode({"ts": ts, "values": {"pm25": 10}})
    assert values(decoded) == [("pm25", 10.0, "ug/m3", RECEIVED, "device")]


def test_json_without_ts_uses_the_receive_time_and_says_so() -> None:
    ict = timezone(timedelta(hours=7))
    decoded = decode({"pm25": 12.5, "humidity": 80}, received_at=RECEIVED.astimezone(ict))
    assert values(decoded) == [
        ("pm25", 12.5, "ug/m3", RECEIVED, "receive"),
        ("humidity", 80.0, "%RH", RECEIVED, "receive"),
    ]
    assert all(r.receive_time == RECEIVED for r in decoded.readings)
    assert all(r.event_time.utcoffset() == timedelta(0) for r in decoded.readings)
    assert decode({"values": {"pm25": 1}}).readings[0].time_source == "receive"


def test_json_list_of_readings_keeps_order_and_times() -> None:
    decoded = decode(
        [
            {"ts": RECEIVED_MS - 120_000, "values": {"pm25": 1}},
            {"ts": RECEIVED_MS - 60_000, "values": {"pm25": 2, "pm10": 3}},
        ]
    )
    assert values(decoded) == [
        ("pm25", 1.0, "ug/m3", RECEIVED - timedelta(minutes=2), "device"),
        ("pm25", 2.0, "ug/m3", RECEIVED - timedelta(minutes=1), "device"),
        ("pm10", 3.0, "ug/m3", RECEIVED - timedelta(minutes=1), "device"),
    ]


def test_a_bad_ts_rejects_its_entry_only() -> None:
    decoded = decode(
        [
            {"ts": RECEIVED_MS, "values": {"pm25": 1}},
            {"ts": "2026-11-28T09:00:00", "values": {"pm25": 2, "pm10": 3}},  # no offset
            {"ts": True, "values": {"humidity": 50}},
        ]
    )
    assert values(decoded) == [("pm25", 1.0, "ug/m3", RECEIVED, "device")]
    assert reasons(decoded) == ["bad_timestamp"] * 3
    assert "no UTC offset" in decoded.rejections[0].detail
    assert decoded.rejections[0].detail.startswith("measurement 1 ('pm25'): ")
    assert orjson.loads(decoded.rejections[1].payload) == {
        "ts": "2026-11-28T09:00:00",
        "values": {"pm10": 3},
    }
    assert "boolean" in decoded.rejections[2].detail


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        ({"ts": RECEIVED_MS, "pm25": 3}, "malformed_payload", "'ts' without 'values'"),
        ({"ts": 1, "values": {"pm25": 1}, "pm10": 2}, "malformed_payload", "unexpected field"),
        ({"values": [1, 2]}, "malformed_payload", "'values' is not an object"),
        ([{"values": {"pm25": 1}}, 5], "malformed_payload", "entry 1 is not a JSON object"),
        ([{"values": {"pm25": 1}}, {"pm10": 2}], "malformed_payload", "entry 1 has no 'values'"),
        ([{"ts": RECEIVED_MS}], "malformed_payload", "entry 0 has no 'values'"),
        ({"values": {}}, "malformed_payload", "no measurements"),
        ({}, "malformed_payload", "no measurements"),
        ([], "malformed_payload", "empty array"),
        (35.2, "malformed_payload", "top-level JSON number"),
        ("online", "malformed_payload", "top-level JSON string"),
        (None, "malformed_payload", "top-level JSON null"),
        (True, "malformed_payload", "top-level JSON boolean"),
    ],
)
def test_json_of_the_wrong_shape_is_rejected_whole(
    payload: object, reason: str, detail: str
) -> None:
    data = orjson.dumps(payload)
    dead = whole(decode(data), data)
    assert dead.reason == reason
    assert detail in dead.detail
    assert dead.source == f"mqtt:{AQ}"
    assert dead.source_id == "aq-lx-001"
    assert dead.received_at == RECEIVED


def test_non_numeric_values_are_rejected_one_by_one() -> None:
    decoded = decode({"pm25": True, "pm10": "51.0", "temperature": None, "humidity": {"v": 1}})
    assert decoded.readings == []
    assert reasons(decoded) == ["non_numeric_value"] * 4
    details = [d.detail for d in decoded.rejections]
    for detail, kind in zip(details, ["boolean", "string", "null", "object"], strict=True):
        assert f"{kind} value" in detail


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"  \n",
        b"{",
        b'{"pm25": 1,}',
        b"{'pm25': 1}",
        b'{"pm25": 01}',
        b"\xff\xfe{}",
        b'{"pm25": "\xff"}',
        b'{"pm25": 1} {"pm10": 2}',
        b"[" * 2000 + b"]" * 2000,  # nesting past orjson's 1024 levels
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
    ],
)
def test_malformed_json_is_rejected_whole(payload: bytes) -> None:
    assert whole(decode(payload), payload).reason == "malformed_json"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"pm25": NaN}',
        b'{"ts": 1795831200000, "values": {"pm25": Infinity}}',
        b'{"pm25": -Infinity, "pm10": 1}',
        b'[{"n": "pm25", "v": NaN}]',
        b'{"pm25": 1e400}',
        b'[{"n": "pm25", "v": -1e999}]',
    ],
)
def test_nan_and_infinity_are_non_finite_not_malformed(payload: bytes) -> None:
    assert whole(decode(payload), payload).reason == "non_finite_value"


@pytest.mark.parametrize("payload", [b'{"note": "NaN", ', b"NaNa", b"[Infinity"])
def test_nan_text_in_broken_json_is_still_malformed(payload: bytes) -> None:
    assert whole(decode(payload), payload).reason == "malformed_json"


def test_payload_size_limit_is_inclusive_and_configurable() -> None:
    body = b'{"pm25": 1}'
    at_limit = body + b" " * (64 * 1024 - len(body))
    assert len(decode(at_limit).readings) == 1
    over = at_limit + b" "
    dead = whole(decode(over), over)
    assert dead.reason == "payload_too_large"
    assert "65537 bytes" in dead.detail
    small = Limits(max_payload_bytes=10)
    assert whole(decode(body, limits=small), body).reason == "payload_too_large"


# -- checks against the registry --------------------------------------------------------------


def test_unknown_metric_names_the_known_ones() -> None:
    decoded = decode({"pm25": 1, "pm1": 2})
    assert values(decoded) == [("pm25", 1.0, "ug/m3", RECEIVED, "receive")]
    assert reasons(decoded) == ["unknown_metric"]
    assert "'pm1' is not declared" in decoded.rejections[0].detail
    assert "humidity, pm10, pm25, temperature" in decoded.rejections[0].detail


@pytest.mark.parametrize(
    ("metric", "value", "accepted"),
    [
        ("pm25", 0, True),
        ("pm25", 1000, True),  # bounds are inclusive
        ("pm25", -0.1, False),
        ("pm25", 1000.01, False),
        ("temperature", -10, True),
        ("temperature", -10.5, False),
        ("humidity", 100.0, True),
        ("humidity", 101, False),
    ],
)
def test_plausible_range(metric: str, value: float, accepted: bool) -> None:
    decoded = decode({metric: value})
    assert len(decoded.readings) == int(accepted)
    assert reasons(decoded) == ([] if accepted else ["out_of_range"])


def test_time_window_bounds_are_inclusive_and_configurable() -> None:
    future, past = Limits().max_future, Limits().max_past
    assert (future, past) == (timedelta(minutes=5), timedelta(days=7))

    def at(offset: timedelta, limits: Limits | None = None) -> list[str]:
        ts = RECEIVED_MS + int(offset / timedelta(milliseconds=1))
        decoded = decode({"ts": ts, "values": {"pm25": 1}}, limits=limits)
        return reasons(decoded) or ["ok"]

    ms = timedelta(milliseconds=1)
    assert at(future) == ["ok"]
    assert at(future + ms) == ["timestamp_in_future"]
    assert at(-past) == ["ok"]
    assert at(-past - ms) == ["timestamp_too_old"]
    tight = Limits(max_future=timedelta(0), max_past=timedelta(minutes=1))
    assert at(ms, tight) == ["timestamp_in_future"]
    assert at(-timedelta(minutes=2), tight) == ["timestamp_too_old"]
    assert at(timedelta(0), tight) == ["ok"]


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("1e300", "timestamp_in_future"),
        ("1" + "0" * 30, "timestamp_in_future"),  # beyond 64-bit integers
        ("-1" + "0" * 30, "timestamp_too_old"),
        ("0", "timestamp_too_old"),
        ('"9999-12-31T23:59:59Z"', "timestamp_in_future"),
        ('"0001-01-01T00:00:00+14:00"', "timestamp_too_old"),
    ],
)
def test_absurd_times_are_judged_not_crashed_on(ts: str, reason: str) -> None:
    assert reasons(decode(f'{{"ts": {ts}, "values": {{"pm25": 1}}}}')) == [reason]


def test_topic_outside_layout_keeps_topic_and_payload() -> None:
    for topic in [
        "ioc/long-xuyen/air_quality/aq-lx-001",
        "sensors/aq-lx-001",
        "ioc/x/y/\ud800/telemetry",
    ]:
        decoded = decode(b'{"pm25": 1}', topic=topic)
        dead = whole(decoded, b'{"pm25": 1}')
        assert dead.reason == "topic_outside_layout"
        assert dead.source.startswith("mqtt:")
        assert DeadLetter.decode(dead.encode()) == dead  # even a lone surrogate is encodable
    status = decode(b"online", topic="ioc/long-xuyen/air_quality/aq-lx-001/status")
    assert whole(status, b"online").detail == "status topic given to the telemetry decoder"


def test_unknown_device_is_rejected_whole_by_default() -> None:
    topic = "ioc/long-xuyen/air_quality/aq-lx-999/telemetry"
    dead = whole(decode(b'{"pm25": 1}', topic=topic), b'{"pm25": 1}')
    assert (dead.reason, dead.source_id) == ("unknown_device", "aq-lx-999")


def test_unknown_device_can_be_quarantined() -> None:
    topic = "ioc/chau-doc/air_quality/aq-cd-001/telemetry"
    payload = orjson.dumps(
        [
            {"n": "pm25", "v": 20},  # no unit: the kind's registry unit
            {"n": "noise", "u": "dB", "v": 60},  # unknown to the kind: kept with its unit
            {"n": "pm10", "vs": "high"},  # not a number: not kept
            {"n": "pm10", "v": 30, "t": 3600},  # an hour ahead: not kept
        ]
    )
    decoded = decode(payload, topic=topic, limits=Limits(unknown_device_policy="quarantine"))
    assert decoded.readings == []
    dead = whole(decoded, payload)
    assert (dead.reason, dead.detail) == ("unknown_device", QUARANTINED)
    assert [(r.metric, r.value, r.unit) for r in decoded.quarantined] == [
        ("pm25", 20.0, "ug/m3"),
        ("noise", 60.0, "dB"),
    ]
    r = decoded.quarantined[0]
    assert (r.device_id, r.device_kind, r.district, r.ward) == (
        "aq-cd-001",
        "air_quality",
        "chau-doc",
        "",
    )
    broken = decode(b"{", topic=topic, limits=Limits(unknown_device_policy="quarantine"))
    assert broken.quarantined == []
    assert reasons(broken) == ["unknown_device"]


@pytest.mark.parametrize(
    "topic",
    [
        "ioc/chau-doc/air_quality/aq-lx-001/telemetry",  # wrong district
        "ioc/long-xuyen/traffic/aq-lx-001/telemetry",  # wrong kind
    ],
)
def test_topic_must_agree_with_the_registry(topic: str) -> None:
    dead = whole(decode(b'{"pm25": 1}', topic=topic), b'{"pm25": 1}')
    assert dead.reason == "device_mismatch"
    assert "district 'long-xuyen', kind 'air_quality'" in dead.detail


def test_a_rejected_measurement_replays_alone() -> None:
    payload = orjson.dumps({"ts": RECEIVED_MS, "values": {"pm25": 5, "no2": 40.5}})
    decoded = decode(payload)
    assert values(decoded) == [("pm25", 5.0, "ug/m3", RECEIVED, "device")]
    (dead,) = decoded.rejections
    assert dead.reason == "unknown_metric"
    assert orjson.loads(dead.payload) == {"ts": RECEIVED_MS, "values": {"no2": 40.5}}
    # Once no2 is registered, replaying the dead letter gives that reading and no other.
    fixed = Registry.from_dict(registry_doc(no2={"unit": "ug/m3", "min": 0, "max": 5000}))
    replay = decode(dead.payload, registry=fixed)
    assert values(replay) == [("no2", 40.5, "ug/m3", RECEIVED, "device")]


def test_dead_letters_survive_the_wire() -> None:
    decoded = decode({"pm25": -5, "pm1": 1, "humidity": "wet"})
    assert reasons(decoded) == ["out_of_range", "unknown_metric", "non_numeric_value"]
    for dead in decoded.rejections:
        assert DeadLetter.decode(dead.encode()) == dead


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_payload_bytes"):
        Limits(max_payload_bytes=0)
    with pytest.raises(ValueError, match="negative"):
        Limits(max_future=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="unknown_device_policy"):
        Limits(unknown_device_policy="drop")  # type: ignore[arg-type]


def test_naive_receive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        decode_message(AQ, b"{}", datetime(2026, 1, 1), REGISTRY, Limits())  # noqa: DTZ001


# -- SenML (RFC 8428) ---------------------------------------------------------------------------


def lab(device: str = "10e2073a01080063") -> str:
    return f"ioc/lab/sensor/{device}/telemetry"


def test_rfc8428_single_datapoint_names_the_device_not_a_metric() -> None:
    # RFC 8428 section 5.1.1: the name is the device itself; the registry needs a metric.
    payload = b'[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]'
    decoded = decode(payload, topic=lab())
    assert reasons(decoded) == ["unknown_metric"]
    assert "names the device itself" in decoded.rejections[0].detail


def test_rfc8428_multiple_datapoints_now() -> None:
    # RFC 8428 section 5.1.2, first example: no time, so "now" = the receive time.
    payload = (
        b'[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},'
        b'{"n":"current","u":"A","v":1.2}]'
    )
    assert values(decode(payload, topic=lab())) == [
        ("voltage", 120.1, "V", RECEIVED, "receive"),
        ("current", 1.2, "A", RECEIVED, "receive"),
    ]


RFC_PACK = b"""[
 {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
  "bu":"A","bver":5,
  "n":"voltage","u":"V","v":120.1},
 {"n":"current","t":-5,"v":1.2},
 {"n":"current","t":-4,"v":1.3},
 {"n":"current","t":-3,"v":1.4},
 {"n":"current","t":-2,"v":1.5},
 {"n":"current","t":-1,"v":1.6},
 {"n":"current","v":1.7}
]"""
RFC_RESOLVED = b"""[
 {"n":"urn:dev:ow:10e2073a0108006:voltage","u":"V","v":120.1,"t":1.276020076001e+09},
 {"n":"urn:dev:ow:10e2073a0108006:current","u":"A","v":1.2,"t":1.276020071001e+09},
 {"n":"urn:dev:ow:10e2073a0108006:current","u":"A","v":1.3,"t":1.276020072001e+09},
 {"n":"urn:dev:ow:10e2073a0108006:current","u":"A","v":1.4,"t":1.276020073001e+09},
 {"n":"urn:dev:ow:10e2073a0108006:current","u":"A","v":1.5,"t":1.276020074001e+09},
 {"n":"urn:dev:ow:10e2073a0108006:current","u":"A","v":1.6,"t":1.276020075001e+09},
 {"n":"urn:dev:ow:10e2073a0108006:current","u":"A","v":1.7,"t":1.276020076001e+09}
]"""
RFC_TIME = datetime(2010, 6, 8, 18, 1, 16, 1000, tzinfo=UTC)  # "Tue Jun 8 18:01:16.001 UTC 2010"


def test_rfc8428_multiple_datapoints_with_base_time_and_unit() -> None:
    # RFC 8428 section 5.1.2, second example: current at 18:01:16.001 and each second before.
    decoded = decode(RFC_PACK, topic=lab("10e2073a0108006"), received_at=RFC_TIME)
    expected = [("voltage", 120.1, "V", RFC_TIME, "device")] + [
        ("current", 1.2 + i / 10, "A", RFC_TIME - timedelta(seconds=5 - i), "device")
        for i in range(6)
    ]
    got = values(decoded)
    assert [g[0::2] for g in got] == [e[0::2] for e in expected]  # metric, unit, time, source
    assert [g[1] for g in got] == pytest.approx([e[1] for e in expected])


def test_rfc8428_resolved_records_give_the_same_readings() -> None:
    # RFC 8428 section 5.1.4 (Resolved Data): the pack above in resolved form (section 4.6).
    topic = lab("10e2073a0108006")
    packed = decode(RFC_PACK, topic=topic, received_at=RFC_TIME)
    resolved = decode(RFC_RESOLVED, topic=topic, received_at=RFC_TIME)
    assert values(resolved) == values(packed)
    assert len(resolved.readings) == 7


def test_rfc8428_multiple_data_types() -> None:
    # RFC 8428 section 5.1.5: string, boolean and data values next to a number.
    payload = b"""[
      {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
      {"n":"label","vs":"Machine Room"},
      {"n":"open","vb":false},
      {"n":"nfc-reader","vd":"aGkgCg"}
    ]"""
    decoded = decode(payload, topic=lab())
    assert values(decoded) == [("temp", 23.1, "Cel", RECEIVED, "receive")]
    # Not declared for the device: unknown_metric comes first.
    assert reasons(decoded) == ["unknown_metric"] * 3
    extract = orjson.loads(decoded.rejections[0].payload)
    assert extract == [
        {"n": f"{ONE_WIRE}:label", "vs": "Machine Room", "t": RECEIVED_S},
    ]
    # Declared, they are still not numbers.
    doc = registry_doc()
    doc["kinds"]["sensor"]["metrics"].update(
        {m: {"unit": "1"} for m in ("label", "open", "nfc-reader")}
    )
    declared = decode(payload, topic=lab(), registry=Registry.from_dict(doc))
    assert reasons(declared) == ["non_numeric_value"] * 3
    details = [d.detail for d in declared.rejections]
    assert ["string value" in details[0], "boolean value" in details[1]] == [True, True]
    assert "data value" in details[2]


def test_rfc8428_multiple_measurements_without_names_have_no_metric() -> None:
    # RFC 8428 section 5.1.3 (humidity + position of a mobile device): every record is named
    # by the base name alone, so none names a metric the registry could know.
    payload = b"""[
      {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},
      {"u":"lon","v":24.30621},
      {"u":"lat","v":60.07965},
      {"t":60,"v":20.3}
    ]"""
    decoded = decode(payload, topic=lab(), received_at=datetime(2011, 10, 31, 13, 26, tzinfo=UTC))
    assert decoded.readings == []
    assert reasons(decoded) == ["unknown_metric"] * 4


def test_senml_base_value_base_unit_and_aliases() -> None:
    payload = orjson.dumps(
        [
            {"bn": "aq-lx-001:", "bt": RECEIVED_S, "bu": "µg/m3", "bv": 30, "n": "pm25", "v": 5.5},
            {"n": "pm25", "v": -2, "t": -60},
            {"n": "humidity", "u": "%RH", "v": 50},  # bv is added to every v
            {"n": "pm10", "v": 1},  # bu µg/m3 is not an alias of pm10's unit
        ]
    )
    decoded = decode(payload)
    assert values(decoded) == [
        ("pm25", 35.5, "ug/m3", RECEIVED, "device"),
        ("pm25", 28.0, "ug/m3", RECEIVED - timedelta(minutes=1), "device"),
        ("humidity", 80.0, "%RH", RECEIVED, "device"),
    ]
    assert reasons(decoded) == ["wrong_unit"]
    assert "unit 'µg/m3', expected 'ug/m3'" in decoded.rejections[0].detail


@pytest.mark.parametrize(
    ("record", "expected", "source"),
    [
        ({"n": "pm25", "v": 1}, RECEIVED, "receive"),  # no time: now
        ({"n": "pm25", "v": 1, "t": 0}, RECEIVED, "receive"),
        ({"n": "pm25", "v": 1, "t": -30.5}, RECEIVED - timedelta(seconds=30.5), "receive"),
        ({"n": "pm25", "v": 1, "t": 10}, RECEIVED + timedelta(seconds=10), "receive"),
        ({"n": "pm25", "v": 1, "t": RECEIVED_S}, RECEIVED, "device"),
        (
            {"n": "pm25", "v": 1, "bt": RECEIVED_S - 100, "t": 40},
            RECEIVED - timedelta(seconds=60),
            "device",
        ),
    ],
)
def test_senml_relative_and_absolute_times(
    record: dict[str, Any], expected: datetime, source: str
) -> None:
    assert values(decode([record])) == [("pm25", 1.0, "ug/m3", expected, source)]


def test_senml_two_to_the_28_separates_relative_from_absolute() -> None:
    # 2**28 s is an absolute time in 1978: far too old. One second less is relative: 8.5 years
    # from now, far in the future.
    assert reasons(decode([{"n": "pm25", "v": 1, "t": 2**28}])) == ["timestamp_too_old"]
    assert reasons(decode([{"n": "pm25", "v": 1, "t": 2**28 - 1}])) == ["timestamp_in_future"]


def test_senml_milliseconds_are_not_guessed() -> None:
    # RFC 8428 times are seconds: a millisecond value is ~57,000 years ahead.
    assert reasons(decode([{"n": "pm25", "v": 1, "t": RECEIVED_MS}])) == ["timestamp_in_future"]


def test_senml_overflowing_time_and_value() -> None:
    decoded = decode([{"n": "pm25", "bt": 1.7e308, "t": 1.7e308, "v": 1}])
    assert reasons(decoded) == ["bad_timestamp"]
    assert orjson.loads(decoded.rejections[0].payload)[0]["t"] is None
    decoded = decode([{"n": "pm25", "bv": 1.7e308, "v": 1.7e308}])
    assert reasons(decoded) == ["non_finite_value"]
    assert "inf" in decoded.rejections[0].detail


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        ({"n": "pm25", "vs": "35"}, "string"),
        ({"n": "pm25", "vb": True}, "boolean"),
        ({"n": "pm25", "vd": "aGkgCg"}, "data"),
        ({"n": "pm25", "s": 120.5}, "sum"),
    ],
)
def test_senml_non_numeric_values(record: dict[str, Any], kind: str) -> None:
    decoded = decode([record])
    assert reasons(decoded) == ["non_numeric_value"]
    assert f"{kind} value" in decoded.rejections[0].detail


@pytest.mark.parametrize(
    ("pack", "detail"),
    [
        ([5], "record 0 is not a JSON object"),
        ([{"n": 5, "v": 1}], "n must be a string"),
        ([{"n": "pm25", "v": "1"}], "v must be a number"),
        ([{"n": "pm25", "v": True}], "v must be a number"),
        ([{"n": "pm25", "vb": 1}], "vb must be a boolean"),
        ([{"n": "pm25", "t": "now", "v": 1}], "t must be a number"),
        ([{"bn": 7, "n": "pm25", "v": 1}], "bn must be a string"),
        ([{"bt": "x", "n": "pm25", "v": 1}], "bt must be a number"),
        ([{"n": "pm25", "v": 1, "vs": "1"}], "more than one value field"),
        ([{"n": "pm 25", "v": 1}], "not a valid SenML name"),
        ([{"n": "-pm25", "v": 1}], "not a valid SenML name"),
        ([{"v": 1}], "resolved name '' is not a valid"),
        ([{"n": "pm25", "v": 1, "unit_": "x"}], "must be understood"),
        ([{"bver": 11, "n": "pm25", "v": 1}], "bver 11"),
        ([{"bver": "10", "n": "pm25", "v": 1}], "bver '10'"),
        ([{"bver": 10, "n": "pm25", "v": 1}, {"bver": 5, "n": "pm25", "v": 1}], "differs"),
        ([{"n": "pm25", "u": "ug/m3"}], "neither a value"),
        ([{"pm25": 3}], "no SenML field"),
        ([{"bn": "aq-lx-001:", "bt": 1}], "no measurement"),
    ],
)
def test_invalid_senml_packs_are_rejected_whole(pack: list[Any], detail: str) -> None:
    data = orjson.dumps(pack)
    dead = whole(decode(data), data)
    assert dead.reason == "malformed_senml"
    assert detail in dead.detail


def test_senml_ignores_unknown_fields_and_base_only_records() -> None:
    pack = [
        {"bn": "aq-lx-001:", "bt": RECEIVED_S, "vendor": "x"},
        {"n": "pm25", "v": 3, "ut": 60, "note": {"any": "thing"}},
    ]
    assert values(decode(pack)) == [("pm25", 3.0, "ug/m3", RECEIVED, "device")]


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("pm25", "pm25"),
        ("aq-lx-001:pm25", "pm25"),
        ("aq-lx-001/pm25", "pm25"),
        ("urn:dev:mac:aq-lx-001:pm25", "pm25"),
        ("site/aq-lx-001/pm25", "pm25"),
        ("urn:dev:ow:aq-lx-001", ""),  # the device itself
        ("aq-lx-001", ""),
        ("aq-lx-0011:pm25", "aq-lx-0011:pm25"),  # another device
        ("xaq-lx-001:pm25", "xaq-lx-001:pm25"),
        ("aq-lx-002:pm25", "aq-lx-002:pm25"),
        ("aq-lx-001.pm25", "aq-lx-001.pm25"),  # '.' is not a separator
    ],
)
def test_device_prefix_is_stripped_only_as_a_whole_segment(name: str, metric: str) -> None:
    assert strip_device(name, "aq-lx-001") == metric
    decoded = decode([{"n": name, "v": 1}])
    if metric == "pm25":
        assert values(decoded) == [("pm25", 1.0, "ug/m3", RECEIVED, "receive")]
    else:
        assert reasons(decoded) == ["unknown_metric"]


def test_senml_rejection_extract_is_a_resolved_record() -> None:
    payload = orjson.dumps(
        [
            {"bn": "aq-lx-001:", "bt": RECEIVED_S, "bu": "ug/m3", "n": "pm25", "v": 1, "t": -10},
            {"n": "pm25", "v": 5000},
        ]
    )
    decoded = decode(payload)
    (dead,) = decoded.rejections
    assert dead.reason == "out_of_range"
    assert orjson.loads(dead.payload) == [
        {"n": "aq-lx-001:pm25", "u": "ug/m3", "v": 5000.0, "t": RECEIVED_S}
    ]


def test_json_list_and_senml_pack_are_told_apart() -> None:
    assert values(decode([{"ts": RECEIVED_MS, "values": {"pm25": 1}}])) == [
        ("pm25", 1.0, "ug/m3", RECEIVED, "device")
    ]
    assert values(decode([{"n": "pm25", "v": 1}])) == [("pm25", 1.0, "ug/m3", RECEIVED, "receive")]
    mixed = orjson.dumps([{"values": {"pm25": 1}}, {"n": "pm25", "v": 1}])
    assert whole(decode(mixed), mixed).reason == "malformed_payload"


def test_bytearray_payloads_as_paho_may_deliver() -> None:
    decoded = decode_message(AQ, bytearray(b'{"pm25": 1, "x": 2}'), RECEIVED, REGISTRY)
    assert values(decoded) == [("pm25", 1.0, "ug/m3", RECEIVED, "receive")]
    assert type(decoded.rejections[0].payload) is bytes
    broken = decode_message(AQ, memoryview(b"{"), RECEIVED, REGISTRY)
    assert whole(broken, b"{").reason == "malformed_json"


def test_too_deep_to_write_back_becomes_null_in_the_extract() -> None:
    deep = "[" * 300 + "1" + "]" * 300  # orjson reads 1024 levels, writes 254
    decoded = decode(f'{{"ts": {deep}, "values": {{"pm25": {deep}}}}}')
    assert reasons(decoded) == ["non_numeric_value"]
    assert orjson.loads(decoded.rejections[0].payload) == {"ts": None, "values": {"pm25": None}}
