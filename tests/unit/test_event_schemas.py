"""The JSON Schemas of city-system events, and the simulator's events against them.

The schema files must be valid draft 2020-12 schemas whose ``x-iocstream`` facts name real,
required fields; the compiled catalog (references inlined for speed) must judge exactly as a
reference-resolving validator does; the CloudEvents specification's own example must pass
the envelope. The simulator's streams must validate in both Kafka modes, keep every case's
lifecycle in order and hold the mixes the indicators are about (early, on-time and late
applications; overdue feedback; unprocessed backlog).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from connectors.ingest.catalog import Catalog
from connectors.ingest.parse import parse_record
from connectors.simulator.climate import CITY_TZ
from connectors.simulator.events import Volumes, encode_event, generate_events
from schemas.events import (
    COMMON_SCHEMA,
    ENVELOPE_SCHEMA,
    EVENT_TYPES,
    Event,
    event_types,
    load_schema,
)

END = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # a Saturday, 17:00 in Long Xuyên
START = END - timedelta(days=7)
CATALOG = Catalog()


@pytest.fixture(scope="module")
def week() -> list[dict[str, Any]]:
    return list(generate_events(7, START, END))


def test_the_files_are_the_envelope_common_and_one_per_type() -> None:
    folder = resources.files("schemas").joinpath("json")
    names = {p.name for p in folder.iterdir() if p.name.endswith(".json")}
    assert names == {ENVELOPE_SCHEMA, COMMON_SCHEMA, *(f"{t}.json" for t in EVENT_TYPES)}


@pytest.mark.parametrize(
    "name", [ENVELOPE_SCHEMA, COMMON_SCHEMA, *(f"{t}.json" for t in EVENT_TYPES)]
)
def test_every_file_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:iocstream:schema:")
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_iocstream_facts_name_required_fields(type_: str) -> None:
    schema = load_schema(f"{type_}.json")
    info = event_types()[type_]
    assert schema["$id"] == info.dataschema == f"urn:iocstream:schema:{type_}"
    assert {info.subject_field, info.time_field, "district"} <= set(schema["required"])
    assert info.time_field in info.time_fields
    for earlier, later in info.order:
        assert {earlier, later} <= set(info.time_fields)
    assert schema["additionalProperties"] is False
    assert schema["examples"], "each schema carries a valid example"


def _reference_validators() -> tuple[Any, dict[str, Any]]:
    schemas = [load_schema(n) for n in (ENVELOPE_SCHEMA, COMMON_SCHEMA)]
    data = {t: load_schema(f"{t}.json") for t in EVENT_TYPES}
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
        for s in [*schemas, *data.values()]
    )
    envelope = Draft202012Validator(schemas[0], registry=registry)
    return envelope, {t: Draft202012Validator(s, registry=registry) for t, s in data.items()}


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_inlined_catalog_judges_like_a_resolving_validator(type_: str) -> None:
    _, reference = _reference_validators()
    good = load_schema(f"{type_}.json")["examples"][0]
    candidates: list[Any] = [good, {}, [], "x", {**good, "extra": 1}]
    for key in good:
        candidates.append({k: v for k, v in good.items() if k != key})
        candidates.append({**good, key: 12})
        candidates.append({**good, key: "NOT A SLUG!"})
        candidates.append({**good, key: "2026-11-28T09:00:00+07:00"})
    for data in candidates:
        expected = reference[type_].is_valid(data)
        assert (CATALOG.data_error(type_, data) is None) == expected, data


def test_the_cloudevents_specification_example_passes_the_envelope() -> None:
    spec_example = {  # CloudEvents 1.0 JSON format, section 3.1 example
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "id": "A234-1234-1234",
        "time": "2018-04-05T17:31:00Z",
        "comexampleextension1": "value",
        "comexampleothervalue": 5,
        "datacontenttype": "application/vnd.apache.thrift.binary",
        "data_base64": "... base64 encoded string ...",
    }
    assert CATALOG.envelope_error(spec_example) is None
    envelope, _ = _reference_validators()
    assert envelope.is_valid(spec_example)


# -- the simulator ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_every_generated_event_is_accepted(week: list[dict[str, Any]], mode: str) -> None:
    assert len(week) > 1_000
    for i, event in enumerate(week):
        value, headers = encode_event(event, mode)  # type: ignore[arg-type]
        parsed = parse_record(
            value,
            headers,
            origin=f"kafka:test/0/{i}",
            received_at=END,
            catalog=CATALOG,
        )
        assert isinstance(parsed, Event), parsed
        assert parsed.subject == event["subject"]
        assert parsed.data == event["data"]


def test_streams_are_time_ordered_unique_and_deterministic(week: list[dict[str, Any]]) -> None:
    times = [e["time"] for e in week]
    assert times == sorted(times)
    assert all(START <= datetime.fromisoformat(t) < END for t in times)
    assert len({(e["source"], e["id"]) for e in week}) == len(week)
    assert list(generate_events(7, START, END)) == week
    other = list(generate_events(8, START, END))
    assert {e["id"] for e in other}.isdisjoint({e["id"] for e in week})
    assert {e["subject"] for e in other}.isdisjoint({e["subject"] for e in week})


LIFECYCLES = {
    "application": ["submitted", "resolved"],
    "feedback": ["created", "assigned", "responded", "closed"],
    "document": ["received", "processed"],
}


def test_each_case_follows_its_lifecycle(week: list[dict[str, Any]]) -> None:
    steps: dict[str, list[str]] = defaultdict(list)
    for event in week:
        steps[event["subject"]].append(event["type"])
    for subject, types in steps.items():
        family = types[0].split(".")[2]
        names = [t.split(".")[3] for t in types]
        order = LIFECYCLES[family]
        assert names[0] == order[0], subject
        if names[-1] == "closed" and "responded" not in names:
            names.insert(2, "responded")  # a duplicate report is closed without a response
        assert names == order[: len(names)], subject


def _local_date(text: str) -> Any:
    return datetime.fromisoformat(text).astimezone(CITY_TZ).date()


def test_the_mixes_the_indicators_measure(week: list[dict[str, Any]]) -> None:
    by_type = Counter(e["type"] for e in week)
    assert set(by_type) == set(EVENT_TYPES)
    resolved = [e["data"] for e in week if e["type"].endswith("application.resolved")]
    timeliness = Counter(
        "late"
        if d["resolved_at"] > d["due_at"]
        else "early"
        if _local_date(d["resolved_at"]) < _local_date(d["due_at"])
        else "on_time"
        for d in resolved
    )
    assert timeliness["early"] > timeliness["on_time"] > timeliness["late"] > 0
    responded = [e["data"] for e in week if e["type"].endswith("feedback.responded")]
    overdue = sum(d["responded_at"] > d["due_at"] for d in responded)
    assert 0 < overdue < len(responded) / 2
    levels = {e["data"]["service_level"] for e in week if "application" in e["type"]}
    assert levels == {"direct", "online_partial", "online_full"}
    backlog = by_type["vn.longxuyen.application.submitted"] - len(resolved)
    assert backlog > 0
    ratings = [e["data"].get("satisfaction") for e in week if e["type"].endswith(".closed")]
    assert {r for r in ratings if r is not None} <= {1, 2, 3, 4, 5}
    assert None in ratings


def test_office_hours_and_weekends_shape_the_load(week: list[dict[str, Any]]) -> None:
    submitted = [
        datetime.fromisoformat(e["data"]["submitted_at"]).astimezone(CITY_TZ)
        for e in week
        if e["type"].endswith("application.submitted")
    ]
    office = sum(d.weekday() < 5 and 7 <= d.hour < 17 for d in submitted)
    weekend = sum(d.weekday() >= 5 for d in submitted)
    assert office > 0.8 * len(submitted)
    assert 0 < weekend < 0.15 * len(submitted)


def test_volumes_scale_the_stream(week: list[dict[str, Any]]) -> None:
    starts = (".submitted", ".created", ".received")

    def cases(events: list[dict[str, Any]]) -> int:
        return sum(e["type"].endswith(starts) for e in events)

    double = list(generate_events(7, START, END, Volumes().scaled(2.0)))
    assert 1.8 < cases(double) / cases(week) < 2.2
    assert 2_000 < cases(week) < 6_000  # 740 cases a working day, a fifth of that at weekends


def test_binary_encoding_carries_the_attributes_as_headers() -> None:
    event = next(generate_events(1, START, END))
    value, headers = encode_event(event, "binary")
    assert orjson.loads(value) == event["data"]
    names = dict(headers)
    assert names["ce_id"] == event["id"].encode()
    assert names["ce_specversion"] == b"1.0"
    assert names["content-type"] == b"application/json"
    value, headers = encode_event(event, "structured")
    assert orjson.loads(value) == event
    assert headers == [("content-type", b"application/cloudevents+json")]


def test_generator_rejects_bad_periods() -> None:
    with pytest.raises(ValueError, match="aware"):
        next(generate_events(1, datetime(2026, 1, 1), END))  # noqa: DTZ001 - the point
    with pytest.raises(ValueError, match="after"):
        next(generate_events(1, END, START))
