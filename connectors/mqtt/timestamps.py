"""Device timestamps to exact integer microseconds since the Unix epoch (UTC).

Rules (shared by the JSON telemetry format and status payloads; SenML has its own, RFC 8428
rules in :mod:`connectors.mqtt.senml`, which reuse :func:`seconds_to_us`):

* **Numbers** (JSON integers or floats; booleans are *not* numbers) are epoch seconds or epoch
  milliseconds, told apart by magnitude: ``abs(ts) >= 1e11`` is milliseconds, anything
  smaller is seconds. ``1e11`` seconds is in the year 5138 and ``1e11`` milliseconds is
  1973-03-03, so every plausible present-day time falls on the right side in either unit.
  Fractions are kept to the microsecond (rounded half to even).
* **Strings** are ISO 8601 date-times *with* a UTC offset (``Z``, ``+07:00``, ``+0700``), as
  :meth:`datetime.fromisoformat` reads them (basic and extended formats, up to 9 fraction
  digits, truncated to microseconds). A time without an offset (``2026-11-28T09:00:00``) or a
  bare date is **rejected**: a device clock in local time (ICT, UTC+7) would otherwise be
  read seven hours off, silently. Strings longer than 64 characters are rejected unread.
* Anything else (``null``, booleans, objects, arrays, NaN/Infinity) is rejected.

Rejections raise :class:`TimestampError` (a :class:`ValueError`) whose message says why.
Results are plain integers, so comparisons with the receive time never overflow a
``datetime``; magnitudes are clamped to ``±1e21`` µs (well past ``datetime``'s range) so even
``1e308`` stays an ordinary integer and is judged "in the future", not a crash.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
US: Final = timedelta(microseconds=1)
MS_THRESHOLD: Final = 1e11
"""Numbers with ``abs(ts) >= MS_THRESHOLD`` are epoch milliseconds, smaller ones seconds."""
_CLAMP_S: Final = 1e15
_MAX_ISO_CHARS: Final = 64


class TimestampError(ValueError):
    """A device timestamp that cannot be read; the message says why."""


def datetime_to_us(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (``ValueError`` if naive)."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not allowed; pass a timezone-aware datetime")
    return (value - EPOCH) // US


def us_to_datetime(us: int) -> datetime:
    """The aware UTC datetime of ``us`` microseconds since the epoch.

    Raises ``OverflowError`` outside ``datetime``'s range (years 1-9999).
    """
    return EPOCH + timedelta(microseconds=us)


def seconds_to_us(seconds: float) -> int:
    """Epoch seconds (int or finite float) to integer microseconds, clamped to ±1e21."""
    if type(seconds) is int:
        if abs(seconds) > _CLAMP_S:
            return int(math.copysign(_CLAMP_S, seconds)) * 1_000_000
        return seconds * 1_000_000
    if not math.isfinite(seconds):
        raise TimestampError(f"time {seconds!r} is not a finite number")
    if abs(seconds) > _CLAMP_S:
        seconds = math.copysign(_CLAMP_S, seconds)
    return round(seconds * 1e6)


def parse_timestamp(value: object) -> int:
    """A JSON ``ts`` value to integer microseconds since the epoch (rules in the module doc)."""
    kind = type(value)
    if kind is int or kind is float:
        number: float = value  # type: ignore[assignment]
        if kind is float and not math.isfinite(number):
            raise TimestampError(f"timestamp {number!r} is not a finite number")
        if abs(number) >= MS_THRESHOLD:
            if kind is int:
                ms: int = value  # type: ignore[assignment]
                if abs(ms) > _CLAMP_S * 1000:
                    return seconds_to_us(math.copysign(_CLAMP_S, ms))
                return ms * 1000
            return seconds_to_us(number / 1000)
        return seconds_to_us(number)
    if kind is str:
        return _parse_iso(value)  # type: ignore[arg-type]
    raise TimestampError(
        f"timestamp must be epoch seconds, epoch milliseconds or ISO 8601 text, got {_show(value)}"
    )


def _parse_iso(text: str) -> int:
    if len(text) > _MAX_ISO_CHARS:
        raise TimestampError(f"timestamp text longer than {_MAX_ISO_CHARS} characters")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimestampError(f"timestamp {text!r} is not ISO 8601") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise TimestampError(
            f"timestamp {text!r} has no UTC offset; add 'Z' or '+07:00' (local times are "
            "refused rather than guessed)"
        )
    try:
        return datetime_to_us(parsed)
    except OverflowError:  # pragma: no cover - aware datetimes subtract without overflow
        raise TimestampError(f"timestamp {text!r} is out of range") from None


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    return type(value).__name__
