"""Parsing inbound CloudEvents: both Kafka modes, every schema, every dead-letter reason.

Every event type is checked with its schema's own example (valid) and with mutations that
must fail (a missing required field, an unknown field, a broken time, times out of order, a
subject that disagrees with the data). Hostile input (random bytes and headers, deep
nesting, huge numbers) must give a dead letter, never an exception. The de-duplication
memory is checked on its own: copies in either mode, the window, the memory bound.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.ingest.catalog import Catalog
from connectors.ingest.dedup import SeenSet, digest
from connectors.ingest.parse import Limits, origin_of, parse_record
from schemas.deadletter import REASONS, DeadLetter
from schemas.events import EVENT_TYPES, Event, EventFormatError, event_types, load_schema

RECEIVED = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)  # after every schema example's times
ORIGIN = origin_of("ioc.inbound", 2, 41)
SOURCE = "/vn/longxuyen/test"
STRUCTURED = [("content-type", b"application/cloudevents+json")]
CATALOG = Catalog()

Headers = list[tuple[str, bytes | None]]
Record = tuple[bytes | None, Sequence[tuple[str, bytes | None]] | None]


def example(type_: str) -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(load_schema(f"{type_}.json")["examples"][0])
    return data


def cloudevent(type_: str, data: Any = None, **attrs: Any) -> dict[str, Any]:
    info = event_types()[type_]
    data = example(type_) if data is None else data
    event = {
        "specversion": "1.0",
        "id": f"evt-{type_}",
        "source": SOURCE,
        "type": type_,
        "subject": data.get(info.subject_field) if isinstance(data, dict) else "x",
        "time": data.get(info.time_field) if isinstance(data, dict) else None,
        "datacontenttype": "application/json",
        "data": data,
    }
    event.update(attrs)
    return {k: v for k, v in event.items() if v is not None}


def structured(event: dict[str, Any], header: bool = True) -> tuple[bytes, Headers]:
    return orjson.dumps(event), list(STRUCTURED) if header else []


def binary(event: dict[str, Any]) -> tuple[bytes, Headers]:
    """CloudEvents Kafka binding, binary mode: attributes as ce_ headers, body = data."""
    headers: Headers = [
        (f"ce_{k}", str(v).encode())
        for k, v in event.items()
        if k not in ("data", "datacontenttype")
    ]
    if "datacontenttype" in event:
        headers.append(("content-type", event["datacontenttype"].encode()))
    return orjson.dumps(event["data"]), headers


def parse(record: Record, limits: Limits | None = None) -> Event | DeadLetter:
    value, headers = record
    return parse_record(
        value, headers, origin=ORIGIN, received_at=RECEIVED, catalog=CATALOG, limits=limits
    )


def accepted(record: Record) -> Event:
    result = parse(record)
    assert isinstance(result, Event), result
    return result


def rejected(record: Record, reason: str, *words: str) -> DeadLetter:
    result = parse(record)
    assert isinstance(result, DeadLetter), result
    assert result.reason == reason, result.detail
    for word in words:
        assert word in result.detail, result.detail
    assert result.payload == (record[0] or b"")
    assert result.source == ORIGIN
    return result


# -- valid events in both modes --------------------------------------------------------------
@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_structured_event_of_every_type(type_: str) -> None:
    info = event_types()[type_]
    data = example(type_)
    event = accepted(structured(cloudevent(type_)))
    assert event.type == type_
    assert event.id == f"evt-{type_}"
    assert event.source == SOURCE
    assert event.subject == data[info.subject_field]
    assert event.key == data[info.subject_field].encode()
    assert event.time == datetime.fromisoformat(data[info.time_field])
    assert event.data == data  # the examples are already canonical (UTC, ms, Z)
    assert event.dataschema == f"urn:iocstream:schema:{type_}"
    assert event.origin == "kafka:ioc.inbound/2/41"
    assert event.received_at == RECEIVED


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_binary_mode_gives_the_same_event_as_structured_mode(type_: str) -> None:
    event = cloudevent(type_)
    assert accepted(binary(event)) == accepted(structured(event))


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_structured_mode_is_recognised_without_content_type(type_: str) -> None:
    event = cloudevent(type_)
    assert accepted(structured(event, header=False)) == accepted(structured(event))


def test_header_names_and_content_type_parameters_are_lenient() -> None:
    event = cloudevent(EVENT_TYPES[0])
    value, headers = binary(event)
    shouted = [(k.upper(), v) for k, v in headers]
    assert accepted((value, shouted)) == accepted((value, headers))
    charset = [("Content-Type", b"application/cloudevents+json; charset=utf-8")]
    assert accepted((orjson.dumps(event), charset)).subject == event["subject"]


def test_times_become_utc_with_milliseconds_and_z() -> None:
    data = example("vn.longxuyen.application.resolved")
    data["submitted_at"] = "2026-11-28T09:05:11.123456789+07:00"
    data["due_at"] = "2026-12-01t17:00:00z"
    data["resolved_at"] = "2026-11-28T14:31:40+07:00"
    resolved = cloudevent(
        "vn.longxuyen.application.resolved", data, time="2026-11-28T14:31:40.5+07:00"
    )
    event = accepted(structured(resolved))
    assert event.data["submitted_at"] == "2026-11-28T02:05:11.123Z"
    assert event.data["due_at"] == "2026-12-01T17:00:00.000Z"
    assert event.data["resolved_at"] == "2026-11-28T07:31:40.000Z"
    assert event.time == datetime(2026, 11, 28, 7, 31, 40, 500_000, tzinfo=UTC)
    assert orjson.loads(event.encode())["time"] == "2026-11-28T07:31:40.500Z"


def test_subject_and_time_default_to_the_data() -> None:
    type_ = "vn.longxuyen.feedback.responded"
    event = cloudevent(type_)
    del event["subject"], event["time"]
    parsed = accepted(structured(event))
    assert parsed.subject == "PA-LX-2026-018233"
    assert parsed.time == datetime(2026, 11, 28, 16, 45, tzinfo=UTC)


def test_extensions_are_kept_and_ingest_attributes_cannot_be_spoofed() -> None:
    event = cloudevent(
        EVENT_TYPES[0], traceparent="00-abc-01", priority=3, urgent=True, iocorigin="forged"
    )
    parsed = accepted(structured(event))
    assert parsed.extensions["traceparent"] == "00-abc-01"
    wire = orjson.loads(parsed.encode())
    assert (wire["priority"], wire["urgent"]) == (3, True)
    assert wire["iocorigin"] == "kafka:ioc.inbound/2/41"
    assert wire["iocreceivedat"] == "2026-12-05T03:00:00.000Z"
    assert Event.decode(parsed.encode()) == parsed


def test_data_base64_holding_json_is_accepted() -> None:
    event = cloudevent(EVENT_TYPES[2])
    data = event.pop("data")
    event["data_base64"] = base64.b64encode(orjson.dumps(data)).decode()
    assert accepted(structured(event)).data == data


def test_event_wire_format_round_trips_and_rejects_malformed_values() -> None:
    parsed = accepted(structured(cloudevent("vn.longxuyen.feedback.closed")))
    assert Event.decode(parsed.encode()) == parsed
    assert parsed.data_time("due_at") == datetime(2026, 11, 29, 9, 12, tzinfo=UTC)
    assert (parsed.agency, parsed.district, parsed.ward) == (
        "phong-quan-ly-do-thi",
        "long-xuyen",
        "my-xuyen",
    )
    good = orjson.loads(parsed.encode())
    for broken in (
        b"not json",
        b"[1]",
        orjson.dumps({**good, "specversion": "0.3"}),
        orjson.dumps({k: v for k, v in good.items() if k != "subject"}),
        orjson.dumps({**good, "time": "yesterday"}),
        orjson.dumps({**good, "data": "text"}),
    ):
        with pytest.raises(EventFormatError):
            Event.decode(broken)


# -- invalid data: every schema --------------------------------------------------------------
def _required(type_: str) -> list[str]:
    required: list[str] = load_schema(f"{type_}.json")["required"]
    return required


@pytest.mark.parametrize(("type_", "field"), [(t, f) for t in EVENT_TYPES for f in _required(t)])
def test_missing_required_field_is_a_schema_violation(type_: str, field: str) -> None:
    data = example(type_)
    del data[field]
    rejected(structured(cloudevent(type_, data)), "schema_violation", field)


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_unknown_field_is_a_schema_violation(type_: str) -> None:
    data = {**example(type_), "dueAt": "2026-12-01T00:00:00Z"}
    rejected(structured(cloudevent(type_, data)), "schema_violation", "dueAt")


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_time_that_is_not_rfc3339_is_a_schema_violation(type_: str) -> None:
    info = event_types()[type_]
    data = {**example(type_), info.time_field: "28/11/2026 09:00"}
    event = cloudevent(type_, data, time="2026-11-28T09:00:00Z")
    rejected(binary(event), "schema_violation", f"data/{info.time_field}")
    rejected(binary({**event, "time": "28/11/2026 09:00"}), "invalid_event", "time")


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_slug_with_trailing_newline_is_a_schema_violation(type_: str) -> None:
    data = {**example(type_), "district": "long-xuyen\n"}
    rejected(structured(cloudevent(type_, data)), "schema_violation", "data/district")


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_subject_differing_from_the_data_is_a_schema_violation(type_: str) -> None:
    rejected(
        structured(cloudevent(type_, subject="someone-else")), "schema_violation", "someone-else"
    )


@pytest.mark.parametrize(
    ("type_", "earlier", "later"),
    [(t, a, b) for t, info in event_types().items() for a, b in info.order],
)
def test_times_out_of_order_are_a_schema_violation(type_: str, earlier: str, later: str) -> None:
    data = example(type_)
    data[later] = (datetime.fromisoformat(data[earlier]) - timedelta(minutes=1)).isoformat()
    rejected(structured(cloudevent(type_, data)), "schema_violation", later, earlier)


@pytest.mark.parametrize(
    ("type_", "field", "value"),
    [
        ("vn.longxuyen.document.received", "direction", "sideways"),
        ("vn.longxuyen.document.processed", "outcome", "lost"),
        ("vn.longxuyen.application.submitted", "service_level", "level_4"),
        ("vn.longxuyen.application.resolved", "outcome", "maybe"),
        ("vn.longxuyen.feedback.created", "location", {"lat": 95, "lon": 105}),
        ("vn.longxuyen.feedback.assigned", "category", "noise"),
        ("vn.longxuyen.feedback.responded", "agency", "Phòng Quản lý đô thị"),
        ("vn.longxuyen.feedback.closed", "satisfaction", 6),
        ("vn.longxuyen.feedback.closed", "satisfaction", 4.5),
        ("vn.longxuyen.application.submitted", "application_id", ""),
        ("vn.longxuyen.application.submitted", "procedure_name", "x" * 1001),
    ],
)
def test_out_of_domain_values_are_schema_violations(type_: str, field: str, value: Any) -> None:
    event = cloudevent(type_, {**example(type_), field: value})
    if field == event_types()[type_].subject_field:
        del event["subject"]  # else the empty subject is an envelope error
    rejected(structured(event), "schema_violation", field)


def test_directive_without_due_date_is_a_schema_violation() -> None:
    data = example("vn.longxuyen.document.received")
    del data["due_at"]
    rejected(structured(cloudevent("vn.longxuyen.document.received", data)), "schema_violation")
    data["category"] = "report"
    accepted(structured(cloudevent("vn.longxuyen.document.received", data)))


def test_closed_feedback_without_response_is_valid() -> None:
    data = example("vn.longxuyen.feedback.closed")
    del data["responded_at"], data["satisfaction"]
    data["resolution"] = "duplicate"
    accepted(structured(cloudevent("vn.longxuyen.feedback.closed", data)))


# -- every other reason ----------------------------------------------------------------------
T = "vn.longxuyen.application.submitted"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"specversion": "0.3"}, ("specversion",)),
        ({"specversion": 1.0}, ("specversion",)),
        ({"id": ""}, ("id",)),
        ({"source": "has space"}, ("source",)),
        ({"type": 7}, ("type",)),
        ({"Bad_Name": "x"}, ("Bad_Name",)),
        ({"ext": {"nested": 1}}, ("ext",)),
        ({"big": 2**40}, ("big",)),
        ({"data_base64": "e30="}, ()),
    ],
)
def test_invalid_envelope_is_an_invalid_event(change: dict[str, Any], words: tuple[str]) -> None:
    rejected(structured({**cloudevent(T), **change}), "invalid_event", *words)


@pytest.mark.parametrize("missing", ["specversion", "id", "source", "type"])
def test_missing_required_attribute_is_an_invalid_event(missing: str) -> None:
    event = cloudevent(T)
    del event[missing]
    rejected(structured(event), "invalid_event", missing)
    if missing != "specversion":
        rejected(binary(event), "invalid_event", missing)


def test_not_a_cloudevent() -> None:
    rejected((b'{"hello": "world"}', []), "invalid_event", "not a CloudEvent")
    rejected((b"[1, 2]", STRUCTURED), "invalid_event", "object")
    rejected((b"hello", []), "malformed_json")
    rejected((None, None), "malformed_json")
    rejected((b"{", STRUCTURED), "malformed_json")


def test_unknown_type() -> None:
    dead = rejected(
        structured(cloudevent(T, type="vn.longxuyen.parking.paid")), "unknown_event_type"
    )
    assert "vn.longxuyen.parking.paid" in dead.detail
    assert dead.source_id == SOURCE


def test_unsupported_content_types() -> None:
    batch = [("content-type", b"application/cloudevents-batch+json")]
    rejected((orjson.dumps([cloudevent(T)]), batch), "unsupported_content_type", "batch")
    avro = [("content-type", b"application/cloudevents+avro")]
    rejected((b"\x00\x01", avro), "unsupported_content_type")
    _, headers = binary(cloudevent(T))
    xml = [(k, v) for k, v in headers if k != "content-type"] + [("content-type", b"text/xml")]
    rejected((b"<doc/>", xml), "unsupported_content_type", "text/xml")
    rejected(
        structured(cloudevent(T, datacontenttype="application/xml")), "unsupported_content_type"
    )


def test_binary_mode_problems() -> None:
    value, headers = binary(cloudevent(T))
    rejected((b"", headers), "schema_violation", "no data")
    rejected((b"{not json", headers), "malformed_json", "data")
    rejected((value, [*headers, ("ce_id", b"again")]), "invalid_event", "ce_id")
    rejected((value, [*headers, ("ce_comment", b"\xff\xfe")]), "invalid_event", "UTF-8")
    rejected((value, [*headers, ("ce_data", b"{}")]), "invalid_event", "ce_data")
    dead = rejected((b"[]", headers), "schema_violation")
    assert dead.detail.startswith("binary mode: ")
    assert dead.source_id == SOURCE


def test_impossible_times_are_bad_timestamps() -> None:
    data = {**example(T), "submitted_at": "2026-02-30T10:00:00Z"}
    rejected(structured(cloudevent(T, data, time=None)), "bad_timestamp", "submitted_at")
    rejected(structured(cloudevent(T, time="2026-11-28T25:00:00Z")), "bad_timestamp", "time")


def test_event_time_bounds() -> None:
    limits = Limits(max_future=timedelta(minutes=5), max_past=timedelta(days=31))
    soon = RECEIVED + timedelta(minutes=4)
    late = RECEIVED + timedelta(minutes=6)
    for when, reason in ((soon, None), (late, "timestamp_in_future")):
        record = structured(cloudevent(T, time=when.isoformat()))
        result = parse(record, limits)
        assert getattr(result, "reason", None) == reason
    old = structured(cloudevent(T, time=(RECEIVED - timedelta(days=32)).isoformat()))
    rejected(old, "timestamp_too_old")


def test_size_limits() -> None:
    limits = Limits(max_bytes=2_000)
    record = structured(cloudevent(T, note="x" * 1_000))
    assert isinstance(parse(record, limits), Event)
    big = structured(cloudevent(T, note="x" * 2_000))
    assert getattr(parse(big, limits), "reason", None) == "payload_too_large"
    value, headers = binary(cloudevent(T, note="x" * 1_000))
    fat_headers = [*headers, ("trace", b"y" * 1_500)]
    assert getattr(parse((value, fat_headers), limits), "reason", None) == "payload_too_large"
    many = [*headers, *((f"x-{i}", b"") for i in range(8))]
    assert getattr(parse((value, many), Limits(max_headers=8)), "reason", None) == "invalid_event"


@pytest.mark.parametrize(
    "value",
    [
        b"[" * 100_000,
        b'{"specversion": "1.0", "n": NaN}',
        b'{"specversion": "1.0", "id": "\\ud800"}',
        b'{"specversion": "1.0", "id": "\xff"}',
    ],
)
def test_hostile_json_is_malformed(value: bytes) -> None:
    rejected((value, STRUCTURED), "malformed_json")


def test_wide_data_is_rejected_by_the_schema() -> None:
    data = {**example(T), **{f"k{i}": i for i in range(10_000)}}
    rejected(structured(cloudevent(T, data)), "schema_violation")


def test_an_internal_error_becomes_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(CATALOG, "data_error", boom)
    dead = rejected(structured(cloudevent(T)), "invalid_event", "internal error", "bug")
    assert dead.payload == orjson.dumps(cloudevent(T))


header_names = st.sampled_from(
    ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type", "x"]
)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(st.none(), st.binary(max_size=300)),
    headers=st.lists(
        st.tuples(header_names, st.one_of(st.none(), st.binary(max_size=40))), max_size=8
    ),
)
def test_arbitrary_bytes_and_headers_never_raise(value: bytes | None, headers: Headers) -> None:
    result = parse((value, headers))
    assert isinstance(result, DeadLetter | Event)
    if isinstance(result, DeadLetter):
        assert result.reason in REASONS
        assert result.payload == (value or b"")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    type_=st.sampled_from(EVENT_TYPES),
    key=st.sampled_from(["id", "source", "type", "subject", "time", "data", "extra"]),
    replacement=json_values,
    binary_mode=st.booleans(),
)
def test_mutated_events_never_raise(
    type_: str, key: str, replacement: Any, binary_mode: bool
) -> None:
    event = {**cloudevent(type_), key: replacement}
    record = binary(event) if binary_mode else structured(event)
    result = parse(record)
    if isinstance(result, DeadLetter):
        assert result.reason in REASONS


# -- duplicates ------------------------------------------------------------------------------
def test_a_copy_in_either_mode_is_a_duplicate() -> None:
    seen = SeenSet(window_s=3600, max_keys=100)
    event = cloudevent(T)
    copies = [structured(event), binary(event), structured(event, header=False)]
    other_source = structured({**event, "source": "/another/system"})
    verdicts = []
    for record in [*copies, other_source]:
        parsed = accepted(record)
        verdicts.append(seen.add(parsed.source, parsed.id, at=1_000.0))
    assert verdicts == [True, False, False, True]
    assert (SOURCE, event["id"]) in seen
    assert len(seen) == 2


def test_pairs_that_concatenate_alike_are_different_keys() -> None:
    assert digest("a\x00b", "c") != digest("a", "b\x00c")
    assert digest("ab", "c") != digest("a", "bc")


def test_keys_are_remembered_for_the_window_then_forgotten() -> None:
    seen = SeenSet(window_s=24 * 3600, max_keys=100, slots=24)
    assert seen.add("s", "1", at=10 * 3600.0 + 5)
    assert seen.expire(now=34 * 3600.0) == 0  # exactly one window later: still held
    assert not seen.add("s", "1", at=34 * 3600.0)
    assert seen.expire(now=35 * 3600.0 + 1) == 1  # its whole hour-bucket is past the window
    assert ("s", "1") not in seen
    assert seen.add("s", "1", at=35 * 3600.0 + 2)


def test_memory_bound_forgets_the_oldest_first() -> None:
    seen = SeenSet(window_s=3600, max_keys=3, slots=4)
    for i, at in enumerate([2_000.0, 100.0, 1_000.0, 3_000.0]):
        seen.add("s", str(i), at)
    assert len(seen) == 3
    assert seen.evicted == 1
    assert ("s", "1") not in seen  # the oldest time, though not the first added
    assert all(("s", k) in seen for k in ("0", "2", "3"))


def test_seen_set_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="window"):
        SeenSet(window_s=0, max_keys=1)
    with pytest.raises(ValueError, match="max_keys"):
        SeenSet(window_s=1, max_keys=0)
    with pytest.raises(ValueError, match="negative"):
        Limits(max_future=timedelta(minutes=-1))
