"""SenML packs (RFC 8428, JSON representation) resolved into measurements.

A pack is a JSON array of records. Base fields (``bn``, ``bt``, ``bu``, ``bv``, ``bs``,
``bver``) apply to their own record and every later one until replaced; each record is
resolved as the RFC says:

* name = ``bn + n``; it must match ``[A-Za-z0-9][A-Za-z0-9-:./_]*`` (RFC 8428 section 4.5.1);
* unit = ``u``, else ``bu``, else none;
* value = ``bv + v`` for ``v``; ``vs`` (string), ``vb`` (boolean), ``vd`` (data) and ``s``
  (sum) are valid SenML but not numeric readings: they are decoded (``value=None``) and
  rejected per measurement by the validator with reason ``non_numeric_value``;
* time = ``bt + t`` in seconds (a missing one counts as 0). A resolved time ``>= 2**28`` is
  absolute (seconds since the epoch, ``time_source="device"``); a smaller one (0, negative,
  or small positive) is relative to "now", taken as the receive time
  (``time_source="receive"``, since its accuracy is that of the receive time). RFC 8428 times
  are always seconds: no millisecond guessing here.

Device prefix: the registry knows metrics (``pm25``), SenML names are globally unique
(``urn:dev:ow:10e2073a01080063:temp``, ``aq-lx-001:pm25``). The metric is what follows the
device id in the resolved name when the id appears as a whole segment — at the start or after
``:`` or ``/`` — and is followed by ``:`` or ``/``. A name that *ends* with the device id names
the device itself and has no metric part (metric ``""``, rejected as ``unknown_metric``). A
name without the device id is taken whole (``pm25`` with no base name is simply ``pm25``).

What makes the whole pack invalid (:class:`SenMLError`, reason ``malformed_senml``): a record
that is not an object, a field of the wrong JSON type, an invalid resolved name, a record with
more than one value field, or with regular fields but neither a value nor a sum, ``bver``
other than an integer 1-10 or differing between records, an unknown field whose label ends
with ``_`` ("must understand", RFC 8428 section 4.4), or no measurement at all. Unknown fields
without the ``_`` suffix are ignored, as the RFC requires. A record holding only base fields
(``[{"bn": "aq-lx-001:", "bt": 1.7e9}, {"n": "pm25", "v": 3}]``) sets the bases and yields
no measurement.
"""

from __future__ import annotations

import re
from typing import Any, Final

from connectors.mqtt.measurement import Measurement, ValueType
from connectors.mqtt.timestamps import TimestampError, seconds_to_us

LABELS: Final = frozenset(
    {"bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"}
)
BASE_LABELS: Final = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
VALUE_LABELS: Final = ("v", "vs", "vb", "vd")
SUPPORTED_VERSION: Final = 10
RELATIVE_LIMIT: Final = 2**28
"""Resolved times below this many seconds are relative to "now" (RFC 8428 section 4.5.3)."""

_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
_SEPARATORS: Final = ":/"
_VALUE_TYPES: Final[dict[str, ValueType]] = {
    "v": "number",
    "vs": "string",
    "vb": "boolean",
    "vd": "data",
}


class SenMLError(ValueError):
    """The pack is not valid SenML; the message says which record and why."""


def looks_like_senml(records: list[Any]) -> bool:
    """True unless some element is an object with ``values`` or ``ts`` (the JSON list form).

    Neither key is a SenML label, so a list carrying them is the platform JSON format; any
    other array is treated as SenML and judged by the SenML rules.
    """
    for record in records:
        if type(record) is dict and ("values" in record or "ts" in record):
            return False
    return True


def strip_device(name: str, device_id: str) -> str:
    """The metric part of a resolved SenML name (rule in the module docstring)."""
    size = len(device_id)
    start = 0
    while True:
        at = name.find(device_id, start)
        if at < 0:
            return name
        end = at + size
        if at == 0 or name[at - 1] in _SEPARATORS:
            if end == len(name):
                return ""
            if name[end] in _SEPARATORS:
                return name[end + 1 :]
        start = at + 1


def _is_number(value: object) -> bool:
    kind = type(value)
    return kind is int or kind is float


def _check_base(record: dict[str, Any], index: int) -> None:
    for label in ("bn", "bu"):
        if label in record and type(record[label]) is not str:
            raise SenMLError(f"record {index}: {label} must be a string")
    for label in ("bt", "bv", "bs"):
        if label in record and not _is_number(record[label]):
            raise SenMLError(f"record {index}: {label} must be a number")


def _check_regular(record: dict[str, Any], index: int) -> None:
    for label in ("n", "u", "vs", "vd"):
        if label in record and type(record[label]) is not str:
            raise SenMLError(f"record {index}: {label} must be a string")
    for label in ("v", "s", "t", "ut"):
        if label in record and not _is_number(record[label]):
            raise SenMLError(f"record {index}: {label} must be a number")
    if "vb" in record and type(record["vb"]) is not bool:
        raise SenMLError(f"record {index}: vb must be a boolean")


def resolve_pack(pack: list[Any], device_id: str, received_us: int) -> list[Measurement]:
    """Resolve a SenML pack into measurements, in record order.

    ``received_us`` (microseconds since the epoch) anchors relative times. Raises
    :class:`SenMLError` if the pack is invalid as a whole (list in the module docstring).
    """
    base_name = ""
    base_time: float = 0
    base_unit: str | None = None
    base_value: float = 0
    version: int | None = None
    metrics: dict[str, str] = {}
    out: list[Measurement] = []
    for index, record in enumerate(pack):
        if type(record) is not dict:
            raise SenMLError(f"record {index} is not a JSON object")
        if not record.keys() <= LABELS:
            for label in record.keys() - LABELS:
                if label.endswith("_"):
                    raise SenMLError(
                        f"record {index}: field {label[:40]!r} must be understood "
                        "(label ends with '_') and is not supported"
                    )
            if not record.keys() & LABELS:
                raise SenMLError(f"record {index} has no SenML field")
        _check_base(record, index)
        _check_regular(record, index)
        if "bver" in record:
            bver = record["bver"]
            if type(bver) is not int or not 1 <= bver <= SUPPORTED_VERSION:
                raise SenMLError(
                    f"record {index}: bver {bver!r} is not a version 1-{SUPPORTED_VERSION}"
                )
            if version is not None and bver != version:
                raise SenMLError(f"record {index}: bver {bver} differs from earlier {version}")
            version = bver
        if "bn" in record:
            base_name = record["bn"]
        if "bt" in record:
            base_time = record["bt"]
        if "bu" in record:
            base_unit = record["bu"]
        if "bv" in record:
            base_value = record["bv"]

        labels = [label for label in VALUE_LABELS if label in record]
        if len(labels) > 1:
            raise SenMLError(f"record {index} has more than one value field: {', '.join(labels)}")
        if labels:
            label = labels[0]
        elif "s" in record:
            label = "s"
        elif record.keys() & {"n", "u", "t", "ut"}:
            raise SenMLError(f"record {index} has neither a value (v, vs, vb, vd) nor a sum (s)")
        else:
            continue  # a record of base fields only

        name = base_name + record.get("n", "")
        metric = metrics.get(name)
        if metric is None:
            if not _NAME_RE.fullmatch(name):
                shown = name if len(name) <= 80 else name[:80] + "..."
                raise SenMLError(
                    f"record {index}: resolved name {shown!r} is not a valid SenML name "
                    "([A-Za-z0-9][A-Za-z0-9-:./_]*)"
                )
            metric = metrics[name] = strip_device(name, device_id)

        raw: object = record[label]
        value: float | None = None
        value_type: ValueType = "sum"
        if label == "v":
            value = float(raw + base_value)  # type: ignore[operator]
            raw = value
            value_type = "number"
        elif label != "s":
            value_type = _VALUE_TYPES[label]

        seconds = base_time + record.get("t", 0)
        time_error: str | None = None
        time_us: int | None
        try:
            if seconds < RELATIVE_LIMIT:
                time_us = received_us + seconds_to_us(seconds)
                source = "receive"
            else:
                time_us = seconds_to_us(seconds)
                source = "device"
        except TimestampError as exc:
            time_us, source, time_error = None, "device", str(exc)

        out.append(
            Measurement(
                index=len(out),
                fmt="senml",
                name=name,
                metric=metric,
                value=value,
                value_type=value_type,
                raw=raw,
                unit=record.get("u", base_unit),
                time_us=time_us,
                time_source=source,  # type: ignore[arg-type]
                time_error=time_error,
                label=label,
            )
        )
    if not out:
        raise SenMLError("the pack holds no measurement")
    return out
