"""Readings decoded by ClickHouse itself: the sink's fast path for ``ioc.readings``.

The sink's Python path (:mod:`connectors.clickhouse.rows`) parses every message and converts
every reading to columns: about 2.5 µs of the sink's CPU per reading, most of its time. On
this path the sink does not parse readings at all. It sends the batch's message values as they
came from Kafka, one JSON line per message (``{"o": offset, "n": readings, "v": value}``), as
an external table of the insert (ClickHouse's HTTP external data), and one
``INSERT INTO readings ... SELECT ... ARRAY JOIN`` turns them into rows in the server. This is
how ClickHouse's own Kafka Connect sink treats schemaless JSON: the server parses it.

Guarantees:

* **Same rows or an error.** For every message the server either produces exactly the rows the
  Python path builds from it, or the whole insert fails before anything is written, and the
  sink then builds that batch in Python (poison messages to ``dead_letters`` as always). The
  SELECT accepts only readings in the canonical wire form that ``schemas.readings`` writes:
  all eleven fields present and not null, text fields JSON strings, the value a JSON number
  (a null reads as NaN, which JSON cannot otherwise carry: refused),
  ``time_source`` ``device`` or ``receive``, both times ``YYYY-MM-DDTHH:MM:SS.mmmZ`` between
  1970 and 2199 with every field in its range (a day past the month's end makes the server's
  parser fail), and as many
  readings as the sink counted (:func:`readings_hint`). Any other value (an optional field
  left out, a number where text belongs, ``+07:00`` times, a string that hides a key) is
  refused by the server and so decoded in Python, where the same data gives the same rows.
  (One known gap: a string with a lone UTF-16 surrogate escape, which no producer of this
  platform can write, is stored by the server and dead-lettered by Python.)
* **All or nothing.** The checks run in the SELECT, before the block is written; a batch stays
  below ``min_insert_block_size_rows``/``_bytes`` (:data:`INSERT_SETTINGS`), so the insert is
  one block, written whole or not at all. Its ``insert_deduplication_token`` is the batch's
  token, the same on either path, so a retry, a replay or a fallback after a partial write
  (a materialized view failing after the table's block) adds nothing twice.
* **Deterministic.** The body depends only on the messages, so a rebuilt batch sends the same
  bytes, makes the same decision and writes the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.external import ExternalData

from schemas.readings import SCHEMA

#: How every canonical ``ioc.readings`` value begins (orjson's rendering of
#: ``{"schema": SCHEMA, "readings": [...]}``, as the bridge and the simulator write it).
READINGS_PREFIX = b'{"schema":"' + SCHEMA.encode() + b'","readings":['
_READING_KEY = b'"device_id":'

#: The external table: one row per Kafka message. No field is Nullable: with the settings
#: below, a missing field or a null makes the load fail (and the batch go the Python way).
EXTERNAL_NAME = "sink_messages"
EXTERNAL_STRUCTURE = (
    "o UInt64, n UInt32, v Tuple(schema String, readings Array(Tuple("
    "device_id String, device_kind String, district String, ward String, metric String, "
    "value Float64, unit String, event_time String, receive_time String, time_source String, "
    "source String)))"
)


#: A canonical wire time: ``YYYY-MM-DDTHH:MM:SS.mmmZ``, years 1970-2199, every field in its
#: range. (ClickHouse's parser would turn ``24:00``, ``23:60``, second 60 or day 00 into another
#: time, which Python refuses; a day past the month's end, 30 February, makes it fail.)
_TIME = (
    r"^(19[7-9][0-9]|2[01][0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9][.][0-9]{3}Z$"
)


#: The insert (``{topic:String}`` and ``{partition:UInt16}`` are bound per batch). The inner
#: query checks each message, the outer one each reading.
READINGS_INSERT = f"""
INSERT INTO readings (device_id, device_kind, district, ward, metric, value, unit, event_time,
    receive_time, time_source, source, kafka_topic, kafka_partition, kafka_offset)
SELECT device_id, device_kind, district, ward, metric, value, unit, event_time, receive_time,
    time_source, source, {{topic:String}}, {{partition:UInt16}}, o
FROM (
    SELECT o, r.device_id AS device_id, r.device_kind AS device_kind, r.district AS district,
        r.ward AS ward, r.metric AS metric, r.value AS value, r.unit AS unit,
        r.time_source AS time_source, r.source AS source,
        r.event_time AS event_text, r.receive_time AS receive_text,
        parseDateTime64BestEffort(event_text, 3, 'UTC') AS event_time,
        parseDateTime64BestEffort(receive_text, 3, 'UTC') AS receive_time
    FROM (
        SELECT o, v.readings AS rs FROM {EXTERNAL_NAME}
        WHERE throwIf(v.schema != '{SCHEMA}' OR length(v.readings) != n,
            'message not in the canonical ioc.readings form') = 0
    )
    ARRAY JOIN rs AS r
)
WHERE throwIf(time_source NOT IN ('device', 'receive') OR isNaN(value)
    OR NOT match(event_text, '{_TIME}') OR NOT match(receive_text, '{_TIME}'),
    'reading not in the canonical ioc.readings form') = 0
"""  # noqa: S608 - made of this module's constants only, no input

#: Settings of the insert, beside the sink's own (deduplication): JSON read strictly (no
#: number, bool, object or array read as text, no bool as number, no null as a default, a
#: missing field an error), unknown keys ignored, and blocks large enough that a batch is one.
INSERT_SETTINGS: Mapping[str, Any] = {
    "input_format_json_read_numbers_as_strings": 0,
    "input_format_json_read_bools_as_strings": 0,
    "input_format_json_read_bools_as_numbers": 0,
    "input_format_json_read_objects_as_strings": 0,
    "input_format_json_read_arrays_as_strings": 0,
    "input_format_json_named_tuples_as_objects": 1,
    "input_format_json_ignore_unknown_keys_in_named_tuple": 1,
    "input_format_json_defaults_for_missing_elements_in_named_tuple": 0,
    "input_format_skip_unknown_fields": 1,
    "input_format_null_as_default": 0,
    "input_format_parallel_parsing": 0,
    "min_insert_block_size_rows": 10_000_000,
    "min_insert_block_size_bytes": 4 << 30,
    "max_block_size": 10_000_000,
    "max_insert_threads": 1,
}

#: Largest batch sent this way (rows, value bytes): far below the block settings above.
MAX_ROWS = 1_000_000
MAX_BYTES = 512 << 20


def readings_hint(value: bytes) -> int | None:
    """The number of readings in a canonical ``ioc.readings`` value (counted, not parsed), or
    None if the value does not begin as the canonical form does (the Python path takes it).

    The count is checked by the server (``length(v.readings) = n``): a value whose strings hide
    the key text makes the insert fail and the batch go the Python way, never a wrong count.
    """
    if not value.startswith(READINGS_PREFIX):
        return None
    return value.count(_READING_KEY)


def body(messages: Sequence[tuple[int, int, bytes]]) -> bytes:
    """The external table's data (JSONEachRow) for ``(offset, readings, value)`` messages."""
    return b"".join([b'{"o":%d,"n":%d,"v":%s}\n' % m for m in messages])


def insert(
    client: Client,
    topic: str,
    partition: int,
    messages: Sequence[tuple[int, int, bytes]],
    settings: Mapping[str, Any],
) -> None:
    """Insert ``(offset, readings, value)`` messages of one topic-partition into ``readings``
    (``settings`` are the sink's: deduplication and its token; :data:`INSERT_SETTINGS` are
    added). Raises clickhouse-connect's ``DatabaseError``: with a ``code`` when the server
    refused the insert (nothing written), without one when it could not be reached."""
    external = ExternalData(
        file_name=EXTERNAL_NAME,
        data=body(messages),
        fmt="JSONEachRow",
        structure=EXTERNAL_STRUCTURE,
    )
    client.command(
        READINGS_INSERT,
        parameters={"topic": topic, "partition": partition},
        external_data=external,
        settings={**settings, **INSERT_SETTINGS},
    )
