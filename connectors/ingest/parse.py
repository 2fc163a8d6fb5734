"""One inbound Kafka record -> a canonical :class:`~schemas.events.Event` or a dead letter.

Pure: no I/O, no clock (``received_at`` is passed in). :func:`parse_record` never raises;
whatever the bytes and headers, it returns an ``Event`` or a ``DeadLetter`` that keeps the
record's value untouched.

Modes (CloudEvents Kafka protocol binding 1.0):

* structured: header ``content-type: application/cloudevents+json`` (parameters such as
  ``; charset=utf-8`` allowed), or, without that header and without ``ce_specversion``, a
  JSON object body that has ``specversion``. The body is the whole event; ``data`` holds
  JSON, or ``data_base64`` holds base64 of JSON.
* binary: a ``ce_specversion`` header. Attributes come from ``ce_<name>`` headers (UTF-8),
  ``datacontenttype`` from the ``content-type`` header, and the body is ``data``.

Header names are matched case-insensitively; a CloudEvents header given twice is rejected
(it would be ambiguous). ``data`` must be JSON (``application/json``, ``text/json`` or any
``+json`` media type, or no content type at all).

Dead-letter reasons (``DeadLetter.reason``):

* ``payload_too_large``: the value, or the headers together, exceed ``Limits.max_bytes``.
* ``malformed_json``: the body (structured), the data (binary) or ``data_base64`` is not
  JSON (invalid UTF-8, NaN, nesting deeper than 1024 and 128-bit integers included).
* ``invalid_event``: not a CloudEvent, or its attributes break ``schemas/json/cloudevent.json``
  (``specversion`` other than ``1.0``, missing ``id``/``source``/``type``, bad extension
  names or values), headers not UTF-8, repeated or too many.
* ``unsupported_content_type``: batch or non-JSON structured format, non-JSON data.
* ``unknown_event_type``: ``type`` has no schema in ``schemas/json``.
* ``schema_violation``: ``data`` breaks its type's schema, times out of the schema's order
  (e.g. resolved before submitted), ``subject`` differing from the data's id, no data.
* ``bad_timestamp``: a time that looks like RFC 3339 but is no real instant (30 February).
* ``timestamp_in_future`` / ``timestamp_too_old``: the event time is more than
  ``Limits.max_future`` after, or ``Limits.max_past`` before, ``received_at``.

The dead letter's ``source`` is the record's origin (``kafka:<topic>/<partition>/<offset>``)
and ``source_id`` the event's ``source`` attribute when it could be read (else empty).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import orjson

from connectors.ingest.catalog import Catalog
from schemas.deadletter import DeadLetter, Reason
from schemas.events import (
    JSON_CONTENT_TYPE,
    ORIGIN_ATTR,
    RECEIVED_AT_ATTR,
    Event,
    EventTypeInfo,
)
from schemas.readings import format_time, parse_time

log = logging.getLogger(__name__)

Mode = Literal["structured", "binary"]
Headers = Sequence[tuple[str, bytes | None]]

CE_PREFIX: Final = "ce_"
CONTENT_TYPE: Final = "content-type"
_NOT_EXTENSIONS: Final = frozenset(
    (
        *("specversion", "id", "source", "type", "subject", "time", "datacontenttype"),
        *("dataschema", RECEIVED_AT_ATTR, ORIGIN_ATTR),  # the last two are set by ingest
    )
)


@dataclass(frozen=True, slots=True)
class Limits:
    """What ingest accepts. ``ValueError`` on construction if nonsensical."""

    max_bytes: int = 128 * 1024
    max_headers: int = 64
    max_future: timedelta = timedelta(minutes=5)
    max_past: timedelta = timedelta(days=31)

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_headers < 1:
            raise ValueError("max_bytes and max_headers must be >= 1")
        if self.max_future < timedelta(0) or self.max_past < timedelta(0):
            raise ValueError("max_future and max_past must not be negative")


def origin_of(topic: str, partition: int, offset: int) -> str:
    """Where a record was read: ``kafka:<topic>/<partition>/<offset>``."""
    return f"kafka:{topic}/{partition}/{offset}"


class _Reject(Exception):
    """Control flow inside this module: the record becomes a dead letter."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail


@dataclass(slots=True)
class _Context:
    source_id: str = ""
    mode: Mode = "structured"


def parse_record(
    value: bytes | None,
    headers: Headers | None,
    *,
    origin: str,
    received_at: datetime,
    catalog: Catalog,
    limits: Limits | None = None,
) -> Event | DeadLetter:
    """Parse one inbound record (see the module docstring); never raises."""
    ctx = _Context()
    payload = value or b""
    try:
        return _parse(payload, headers or (), origin, received_at, catalog, limits or Limits(), ctx)
    except _Reject as rejected:
        reason, detail = rejected.reason, rejected.detail
    except Exception as exc:  # a bug here must not stop ingest; the input is kept
        log.exception("unexpected error parsing %s", origin)
        reason, detail = "invalid_event", f"internal error while parsing: {exc!r}"
    return DeadLetter(
        reason=reason,
        detail=f"{ctx.mode} mode: {detail}",
        source=origin,
        source_id=ctx.source_id,
        received_at=received_at,
        payload=payload,
    )


def _parse(
    payload: bytes,
    headers: Headers,
    origin: str,
    received_at: datetime,
    catalog: Catalog,
    limits: Limits,
    ctx: _Context,
) -> Event:
    if len(payload) > limits.max_bytes:
        raise _Reject("payload_too_large", f"{len(payload)} bytes > {limits.max_bytes}")
    ce = _read_headers(headers, limits)
    content_type = ce.pop(CONTENT_TYPE, None)
    if content_type is not None and _media_type(content_type).startswith("application/cloudevents"):
        if _media_type(content_type) != "application/cloudevents+json":
            raise _Reject(
                "unsupported_content_type",
                f"{content_type!r}: only application/cloudevents+json (single events)",
            )
        attrs, data = _structured(_load_json(payload, "the body"), ctx)
    elif "ce_specversion" in ce:
        ctx.mode = "binary"
        attrs, data = _binary(ce, content_type, payload, ctx)
    else:
        body = _load_json(payload, "the body")
        if not (isinstance(body, dict) and "specversion" in body):
            raise _Reject(
                "invalid_event",
                "not a CloudEvent: no 'content-type: application/cloudevents+json' header, "
                "no ce_specversion header and no specversion in a JSON object body",
            )
        attrs, data = _structured(body, ctx)
    return _build(attrs, data, origin, received_at, catalog, limits)


def _read_headers(headers: Headers, limits: Limits) -> dict[str, str]:
    """CloudEvents and content-type headers, lower-cased names, UTF-8 decoded."""
    if len(headers) > limits.max_headers:
        raise _Reject("invalid_event", f"{len(headers)} headers > {limits.max_headers}")
    size = sum(len(v or b"") + len(k) for k, v in headers)
    if size > limits.max_bytes:
        raise _Reject("payload_too_large", f"headers take {size} bytes > {limits.max_bytes}")
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = str(raw_name).lower()
        if not (name.startswith(CE_PREFIX) or name == CONTENT_TYPE):
            continue
        if name in out:
            raise _Reject("invalid_event", f"header {name!r} appears more than once")
        try:
            out[name] = (raw_value or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise _Reject("invalid_event", f"header {name!r} is not UTF-8") from None
    return out


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    media = _media_type(content_type)
    return media in (JSON_CONTENT_TYPE, "text/json") or media.endswith("+json")


def _load_json(raw: bytes, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Reject("malformed_json", f"{what} is not JSON: {exc}") from None


def _structured(body: Any, ctx: _Context) -> tuple[dict[str, Any], Any]:
    if not isinstance(body, dict):
        raise _Reject(
            "invalid_event", f"a structured event must be a JSON object, not {_kind(body)}"
        )
    if isinstance(body.get("source"), str):
        ctx.source_id = body["source"]
    attrs = {k: v for k, v in body.items() if k not in ("data", "data_base64")}
    if "data" in body and "data_base64" in body:
        raise _Reject("invalid_event", "an event cannot have both data and data_base64")
    if "data_base64" in body:
        encoded = body["data_base64"]
        if not isinstance(encoded, str):
            raise _Reject("invalid_event", "data_base64 must be a string")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _Reject("malformed_json", "data_base64 is not valid base64") from None
        return attrs, _load_json(raw, "data_base64")
    return attrs, body.get("data")


def _binary(
    ce: dict[str, str], content_type: str | None, payload: bytes, ctx: _Context
) -> tuple[dict[str, Any], Any]:
    attrs: dict[str, Any] = {k[len(CE_PREFIX) :]: v for k, v in ce.items()}
    ctx.source_id = attrs.get("source", "")
    for name in ("data", "data_base64"):
        if name in attrs:
            raise _Reject("invalid_event", f"header ce_{name} is not a CloudEvents attribute")
    if content_type is not None:
        attrs["datacontenttype"] = content_type
    if not payload:
        return attrs, None
    declared = attrs.get("datacontenttype")
    if isinstance(declared, str) and not _is_json(declared):
        raise _Reject("unsupported_content_type", f"data of type {declared!r}; JSON is required")
    return attrs, _load_json(payload, "the data")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "a scalar"


def _time(text: str, where: str) -> datetime:
    try:
        return parse_time(text.upper())
    except ValueError:
        raise _Reject("bad_timestamp", f"{where}: {text!r} is not a valid time") from None


def _build(
    attrs: dict[str, Any],
    data: Any,
    origin: str,
    received_at: datetime,
    catalog: Catalog,
    limits: Limits,
) -> Event:
    error = catalog.envelope_error(attrs)
    if error is not None:
        raise _Reject("invalid_event", f"CloudEvents attributes: {error}")
    declared = attrs.get("datacontenttype")
    if declared is not None and not _is_json(declared):
        raise _Reject("unsupported_content_type", f"data of type {declared!r}; JSON is required")
    type_ = attrs["type"]
    info = catalog.info(type_)
    if info is None:
        raise _Reject(
            "unknown_event_type", f"type {type_!r} has no schema (known: {sorted(catalog.types)})"
        )
    where = f"event {attrs['id']!r} ({type_})"
    if data is None:
        raise _Reject("schema_violation", f"{where} has no data; a JSON object is required")
    error = catalog.data_error(type_, data)
    if error is not None:
        raise _Reject("schema_violation", f"{where}: {error}")
    data, times = _normalise_times(data, info)
    for earlier, later in info.order:
        if earlier in times and later in times and times[earlier] > times[later]:
            raise _Reject(
                "schema_violation",
                f"{where}: data/{later} ({data[later]}) is before data/{earlier} ({data[earlier]})",
            )
    subject = data[info.subject_field]
    if "subject" in attrs and attrs["subject"] != subject:
        raise _Reject(
            "schema_violation",
            f"{where}: subject {attrs['subject']!r} differs from data/{info.subject_field} "
            f"{subject!r}",
        )
    time = _time(attrs["time"], "time") if "time" in attrs else times[info.time_field]
    if time > received_at + limits.max_future:
        raise _Reject(
            "timestamp_in_future",
            f"{where}: time {format_time(time)} is more than {limits.max_future} after "
            f"receipt ({format_time(received_at)})",
        )
    if time < received_at - limits.max_past:
        raise _Reject(
            "timestamp_too_old",
            f"{where}: time {format_time(time)} is more than {limits.max_past} before "
            f"receipt ({format_time(received_at)})",
        )
    return Event(
        id=attrs["id"],
        source=attrs["source"],
        type=type_,
        subject=subject,
        time=time,
        data=data,
        received_at=received_at,
        origin=origin,
        dataschema=info.dataschema,
        extensions={k: v for k, v in attrs.items() if k not in _NOT_EXTENSIONS},
    )


def _normalise_times(
    data: dict[str, Any], info: EventTypeInfo
) -> tuple[dict[str, Any], dict[str, datetime]]:
    """A copy of ``data`` with every time as UTC ``...Z``, and the parsed times."""
    times: dict[str, datetime] = {}
    out = dict(data)
    for name in info.time_fields:
        if name in data:
            times[name] = _time(data[name], f"data/{name}")
            out[name] = format_time(times[name])
    return out, times
