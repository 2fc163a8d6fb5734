"""Building blocks shared by the three alert documents (state, event, action).

The alert documents live in :mod:`schemas.alert_state`, :mod:`schemas.alert_events` and
:mod:`schemas.alert_actions` (all re-exported by :mod:`schemas.alerts`); this module holds what
they have in common: the format error, the microsecond time encoding, the construction-time
checks of the dataclasses and the typed field readers of the decoders.

Guarantees:

* :func:`format_time_us` writes UTC ISO 8601 with exactly six fractional digits and a ``Z``
  suffix, and refuses naive datetimes; ``parse_time(format_time_us(t)) == t`` for every aware
  ``t`` (microsecond precision, the precision of :class:`~datetime.datetime`).
* :func:`load_document` raises :class:`AlertFormatError` (a ``ValueError``) for bytes that are
  not a JSON object carrying the expected ``schema`` tag, and returns the parsed object
  otherwise; it never checks the other fields.
* The ``read_*`` helpers return the field with the exact Python type its name says, or raise
  ``KeyError`` (field missing where required) or ``TypeError`` (wrong JSON type); the decoders
  turn both into :class:`AlertFormatError`. They never coerce (``true`` is not a number, ``1``
  is not a boolean).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.readings import parse_time

__all__ = [
    "AlertFormatError",
    "check_aware",
    "check_finite",
    "format_opt_time",
    "format_time_us",
    "load_document",
    "read_bool",
    "read_int",
    "read_number",
    "read_opt_str",
    "read_opt_time",
    "read_str",
    "read_str_map",
]


class AlertFormatError(ValueError):
    """A document does not follow the alert state, alert event or alert action v1 format."""


# --- time encoding ------------------------------------------------------------------------


def format_time_us(value: datetime) -> str:
    """UTC ISO 8601 with microseconds and ``Z``: ``2026-11-28T09:00:00.000000Z``."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not allowed; pass a timezone-aware datetime")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_opt_time(value: datetime | None) -> str | None:
    """:func:`format_time_us`, with ``None`` (JSON ``null``) passed through."""
    return None if value is None else format_time_us(value)


# --- construction-time checks -------------------------------------------------------------


def check_aware(name: str, value: datetime | None) -> None:
    """``ValueError`` unless ``value`` is ``None`` or a timezone-aware datetime."""
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def check_finite(name: str, value: float | None) -> None:
    """``ValueError`` unless ``value`` is ``None`` or a finite int/float (not a bool)."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


# --- decoding -----------------------------------------------------------------------------


def load_document(data: bytes, schema: str) -> dict[str, Any]:
    """The JSON object in ``data``; :class:`AlertFormatError` unless tagged ``schema``."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise AlertFormatError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("schema") != schema:
        raise AlertFormatError(f"not a {schema} document")
    return obj


def read_str(obj: Mapping[str, Any], key: str) -> str:
    """The required string ``obj[key]``."""
    value = obj[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {value!r}")
    return value


def read_opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    """The string ``obj[key]``, or ``None`` if missing or ``null``."""
    return None if obj.get(key) is None else read_str(obj, key)


def read_opt_time(obj: Mapping[str, Any], key: str) -> datetime | None:
    """The time ``obj[key]`` (aware, UTC), or ``None`` if missing or ``null``."""
    return None if obj.get(key) is None else parse_time(read_str(obj, key))


def read_number(value: object, key: str) -> float:
    """``value`` (named ``key`` in errors) as a float; JSON booleans are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} must be a number, got {value!r}")
    return float(value)


def read_int(obj: Mapping[str, Any], key: str) -> int:
    """The required integer ``obj[key]``; JSON booleans and floats are refused."""
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer, got {value!r}")
    return value


def read_bool(obj: Mapping[str, Any], key: str) -> bool:
    """The boolean ``obj[key]``, ``False`` if missing."""
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false, got {value!r}")
    return value


def read_str_map(obj: Mapping[str, Any], key: str) -> dict[str, str]:
    """A copy of the string-to-string object ``obj[key]``, ``{}`` if missing."""
    value = obj.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError(f"{key} must map strings to strings")
    return dict(value)
