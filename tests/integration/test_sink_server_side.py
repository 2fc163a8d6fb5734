"""Readings decoded by ClickHouse (connectors/clickhouse/serverside.py) against the real engine:
for every value, the server either writes exactly the rows the sink's Python path builds, or
refuses the whole insert (and writes nothing); a sink with the fast path and one without it
leave identical tables behind, poison rows included."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from connectors.clickhouse import serverside
from connectors.clickhouse.batch import Limits
from connectors.clickhouse.rows import READINGS, PoisonMessage, append_message
from connectors.clickhouse.sink import INSERT_SETTINGS
from schemas.readings import Reading, encode_batch
from tests.integration.test_sink_support import (
    Load,
    Topics,
    fresh_database,
    group_caught_up,
    produce,
    sink_thread,
    wait_for,
)

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 28, 9, 30, 15, 123000, tzinfo=UTC)
ROW_QUERY = (
    "SELECT device_id, device_kind, district, ward, metric, value, unit, toString(event_time),"
    " toString(receive_time), time_source, source, kafka_topic, kafka_partition, kafka_offset"
    " FROM readings ORDER BY kafka_offset, event_time, device_id, metric, value"
)


def _reading(i: int, **change: Any) -> dict[str, Any]:
    at = T + timedelta(milliseconds=7919 * i)
    fields: dict[str, Any] = {
        "device_id": f"aq-{i:03d}",
        "device_kind": "air_quality",
        "district": "Mỹ Bình",
        "ward": f"w-{i % 3}",
        "metric": "pm25",
        "value": 12.5 + i,
        "unit": "µg/m³",
        "event_time": at,
        "receive_time": at + timedelta(milliseconds=250),
        "time_source": "device",
        "source": "mqtt:test",
    }
    fields.update(change)
    return Reading(**fields).to_dict()


def _message(*readings: dict[str, Any]) -> bytes:
    return orjson.dumps({"schema": "ioc.readings/v1", "readings": list(readings)})


def _canonical() -> list[bytes]:
    """Values in the form the platform writes, with awkward content."""
    return [
        _message(*(_reading(i) for i in range(5))),
        _message(
            _reading(5, device_id='quote"back\\slash', ward="", source="", time_source="receive"),
            _reading(6, value=-0.0),
            _reading(7, value=1e-300),
            _reading(8, value=-1.7976931348623157e308),
            _reading(9, value=3.0),
            _reading(10, district="line\nbreak\ttab \u0001"),
            _reading(11, event_time=datetime(1970, 1, 1, tzinfo=UTC)),
            _reading(12, event_time=datetime(2199, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
            _reading(13, metric="😀 emoji", unit=""),
        ),
        _message(),  # no readings
        b'{"schema":"ioc.readings/v1","readings":[],"watermark":"2026-11-28T09:02:00.000Z"}',
        encode_batch([Reading.from_dict(_reading(14))]),
    ]


def _variant(**change: Any) -> bytes:
    obj = _reading(20)
    for key, value in change.items():
        if value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return _message(_reading(21), obj)


_DROP = object()

#: Values that begin like canonical ones but are not: the server must refuse each, or write
#: what Python writes (a poison message included: Python dead-letters it).
NOT_CANONICAL = [
    _variant(ward=_DROP),
    _variant(source=_DROP),
    _variant(time_source=_DROP),
    _variant(ward=None),
    _variant(device_id=17),
    _variant(device_id=1.5),
    _variant(device_id=True),
    _variant(ward={"a": 1}),
    _variant(ward=["x"]),
    _variant(value="12.5"),
    _variant(value=True),
    _variant(value=None),
    _variant(value=7),
    _variant(time_source="gps"),
    _variant(event_time="2026-11-28T09:30:15.123+07:00"),
    _variant(event_time="2026-11-28T09:30:15Z"),
    _variant(event_time="2026-11-28T09:30:15.123456Z"),
    _variant(event_time="2026-11-28 09:30:15.123Z"),
    _variant(event_time="2026-11-28T09:30:15,123Z"),
    _variant(event_time="2026-11-28T09:30:15x123Z"),
    _variant(event_time="2028-02-29T09:30:15.123Z"),
    _variant(event_time="2026-02-29T09:30:15.123Z"),
    _variant(event_time="2026-04-31T09:30:15.123Z"),
    _variant(event_time="2026-00-10T09:30:15.123Z"),
    _variant(event_time="2026-11-28T24:00:00.000Z"),
    _variant(event_time="2026-11-28T23:59:60.000Z"),
    _variant(event_time="2026-11-00T10:00:00.000Z"),
    _variant(event_time="2026-02-29T10:00:00.000Z"),
    _variant(event_time="1969-12-31T23:59:59.999Z"),
    _variant(event_time="2200-01-01T00:00:00.000Z"),
    _variant(event_time="0026-01-01T00:00:00.000Z"),
    _variant(receive_time="not a time"),
    _variant(extra="ignored by both"),
    _variant(source='hides "device_id": in text'),
    b'{"schema":"ioc.readings/v1","readings":[1]}',
    b'{"schema":"ioc.readings/v1","readings":[{"device_id":"x"}]}',
    b'{"schema":"ioc.readings/v1","readings":[]',
    b'{"schema":"ioc.readings/v1","readings":[],"schema":"other"}',
]


def _python_rows(client: Client, value: bytes, offset: int) -> bool:
    """Insert ``value`` the sink's Python way; False if it is a poison message."""
    cols = READINGS.empty()
    try:
        n = append_message(READINGS, cols, value, "t", 0, offset)
    except PoisonMessage:
        return False
    if n:
        client.insert("readings", [cols[c] for c in cols], column_names=list(cols),
                      column_oriented=True)  # fmt: skip
    return True


def _server_rows(client: Client, value: bytes, offset: int) -> bool:
    """Insert ``value`` the server's way; False if the server refused it."""
    n = serverside.readings_hint(value)
    assert n is not None, "every value here begins in the canonical form"
    settings = {**INSERT_SETTINGS, "insert_deduplication_token": f"t/0/{offset}"}
    try:
        serverside.insert(client, "t", 0, [(offset, n, value)], settings)
    except DatabaseError as exc:
        if exc.code is None:
            raise AssertionError(f"the server did not answer: {exc}") from exc
        return False
    return True


def test_server_writes_the_python_rows_or_refuses(unique: str) -> None:
    url = os.environ["IOC_CLICKHOUSE_URL"]
    python = fresh_database(url, f"py_{unique}")
    server = fresh_database(url, f"srv_{unique}")
    try:
        refused: list[int] = []
        for offset, value in enumerate(_canonical()):
            assert _python_rows(python, value, offset)
            assert _server_rows(server, value, offset), value
        for offset, value in enumerate(NOT_CANONICAL, start=100):
            before = server.query("SELECT count() FROM readings").result_rows[0][0]
            if not _server_rows(server, value, offset):
                refused.append(offset)
                after = server.query("SELECT count() FROM readings").result_rows[0][0]
                assert after == before, "a refused insert wrote rows"
                _python_rows(server, value, offset)  # the sink's fallback
            _python_rows(python, value, offset)
        rows = python.query(ROW_QUERY).result_rows
        assert len(rows) > 20
        assert server.query(ROW_QUERY).result_rows == rows
        # the strict reading refused all but these, which both paths read alike: an unknown
        # key (ignored), a number as an integer or in a string (read as the same float), and a
        # text that contains the key's name (escaped, so the count stays right)
        alike = [_variant(extra="ignored by both"), _variant(value=7), _variant(value="12.5"),
                 _variant(source='hides "device_id": in text'),
                 _variant(event_time="2028-02-29T09:30:15.123Z")]  # fmt: skip
        accepted = {100 + i for i in range(len(NOT_CANONICAL))} - set(refused)
        assert accepted == {100 + NOT_CANONICAL.index(v) for v in alike}
    finally:
        python.close()
        server.close()


def test_sinks_decoding_on_the_server_or_here_leave_the_same_tables(unique: str) -> None:
    bootstrap = os.environ["IOC_KAFKA_BOOTSTRAP"]
    url = os.environ["IOC_CLICKHOUSE_URL"]
    topics = Topics.create(bootstrap, unique)
    values = _canonical() * 3 + NOT_CANONICAL + _canonical() + [b"not json", b'{"schema": "x"}']
    load = Load({"readings": [(f"k{i % 4}".encode(), v) for i, v in enumerate(values)]})
    dead = "SELECT source, source_id, detail, payload FROM dead_letters ORDER BY source_id"
    try:
        produce(bootstrap, topics, load, ("readings",))
        tables = []
        for decode in ("server", "sink"):
            group = f"g-{decode}-{unique}"
            database = f"sink_{decode}_{unique}"
            client = fresh_database(url, database)
            limits = Limits(40, 1 << 24, 0.2)
            with sink_thread(bootstrap, client, topics, group, limits, decode=decode):
                wait_for("caught up", lambda g=group: _caught_up(bootstrap, g, topics),  # type: ignore[misc]
                         {"up": 1.0}, 60)  # fmt: skip
            reader = fresh_database(url, database)
            tables.append((reader.query(ROW_QUERY).result_rows, reader.query(dead).result_rows))
            reader.close()
        (fast_rows, fast_dead), (py_rows, py_dead) = tables
        assert len(py_rows) > 80
        assert fast_rows == py_rows
        assert fast_dead == py_dead
        assert len(py_dead) >= 4  # [1], [{"device_id"}], not json, schema x (at least)
    finally:
        topics.delete(bootstrap)


def _caught_up(bootstrap: str, group: str, topics: Topics) -> dict[str, float]:
    return {"up": float(group_caught_up(bootstrap, group, topics))}
