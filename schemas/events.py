"""Canonical city-system events and their wire format on ``ioc.events``.

E-document, public-service and citizen-feedback systems publish CloudEvents 1.0; ``iocstream
ingest`` validates them against the JSON Schemas in ``schemas/json/`` and publishes each one
as a canonical :class:`Event`, keyed by its subject. A message value on ``ioc.events`` is one
CloudEvent in structured JSON form (Kafka header ``content-type:
application/cloudevents+json``)::

    {"specversion": "1.0", "id": "c0ffee-42", "source": "/vn/longxuyen/public-services",
     "type": "vn.longxuyen.application.resolved", "subject": "HS-LX-261128-0042",
     "time": "2026-11-28T07:31:40.000Z", "datacontenttype": "application/json",
     "dataschema": "urn:iocstream:schema:vn.longxuyen.application.resolved",
     "iocreceivedat": "2026-11-28T07:31:40.412Z", "iocorigin": "kafka:ioc.inbound/3/1812",
     "data": {"application_id": "HS-LX-261128-0042", "agency": "ubnd-my-binh", ...,
              "due_at": "2026-12-01T10:00:00.000Z", "resolved_at": "2026-11-28T07:31:40.000Z"}}

Guarantees of an event on ``ioc.events``:

* ``data`` satisfies the JSON Schema of ``type`` (named by ``dataschema``), including the time
  order the schema's ``x-iocstream.order`` asks for (e.g. ``submitted_at <= resolved_at``).
* ``subject`` is always present and equals the data's id field (``document_id``,
  ``application_id`` or ``ticket_id``); it is the Kafka key, so every event of one document,
  application or ticket is on one partition, in the order ingest read them.
* ``time`` is always present: the sender's ``time`` attribute, or else the data's occurrence
  time (``x-iocstream.time``, e.g. ``resolved_at``).
* Every time, in the envelope and in ``data``, is UTC with millisecond precision and a ``Z``
  suffix (as in ``schemas.readings``).
* ``iocreceivedat`` (when ingest read it) and ``iocorigin`` (topic/partition/offset it was
  read from) are set by ingest; senders' values for them are replaced. Other extension
  attributes are kept as sent.
* (``source``, ``id``) is unique on the topic within ingest's de-duplication window (see
  ``connectors.ingest.dedup``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Final

import orjson

from schemas.readings import format_time, parse_time

SPECVERSION: Final = "1.0"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
JSON_CONTENT_TYPE: Final = "application/json"
RECEIVED_AT_ATTR: Final = "iocreceivedat"
ORIGIN_ATTR: Final = "iocorigin"

DOCUMENT_RECEIVED: Final = "vn.longxuyen.document.received"
DOCUMENT_PROCESSED: Final = "vn.longxuyen.document.processed"
APPLICATION_SUBMITTED: Final = "vn.longxuyen.application.submitted"
APPLICATION_RESOLVED: Final = "vn.longxuyen.application.resolved"
FEEDBACK_CREATED: Final = "vn.longxuyen.feedback.created"
FEEDBACK_ASSIGNED: Final = "vn.longxuyen.feedback.assigned"
FEEDBACK_RESPONDED: Final = "vn.longxuyen.feedback.responded"
FEEDBACK_CLOSED: Final = "vn.longxuyen.feedback.closed"

EVENT_TYPES: Final = (
    DOCUMENT_RECEIVED,
    DOCUMENT_PROCESSED,
    APPLICATION_SUBMITTED,
    APPLICATION_RESOLVED,
    FEEDBACK_CREATED,
    FEEDBACK_ASSIGNED,
    FEEDBACK_RESPONDED,
    FEEDBACK_CLOSED,
)
"""Every event type ingest accepts; each has ``schemas/json/<type>.json``."""

ENVELOPE_SCHEMA: Final = "cloudevent.json"
COMMON_SCHEMA: Final = "common.json"
_TIMESTAMP_REF: Final = "urn:iocstream:schema:common#/$defs/timestamp"
_CONTEXT: Final = ("specversion", "id", "source", "type", "subject", "time")
_RESERVED: Final = frozenset(
    (
        *_CONTEXT,
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
        RECEIVED_AT_ATTR,
        ORIGIN_ATTR,
    )
)


class EventFormatError(ValueError):
    """A message on ``ioc.events`` does not follow the canonical wire format."""


def load_schema(name: str) -> dict[str, Any]:
    """One JSON Schema file of ``schemas/json`` (e.g. ``cloudevent.json``), parsed."""
    text = resources.files("schemas").joinpath("json").joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class EventTypeInfo:
    """What the platform needs to know about one event type, read from its schema file."""

    type: str
    dataschema: str
    subject_field: str
    time_field: str
    time_fields: tuple[str, ...]
    order: tuple[tuple[str, str], ...]


@cache
def event_types() -> dict[str, EventTypeInfo]:
    """Every type of :data:`EVENT_TYPES` with its schema's ``x-iocstream`` facts."""
    out: dict[str, EventTypeInfo] = {}
    for type_ in EVENT_TYPES:
        schema = load_schema(f"{type_}.json")
        meta = schema["x-iocstream"]
        props: dict[str, Any] = schema["properties"]
        out[type_] = EventTypeInfo(
            type=type_,
            dataschema=schema["$id"],
            subject_field=meta["subject"],
            time_field=meta["time"],
            time_fields=tuple(k for k, v in props.items() if v.get("$ref") == _TIMESTAMP_REF),
            order=tuple((a, b) for a, b in meta["order"]),
        )
    return out


@dataclass(frozen=True, slots=True)
class Event:
    """One validated city-system event (a CloudEvent with JSON ``data``).

    ``data`` and ``extensions`` are read-only by convention: they are plain dicts so that
    encoding stays fast; do not mutate them.
    """

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: dict[str, Any] = field(hash=False)
    received_at: datetime
    origin: str = ""
    dataschema: str = ""
    extensions: dict[str, str | int | bool] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.received_at.tzinfo is None:
            raise ValueError("Event times must be timezone-aware")
        if not (self.id and self.source and self.type and self.subject):
            raise ValueError("Event id, source, type and subject must be non-empty")

    @property
    def key(self) -> bytes:
        """The Kafka key on ``ioc.events``: the subject, UTF-8."""
        return self.subject.encode()

    @property
    def dedup_key(self) -> tuple[str, str]:
        """(source, id): unique per event by the CloudEvents specification."""
        return (self.source, self.id)

    def data_time(self, name: str) -> datetime | None:
        """A time field of ``data`` (e.g. ``due_at``) as aware UTC, or None if absent."""
        value = self.data.get(name)
        return parse_time(value) if isinstance(value, str) else None

    @property
    def agency(self) -> str:
        return str(self.data.get("agency", ""))

    @property
    def district(self) -> str:
        return str(self.data.get("district", ""))

    @property
    def ward(self) -> str:
        return str(self.data.get("ward", ""))

    def to_dict(self) -> dict[str, Any]:
        """The event as its structured-mode CloudEvents JSON object."""
        out: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": format_time(self.time),
            "datacontenttype": JSON_CONTENT_TYPE,
        }
        if self.dataschema:
            out["dataschema"] = self.dataschema
        for name, value in self.extensions.items():
            if name not in _RESERVED:
                out[name] = value
        out[RECEIVED_AT_ATTR] = format_time(self.received_at)
        if self.origin:
            out[ORIGIN_ATTR] = self.origin
        out["data"] = self.data
        return out

    def encode(self) -> bytes:
        """The ``ioc.events`` message value."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any) -> Event:
        """Build an event from its wire object; raises ``EventFormatError`` if malformed.

        Checks the envelope (attributes, types, times); it does not re-run the JSON Schema
        of ``data``, which ingest already did.
        """
        if not isinstance(obj, dict):
            raise EventFormatError("an event must be a JSON object")
        if obj.get("specversion") != SPECVERSION:
            raise EventFormatError(f"specversion must be {SPECVERSION!r}")
        attrs: dict[str, str] = {}
        for name in ("id", "source", "type", "subject", "time", RECEIVED_AT_ATTR):
            value = obj.get(name)
            if not isinstance(value, str) or not value:
                raise EventFormatError(f"attribute {name!r} must be a non-empty string")
            attrs[name] = value
        data = obj.get("data")
        if not isinstance(data, dict):
            raise EventFormatError("data must be a JSON object")
        extensions = {
            k: v for k, v in obj.items() if k not in _RESERVED and isinstance(v, str | int | bool)
        }
        try:
            return cls(
                id=attrs["id"],
                source=attrs["source"],
                type=attrs["type"],
                subject=attrs["subject"],
                time=parse_time(attrs["time"]),
                data=data,
                received_at=parse_time(attrs[RECEIVED_AT_ATTR]),
                origin=str(obj.get(ORIGIN_ATTR, "")),
                dataschema=str(obj.get("dataschema", "")),
                extensions=extensions,
            )
        except ValueError as exc:
            raise EventFormatError(f"invalid event: {exc}") from exc

    @classmethod
    def decode(cls, value: bytes) -> Event:
        """Parse an ``ioc.events`` message value; raises ``EventFormatError`` if malformed."""
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise EventFormatError(f"not JSON: {exc}") from exc
        return cls.from_dict(obj)
