"""Telemetry payloads (bytes) to measurements: the platform JSON format or a SenML pack.

Formats, told apart by the top-level JSON value:

* **object** — the platform JSON format (ThingsBoard's telemetry shape):
  ``{"ts": <time>, "values": {"pm25": 35.2}}``; or a bare ``{"pm25": 35.2}`` without a time,
  which uses the receive time (``time_source="receive"``). An object with ``ts`` but no
  ``values``, or with other keys next to ``ts``/``values``, is rejected (``malformed_payload``)
  rather than guessed at. ``ts`` follows :mod:`connectors.mqtt.timestamps` (epoch s or ms by
  magnitude, or ISO 8601 with an offset); a bad ``ts`` rejects that entry's measurements with
  ``bad_timestamp``, not the whole payload.
* **array** whose elements include an object with ``values`` or ``ts`` — a list of the
  objects above (every element must then have ``values``).
* **any other array** — a SenML pack (RFC 8428), see :mod:`connectors.mqtt.senml`.
* anything else (a number, string, ``null``, an empty array) — ``malformed_payload``.

Values: JSON numbers only. Booleans, strings (even ``"35.2"``), ``null``, objects and arrays
are decoded as non-numeric measurements, which the validator rejects one by one with
``non_numeric_value``.

Whole-payload failures raise :class:`PayloadError` with a dead-letter reason:

* ``payload_too_large`` — more than the configured bytes; checked before parsing;
* ``malformed_json`` — empty, not UTF-8, not JSON, or nested deeper than 1024 levels (orjson's
  limit: deep nesting costs no stack and no more memory than the bytes themselves);
* ``non_finite_value`` — the text is JSON but for ``NaN``/``Infinity``/``-Infinity``
  literals, or has a number too large for a double (``1e400``). JSON has no such numbers, so
  the payload cannot be read value by value, and is rejected whole with this reason. To tell
  this from other junk, a payload that fails strict parsing and contains ``NaN`` or
  ``Infinity`` is re-read with Python's lenient parser; only if that succeeds is the reason
  ``non_finite_value``, otherwise ``malformed_json``;
* ``malformed_senml`` / ``malformed_payload`` — valid JSON of the wrong shape.

A payload yielding no measurement at all (``{"values": {}}``, ``[]``) is ``malformed_payload``
(``malformed_senml`` for a SenML pack of base fields only): every message leaves a trace, a
reading or a dead letter.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

from connectors.mqtt.measurement import MISSING, Measurement, ValueType
from connectors.mqtt.senml import SenMLError, looks_like_senml, resolve_pack
from connectors.mqtt.timestamps import TimestampError, parse_timestamp
from schemas.deadletter import Reason

DEFAULT_MAX_BYTES: Final = 64 * 1024
_ENTRY_KEYS: Final = frozenset({"ts", "values"})
_NON_NUMERIC: Final[dict[type, ValueType]] = {
    str: "string",
    bool: "boolean",
    type(None): "null",
    dict: "object",
    list: "array",
}


class PayloadError(ValueError):
    """The payload as a whole cannot be decoded; ``reason`` is a dead-letter reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail


def decode_payload(
    payload: bytes,
    device_id: str,
    received_us: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Measurement]:
    """Decode a telemetry payload into measurements (at least one), in payload order.

    ``device_id`` is the topic's device (SenML names may carry it as a prefix);
    ``received_us`` (microseconds since the epoch) anchors SenML relative times. Raises
    :class:`PayloadError` for a whole-payload failure (reasons in the module docstring) and
    nothing else.
    """
    if len(payload) > max_bytes:
        raise PayloadError(
            "payload_too_large", f"payload of {len(payload)} bytes exceeds {max_bytes} bytes"
        )
    if not payload.strip():
        raise PayloadError("malformed_json", "empty payload")
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _not_json(payload, exc) from None
    if type(document) is dict:
        return _platform([document], single=True)
    if type(document) is list:
        if not document:
            raise PayloadError("malformed_payload", "empty array: no measurements")
        if looks_like_senml(document):
            try:
                return resolve_pack(document, device_id, received_us)
            except SenMLError as exc:
                raise PayloadError("malformed_senml", f"invalid SenML pack: {exc}") from None
        return _platform(document, single=False)
    raise PayloadError(
        "malformed_payload",
        f"top-level JSON {_json_type(document)}: expected an object or an array",
    )


def _platform(entries: list[Any], single: bool) -> list[Measurement]:
    out: list[Measurement] = []
    for position, entry in enumerate(entries):
        where = "the object" if single else f"entry {position}"
        if type(entry) is not dict:
            raise PayloadError("malformed_payload", f"{where} is not a JSON object")
        raw_ts: object = MISSING
        time_us: int | None = None
        time_error: str | None = None
        if "values" in entry:
            values = entry["values"]
            if not entry.keys() <= _ENTRY_KEYS:
                extra = ", ".join(sorted(repr(k[:40]) for k in entry.keys() - _ENTRY_KEYS))
                raise PayloadError(
                    "malformed_payload",
                    f"{where}: unexpected field(s) {extra} next to 'ts'/'values'",
                )
            if type(values) is not dict:
                raise PayloadError("malformed_payload", f"{where}: 'values' is not an object")
            if "ts" in entry:
                raw_ts = entry["ts"]
                try:
                    time_us = parse_timestamp(raw_ts)
                except TimestampError as exc:
                    time_error = str(exc)
        elif not single:
            raise PayloadError("malformed_payload", f"{where} has no 'values'")
        elif "ts" in entry:
            raise PayloadError(
                "malformed_payload",
                "'ts' without 'values': send {\"ts\": ..., \"values\": {...}}",
            )
        else:
            values = entry
        source = "receive" if raw_ts is MISSING else "device"
        for key, raw in values.items():
            kind = type(raw)
            if kind is float or kind is int:
                value: float | None = float(raw)
                value_type: ValueType = "number"
            else:
                value = None
                value_type = _NON_NUMERIC.get(kind, "object")
            out.append(
                Measurement(
                    index=len(out),
                    fmt="json",
                    name=key,
                    metric=key,
                    value=value,
                    value_type=value_type,
                    raw=raw,
                    unit=None,
                    time_us=time_us,
                    time_source=source,  # type: ignore[arg-type]
                    time_error=time_error,
                    raw_ts=raw_ts,
                )
            )
    if not out:
        raise PayloadError("malformed_payload", "no measurements in the payload")
    return out


def _not_json(payload: bytes, exc: orjson.JSONDecodeError) -> PayloadError:
    message = str(exc)
    if "infinity" in message.lower():
        return PayloadError(
            "non_finite_value", f"a number is too large for a double (JSON allows none): {message}"
        )
    if b"NaN" in payload or b"Infinity" in payload:
        seen: list[str] = []

        def constant(token: str) -> float:
            seen.append(token)
            return float(token)

        try:
            json.loads(payload, parse_constant=constant)
        except (ValueError, RecursionError):
            pass
        else:
            if seen:
                return PayloadError(
                    "non_finite_value",
                    f"payload has {seen[0]} literal(s), which JSON does not allow",
                )
    return PayloadError("malformed_json", f"not valid JSON: {message[:200]}")


def _json_type(value: object) -> str:
    return {str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")
