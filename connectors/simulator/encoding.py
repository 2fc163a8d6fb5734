"""MQTT topics and payloads for simulated readings (DESIGN.md, "MQTT topics").

Pure. Topics: ``ioc/<district>/<kind>/<device_id>/telemetry`` and ``.../status``.

Payload formats:

* ``json`` (default), ThingsBoard's telemetry shape:
  ``{"ts": <epoch ms>, "values": {"pm25": 35.2, "pm10": 51.0, ...}}``.
* ``senml``: an RFC 8428 pack, ``[{"bn": "<device_id>:", "bt": <epoch s>, "n": "pm25",
  "u": "ug/m3", "v": 35.2}, {"n": "pm10", "u": "ug/m3", "v": 51.0}, ...]``; a record's full
  name is ``bn + n`` and its time ``bt`` (records carry no ``t``). ``bt`` is an integer when
  the event time is a whole second, else seconds with the milliseconds as decimals.

Event times are written in whole milliseconds, exactly (no float rounding on the way).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import orjson

from connectors.simulator.model import UNITS, SimDevice, SimReading

PayloadFormat = Literal["json", "senml"]
FORMATS: Final = ("json", "senml")
STATUS_ONLINE: Final = b"online"
STATUS_OFFLINE: Final = b"offline"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def telemetry_topic(district: str, kind: str, device_id: str) -> str:
    """``ioc/<district>/<kind>/<device_id>/telemetry``."""
    return f"ioc/{district}/{kind}/{device_id}/telemetry"


def status_topic(device: SimDevice) -> str:
    """``ioc/<district>/<kind>/<device_id>/status`` (retained ``online`` / ``offline``)."""
    return f"ioc/{device.district}/{device.kind}/{device.device_id}/status"


def epoch_ms(t: datetime) -> int:
    """Whole milliseconds since the Unix epoch (exact; sub-millisecond parts are floored)."""
    return (t - _EPOCH) // _MS


def encode_json(reading: SimReading) -> bytes:
    """``{"ts": <epoch ms>, "values": {...}}`` as UTF-8 JSON."""
    return orjson.dumps({"ts": epoch_ms(reading.event_time), "values": reading.values})


def encode_senml(reading: SimReading) -> bytes:
    """An RFC 8428 SenML pack: one record per metric, base name ``<device_id>:``."""
    ms = epoch_ms(reading.event_time)
    bt: int | float = ms // 1000 if ms % 1000 == 0 else ms / 1000
    records: list[dict[str, object]] = []
    for metric, value in reading.values.items():
        record: dict[str, object] = {"n": metric, "u": UNITS[metric], "v": value}
        records.append(record)
    if records:
        records[0] = {"bn": f"{reading.device_id}:", "bt": bt, **records[0]}
    return orjson.dumps(records)


def encode_payload(reading: SimReading, fmt: PayloadFormat = "json") -> tuple[str, bytes]:
    """The telemetry topic and payload of ``reading`` in format ``fmt`` (``json``/``senml``).

    Raises ``ValueError`` for an unknown format and ``KeyError`` for a metric without a unit
    (SenML only; every metric of ``generate`` has one).
    """
    topic = telemetry_topic(reading.district, reading.kind, reading.device_id)
    if fmt == "json":
        return topic, encode_json(reading)
    if fmt == "senml":
        return topic, encode_senml(reading)
    raise ValueError(f"unknown payload format {fmt!r}; use one of {', '.join(FORMATS)}")


def malformed_payload(reading: SimReading) -> tuple[str, bytes]:
    """A deliberately broken payload on ``reading``'s valid telemetry topic.

    It is the first half of the reading's JSON payload: a truncated object, never valid
    JSON (a strict prefix of a JSON object is not a JSON text), as a device cut off
    mid-write would send. Used to exercise the dead-letter path (reason ``malformed_json``).
    """
    topic, payload = encode_payload(reading, "json")
    return topic, payload[: len(payload) // 2]
