"""One decoded measurement, before the registry has judged it.

The payload decoders (:mod:`connectors.mqtt.payload`, :mod:`connectors.mqtt.senml`) turn a
telemetry payload into a list of :class:`Measurement`; :mod:`connectors.mqtt.validate` turns
each into a :class:`~schemas.readings.Reading` or a dead letter. A measurement is one value
of one metric at one time: one key of a ``values`` object, or one SenML record.

A measurement rejected on its own becomes a dead letter whose payload is :meth:`extract`: the
measurement alone, in the format it came in, so replaying that dead letter on its original
topic reproduces exactly that measurement and never the accepted ones next to it:

* JSON: ``{"ts": <ts as sent>, "values": {"<key>": <value as sent>}}`` (no ``ts`` if none
  was sent);
* SenML: a one-record pack with every base field applied (RFC 8428 "resolved" form):
  ``[{"n": "<bn+n>", "u": "<unit>", "v": <bv+v>, "t": <absolute epoch seconds>}]``; a
  relative time is written as the absolute time it resolved to.

A non-finite value or time cannot be written in JSON and appears as ``null`` (the dead
letter's detail names it), as does a value nested too deeply to write back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import orjson

from schemas.readings import TimeSource

Format = Literal["json", "senml"]
ValueType = Literal["number", "string", "boolean", "data", "sum", "null", "object", "array"]

MISSING: Final = object()
"""Marks a JSON entry without ``ts``."""


@dataclass(slots=True)
class Measurement:
    """A decoded measurement (see the module docstring)."""

    index: int
    """Position among the payload's measurements, from 0 (used in dead-letter details)."""
    fmt: Format
    name: str
    """The name as sent: the ``values`` key, or SenML's resolved name (base name + name)."""
    metric: str
    """The name with a device prefix removed: what is looked up in the registry."""
    value: float | None
    """The numeric value (possibly non-finite), or ``None`` if the value is not a number."""
    value_type: ValueType
    raw: object
    """The value as sent (JSON) or as resolved (SenML ``bv + v``, ``vs``, ``vb``, ``vd``, ``s``)."""
    unit: str | None
    """The unit sent with the value, or ``None`` (JSON never carries one)."""
    time_us: int | None
    """Event time, microseconds since the epoch; ``None`` when the device gave no time."""
    time_source: TimeSource
    time_error: str | None = None
    """Why the time given cannot be used (reason ``bad_timestamp``), else ``None``."""
    raw_ts: object = MISSING
    """JSON only: the entry's ``ts`` as sent."""
    label: str = "v"
    """SenML only: the value field the record used (``v``, ``vs``, ``vb``, ``vd`` or ``s``)."""

    def extract(self) -> bytes:
        """The measurement alone, replayable on its topic (format in the module docstring).

        Never raises: a value nested too deeply to write back (orjson stops at 254 levels,
        fewer than it reads), value or ``ts``, is written as ``null``.
        """
        try:
            return self._extract(self.raw, self.raw_ts)
        except orjson.JSONEncodeError:
            return self._extract(None, None if self.raw_ts is not MISSING else MISSING)

    def _extract(self, raw: object, raw_ts: object) -> bytes:
        if self.fmt == "json":
            entry: dict[str, object] = {"values": {self.name: raw}}
            if raw_ts is not MISSING:
                entry = {"ts": raw_ts, **entry}
            return orjson.dumps(entry)
        record: dict[str, object] = {"n": self.name}
        if self.unit is not None:
            record["u"] = self.unit
        record[self.label] = raw
        if self.time_error is not None:
            record["t"] = None
        elif self.time_us is not None:
            record["t"] = self.time_us / 1e6
        return orjson.dumps([record])
