"""Turn Kafka message values into ClickHouse columns, one table per record kind (pure).

Each :class:`TableSpec` names a table, its columns and a function that appends the rows of
one message to column lists. A :class:`TopicRoute` picks the spec for each message of a
topic: ``ioc.indicators`` carries two record kinds told apart by their ``schema`` field.

Guarantees:

* The rows appended for a message depend only on the message (value, topic, partition,
  offset, timestamp): a batch rebuilt from the same messages is identical.
* A value that cannot become rows raises :class:`PoisonMessage` *before* anything is appended
  (values are converted to the column types here, times checked against ``DateTime64``'s
  range), so a batch never holds half a message and ClickHouse never sees a type error that
  would fail the whole insert.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import floordiv, itemgetter, sub
from typing import Any

import orjson

from schemas import indicator_values, indicators
from schemas.alerts import decode_event, state_to_dict
from schemas.events import Event
from schemas.readings import decode_batch_objects, parse_time

Columns = dict[str, list[Any]]
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset")
_MIN_TIME = datetime(1900, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(2299, 12, 31, tzinfo=UTC)


class PoisonMessage(ValueError):
    """A message value that cannot become rows of its table."""


def _time(text: Any) -> datetime:
    value = parse_time(str(text))
    if not _MIN_TIME <= value <= _MAX_TIME:
        raise ValueError(f"time {text!r} is outside 1900-2299")
    return value


def _opt_time(value: datetime | None) -> datetime | None:
    if value is not None and not _MIN_TIME <= value <= _MAX_TIME:
        raise ValueError(f"time {value!r} is outside 1900-2299")
    return value


@dataclass(frozen=True)
class ColumnBlock:
    """Rows of one message already held as columns (the hot path: no transposition)."""

    columns: tuple[Sequence[Any], ...]
    n: int


Rows = Sequence[tuple[Any, ...]] | ColumnBlock


@dataclass(frozen=True)
class TableSpec:
    """A table, its data columns (the Kafka columns follow) and the row builder."""

    table: str
    data_columns: tuple[str, ...]
    rows: Callable[[bytes], Rows]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.data_columns, *KAFKA_COLUMNS)

    def empty(self) -> Columns:
        return {c: [] for c in self.columns}


def append_message(
    spec: TableSpec, cols: Columns, value: bytes, topic: str, partition: int, offset: int
) -> int:
    """Append one message's rows (with their Kafka coordinates); returns the row count.

    Raises :class:`PoisonMessage` (and appends nothing) if the value is not a valid record.
    """
    try:
        rows = spec.rows(value)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # JSONDecodeError too
        raise PoisonMessage(f"not a {spec.table} record: {exc}") from exc
    if isinstance(rows, ColumnBlock):
        columns: Iterable[Sequence[Any]] = rows.columns
        n = rows.n
    else:
        columns, n = zip(*rows, strict=True), len(rows)
    for name, column in zip(spec.data_columns, columns, strict=False):
        cols[name].extend(column)
    cols["kafka_topic"].extend([topic] * n)
    cols["kafka_partition"].extend([partition] * n)
    cols["kafka_offset"].extend([offset] * n)
    return n


# -- row builders (one per record kind) ---------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_FROM_ISO = datetime.fromisoformat


def _epoch_ms(text: Any) -> int:
    """A wire time as ``DateTime64(3)`` ticks (ms since the epoch), range-checked."""
    return (_time(text) - _EPOCH) // _ONE_MS


def _column_ms(texts: Sequence[Any]) -> list[int] | None:
    """:func:`_epoch_ms` of a whole column, each step in C; None if any value needs the
    per-value path (naive or out of range). Raises TypeError/ValueError for a non-time."""
    times = list(map(_FROM_ISO, texts))
    if not (min(times) >= _MIN_TIME and max(times) <= _MAX_TIME):  # TypeError if naive
        return None
    return list(map(floordiv, map(sub, times, repeat(_EPOCH)), repeat(_ONE_MS)))


_READING_FIELDS = (
    "device_id", "device_kind", "district", "ward", "metric", "value", "unit", "event_time",
    "receive_time", "time_source", "source",
)  # fmt: skip
_ALL_FIELDS = itemgetter(*_READING_FIELDS)
_TIME_SOURCES = frozenset(("device", "receive"))
_STR_ONLY = {str}
_FLOAT_ONLY = {float}
_NUMBERS = frozenset((float, int))


def _readings(value: bytes) -> ColumnBlock:
    """Readings as columns (the hot path: built column-wise, transposed in C).

    Fast path: when every reading has every field and every text field is a ``str``, the
    columns come from one C-level transposition and are checked column by column. Otherwise
    (optional fields left out, numbers where text is expected, ...) the per-reading path
    converts field by field; both give the same columns for the same value.
    """
    objs = decode_batch_objects(value)
    try:
        block = _readings_fast(objs)
    except (KeyError, TypeError, ValueError, AttributeError):
        block = None  # the per-reading path raises the precise error, if any
    return block if block is not None else _readings_checked(objs)


def _readings_fast(objs: Sequence[Any]) -> ColumnBlock | None:
    """The columns of complete, well-typed readings, or None if any is not."""
    if not objs:
        return None
    device, kind, district, ward, metric, value, unit, event, receive, source_of, source = zip(
        *map(_ALL_FIELDS, objs), strict=True
    )
    for column in (device, kind, district, ward, metric, unit, source):
        if set(map(type, column)) != _STR_ONLY:
            return None
    if not set(source_of) <= _TIME_SOURCES:
        return None
    value_types = set(map(type, value))
    if value_types != _FLOAT_ONLY:
        if not value_types <= _NUMBERS:
            return None
        value = tuple(map(float, value))
    event_ms, receive_ms = _column_ms(event), _column_ms(receive)
    if event_ms is None or receive_ms is None:
        return None
    columns = (
        device, kind, district, ward, metric, value, unit, event_ms, receive_ms, source_of,
        source,
    )  # fmt: skip
    return ColumnBlock(columns, len(objs))


def _readings_checked(objs: Sequence[Any]) -> ColumnBlock:
    """Readings as columns, field by field (optional fields defaulted, values converted)."""
    for o in objs:
        if o.get("time_source", "device") not in ("device", "receive"):
            raise ValueError(f"unknown time_source {o.get('time_source')!r}")
    columns = (
        [str(o["device_id"]) for o in objs],
        [str(o["device_kind"]) for o in objs],
        [str(o["district"]) for o in objs],
        [str(o.get("ward", "")) for o in objs],
        [str(o["metric"]) for o in objs],
        [float(o["value"]) for o in objs],
        [str(o["unit"]) for o in objs],
        [_epoch_ms(o["event_time"]) for o in objs],
        [_epoch_ms(o["receive_time"]) for o in objs],
        [o.get("time_source", "device") for o in objs],
        [str(o.get("source", "")) for o in objs],
    )
    return ColumnBlock(columns, len(objs))


def _window(value: bytes) -> list[tuple[Any, ...]]:
    r = indicators.decode_indicator(value)
    return [
        (
            r.indicator, r.device_id, r.device_kind, r.district, r.ward, r.metric, r.unit,
            _opt_time(r.window_start), _opt_time(r.window_end), r.count, r.mean, r.min, r.max,
            r.last, r.stddev, r.revision,
        )
    ]  # fmt: skip


def _value(value: bytes) -> list[tuple[Any, ...]]:
    v = indicator_values.decode_value(value)
    return [
        (
            v.indicator, v.subject_kind, v.subject_id, v.district, _opt_time(v.window_start),
            _opt_time(v.window_end), v.value, v.level, dict(v.components), dict(v.labels),
            v.revision,
        )
    ]  # fmt: skip


def _alert(value: bytes) -> list[tuple[Any, ...]]:
    e = decode_event(value)
    s = e.state
    return [
        (
            e.fingerprint, e.revision, e.rule, e.alert_id or "", e.kind, _opt_time(e.at),
            e.actor, e.notify, e.from_state, e.to_state, e.from_severity or "",
            e.to_severity or "", e.detail, e.comment, s.state, s.severity or "", s.value,
            dict(s.labels), dict(s.annotations), s.episode, _opt_time(s.fired_at),
            _opt_time(s.resolved_at), s.acknowledged_by or "", _opt_time(s.acknowledged_at),
            s.assignee or "", _opt_time(s.silenced_until),
            orjson.dumps(state_to_dict(s, with_memory=False)).decode(),
        )
    ]  # fmt: skip


def _event(value: bytes) -> list[tuple[Any, ...]]:
    e = Event.decode(value)
    return [
        (
            e.type, e.agency, _opt_time(e.time), e.source, e.id, e.subject, e.district, e.ward,
            _opt_time(e.received_at), e.dataschema, e.origin, orjson.dumps(e.data).decode(),
        )
    ]  # fmt: skip


def _dead_letter(value: bytes) -> list[tuple[Any, ...]]:
    o = orjson.loads(value)
    payload = base64.b64decode(str(o.get("payload_b64", "")), validate=True)
    return [
        (
            _time(o["received_at"]),
            str(o["reason"]),
            str(o.get("detail", "")),
            str(o.get("source", "")),
            str(o.get("source_id", "")),
            payload.decode("utf-8", errors="replace"),
        )
    ]


def _notification(value: bytes) -> list[tuple[Any, ...]]:
    o = orjson.loads(value)
    status = o.get("http_status")
    if status is not None and not (isinstance(status, int) and 0 <= status <= 65535):
        raise ValueError(f"http_status {status!r} is not a status code")
    attempt = int(o["attempt"])
    if not 0 <= attempt <= 65535:
        raise ValueError(f"attempt {attempt} out of range")
    return [
        (
            _time(o["at"]), str(o["idempotency_key"]), str(o["receiver"]),
            str(o.get("receiver_type", "")), str(o.get("route", "")), str(o.get("kind", "")),
            str(o.get("status", "")), attempt, str(o["outcome"]), status,
            str(o.get("error") or ""), float(o.get("duration_ms", 0.0)),
            [str(x) for x in o.get("alert_ids", []) if x is not None],
            [str(x) for x in o.get("fingerprints", [])],
            {str(k): str(v) for k, v in (o.get("group_key") or {}).items()},
        )
    ]  # fmt: skip


READINGS = TableSpec(
    "readings",
    ("device_id", "device_kind", "district", "ward", "metric", "value", "unit", "event_time",
     "receive_time", "time_source", "source"),
    _readings,
)  # fmt: skip
INDICATOR_WINDOWS = TableSpec(
    "indicator_windows",
    ("indicator", "device_id", "device_kind", "district", "ward", "metric", "unit",
     "window_start", "window_end", "count", "mean", "min", "max", "last", "stddev", "revision"),
    _window,
)  # fmt: skip
INDICATOR_VALUES = TableSpec(
    "indicator_values",
    ("indicator", "subject_kind", "subject_id", "district", "window_start", "window_end",
     "value", "level", "components", "labels", "revision"),
    _value,
)  # fmt: skip
ALERT_EVENTS = TableSpec(
    "alert_events",
    ("fingerprint", "revision", "rule", "alert_id", "kind", "at", "actor", "notify",
     "from_state", "to_state", "from_severity", "to_severity", "detail", "comment", "state",
     "severity", "value", "labels", "annotations", "episode", "fired_at", "resolved_at",
     "acknowledged_by", "acknowledged_at", "assignee", "silenced_until", "state_json"),
    _alert,
)  # fmt: skip
EVENTS = TableSpec(
    "events",
    ("type", "agency", "time", "source", "id", "subject", "district", "ward", "received_at",
     "dataschema", "origin", "data"),
    _event,
)  # fmt: skip
DEAD_LETTERS = TableSpec(
    "dead_letters", ("received_at", "reason", "detail", "source", "source_id", "payload"),
    _dead_letter,
)  # fmt: skip
NOTIFICATION_ATTEMPTS = TableSpec(
    "notification_attempts",
    ("at", "idempotency_key", "receiver", "receiver_type", "route", "kind", "status",
     "attempt", "outcome", "http_status", "error", "duration_ms", "alert_ids", "fingerprints",
     "group_key"),
    _notification,
)  # fmt: skip


# -- topic routes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicRoute:
    """Which table(s) a topic's messages go to.

    ``pick`` chooses the spec of one message (only for topics with several record kinds);
    it raises :class:`PoisonMessage` when the message is none of them.
    """

    specs: tuple[TableSpec, ...]
    pick: Callable[[bytes], TableSpec] | None = None

    def spec_for(self, value: bytes) -> TableSpec:
        return self.specs[0] if self.pick is None else self.pick(value)


def _pick_indicator(value: bytes) -> TableSpec:
    try:
        schema = orjson.loads(value).get("schema")
    except (orjson.JSONDecodeError, AttributeError) as exc:
        raise PoisonMessage(f"not an indicator record: {exc}") from exc
    if schema == indicators.SCHEMA:
        return INDICATOR_WINDOWS
    if schema == indicator_values.SCHEMA:
        return INDICATOR_VALUES
    raise PoisonMessage(f"unknown indicator schema {schema!r}")


#: Route of each record kind, by the name used in ``IOC_SINK_TOPICS``.
ROUTES: dict[str, TopicRoute] = {
    "readings": TopicRoute((READINGS,)),
    "indicators": TopicRoute((INDICATOR_WINDOWS, INDICATOR_VALUES), _pick_indicator),
    "alerts": TopicRoute((ALERT_EVENTS,)),
    "events": TopicRoute((EVENTS,)),
    "deadletter": TopicRoute((DEAD_LETTERS,)),
    "notifications": TopicRoute((NOTIFICATION_ATTEMPTS,)),
}
