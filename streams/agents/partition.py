"""Replay-safe 1-minute window state of one ``ioc.readings`` partition (pure: no Faust, no I/O).

The worker keeps one :class:`PartitionState` per input partition and feeds it every message of
that partition, in offset order, with :meth:`PartitionState.apply`. The state is persisted as
small records (bytes) in a changelog-backed table keyed by device id:

* a *device record* per device (key: the device id, UTF-8): the device's open windows and
  ``o``, the offset of the last input message whose readings of this device are included;
* a *partition record* per partition (key: :func:`partition_key`): ``o``, the last input offset
  fully processed, and ``wm``, the watermark after it.

:meth:`PartitionState.apply` tells the caller which device records changed (``dirty``); the
caller writes each of them once, then the partition record. Replay rules, relied on by the
worker's no-double-count argument (see ``streams/agents/readings.py``):

* a message at an offset ``<=`` the partition record's offset is skipped entirely;
* in a message replayed after that, the readings of a device whose record already has
  ``o >=`` the message's offset are not applied again, but they still advance the watermark,
  so lateness is decided exactly as in the first run;
* nothing depends on the wall clock, so the same messages give the same windows, the same
  late readings and bit-identical floating-point results.

Bad readings never raise: they come back in ``rejected`` with a dead-letter reason
(``malformed_payload``, ``non_finite_value``, ``schema_violation`` for a device that does not
hash to this partition, ``late``) and the original reading object as payload.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from connectors.kafka.partitioning import partition_for
from schemas.deadletter import Reason
from schemas.readings import parse_time
from streams.windows import Aggregate, TumblingWindows, Watermark, WindowResult, to_ms

PARTITION_KEY_PREFIX: Final = b"\x00partition:"
RECORD_VERSION: Final = 1


class StateFormatError(ValueError):
    """A stored state record cannot be read (corrupt or from an unknown version)."""


def partition_key(partition: int) -> bytes:
    """Table key of the partition record of ``partition``."""
    return PARTITION_KEY_PREFIX + str(partition).encode("ascii")


@dataclass(slots=True)
class OpenWindow:
    """One open window of one metric of one device; metadata comes from its first reading."""

    metric: str
    start_ms: int
    unit: str
    device_kind: str
    district: str
    ward: str
    agg: Aggregate


class DeviceState:
    """The open windows of one device and the last input offset applied to them."""

    __slots__ = ("device_id", "offset", "windows")

    def __init__(self, device_id: str, offset: int = -1) -> None:
        self.device_id = device_id
        self.offset = offset
        self.windows: dict[tuple[str, int], OpenWindow] = {}


@dataclass(frozen=True, slots=True)
class Rejected:
    """A reading (or reading object) that must go to the dead-letter topic."""

    reason: Reason
    detail: str
    device_id: str
    payload: bytes


@dataclass(slots=True)
class BatchOutcome:
    """What one input message did to the state, and what the caller must emit and persist."""

    offset: int
    replayed: bool = False  # whole message already applied before a restart: nothing to do
    accepted: int = 0
    skipped: int = 0  # readings of devices whose state already included this message
    results: list[WindowResult] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    dirty: list[str] = field(default_factory=list)  # device records to write, in this order

    @property
    def late(self) -> int:
        return sum(1 for r in self.rejected if r.reason == "late")


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name, "")
    return value if isinstance(value, str) else str(value)


class PartitionState:
    """Windows, watermark and replay bookkeeping of one input partition."""

    def __init__(
        self, partition: int, windows: TumblingWindows, partitions: int | None = None
    ) -> None:
        """``partitions``: the topic's partition count; when given, a device must hash to
        ``partition`` (Kafka's default partitioner) or its readings are rejected."""
        self.partition = partition
        self.windows = windows
        self.partitions = partitions
        self.offset = -1
        self.watermark = Watermark()
        self.devices: dict[str, DeviceState] = {}
        self._ends: dict[int, set[str]] = {}  # window end -> devices with a window ending there

    @property
    def open_windows(self) -> int:
        return sum(len(d.windows) for d in self.devices.values())

    def apply(self, offset: int, readings: Sequence[Any]) -> BatchOutcome:
        """Apply the readings of the input message at ``offset`` (raw reading objects).

        Closes every window of the partition that the new watermark closes. Never raises for
        bad readings; see the module docstring for what is skipped on replay.
        """
        out = BatchOutcome(offset)
        if offset <= self.offset:
            out.replayed = True
            return out
        size = self.windows.size_ms
        grace = self.windows.grace_ms
        wm = self.watermark.value_ms
        devices = self.devices
        ends = self._ends
        touched: dict[str, DeviceState] = {}
        times: dict[str, int] = {}
        rejected = out.rejected
        for obj in readings:
            try:
                device_id = obj["device_id"]
                metric = obj["metric"]
                raw_value = obj["value"]
                event_time = obj["event_time"]
                if not isinstance(device_id, str) or not device_id:
                    raise TypeError("device_id must be a non-empty string")
                if not isinstance(metric, str) or not metric:
                    raise TypeError("metric must be a non-empty string")
                if isinstance(raw_value, bool) or not isinstance(raw_value, int | float):
                    raise TypeError("value must be a number")
                value = float(raw_value)
                ms = times.get(event_time)
                if ms is None:
                    ms = times[event_time] = to_ms(parse_time(event_time))
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                rejected.append(self._reject(obj, "malformed_payload", f"invalid reading: {exc}"))
                continue
            if not math.isfinite(value):
                rejected.append(self._reject(obj, "non_finite_value", f"value {value!r}"))
                continue
            dev = devices.get(device_id)
            if dev is None:
                if self.partitions and partition_for(device_id, self.partitions) != self.partition:
                    detail = (
                        f"device {device_id!r} hashes to partition "
                        f"{partition_for(device_id, self.partitions)}, read on {self.partition}"
                    )
                    rejected.append(self._reject(obj, "schema_violation", detail))
                    continue
                dev = devices[device_id] = DeviceState(device_id)
            end = ms - ms % size + size
            if wm is not None and wm >= end + grace:
                detail = f"window ending {end} ms closed (watermark {wm} ms, grace {grace} ms)"
                rejected.append(self._reject(obj, "late", detail))
                continue
            if wm is None or ms > wm:
                wm = ms
            if dev.offset >= offset:
                out.skipped += 1
                continue
            start = end - size
            win = dev.windows.get((metric, start))
            if win is None:
                win = OpenWindow(
                    metric,
                    start,
                    _text(obj, "unit"),
                    _text(obj, "device_kind"),
                    _text(obj, "district"),
                    _text(obj, "ward"),
                    Aggregate(),
                )
                dev.windows[(metric, start)] = win
                ends.setdefault(end, set()).add(device_id)
            win.agg.add(value, ms)
            touched[device_id] = dev
            out.accepted += 1
        for dev in touched.values():
            dev.offset = offset
        self.watermark.value_ms = wm
        dirty = dict.fromkeys(touched)
        out.results = self._close(wm, dirty)
        out.dirty = list(dirty)
        self.offset = offset
        return out

    def _reject(self, obj: Any, reason: Reason, detail: str) -> Rejected:
        device_id = obj.get("device_id") if isinstance(obj, dict) else None
        return Rejected(
            reason, detail, device_id if isinstance(device_id, str) else "", orjson.dumps(obj)
        )

    def _close(self, wm: int | None, dirty: dict[str, None]) -> list[WindowResult]:
        if wm is None or not self._ends:
            return []
        limit = wm - self.windows.grace_ms
        closing = sorted(end for end in self._ends if end <= limit)
        results: list[WindowResult] = []
        size = self.windows.size_ms
        for end in closing:
            for device_id in sorted(self._ends.pop(end)):
                dev = self.devices[device_id]
                done = sorted(
                    (w.metric, key) for key, w in dev.windows.items() if w.start_ms + size == end
                )
                for _, key in done:
                    win = dev.windows.pop(key)
                    results.append(
                        win.agg.result(
                            device_id=device_id,
                            device_kind=win.device_kind,
                            district=win.district,
                            ward=win.ward,
                            metric=win.metric,
                            unit=win.unit,
                            start_ms=win.start_ms,
                            size_ms=size,
                        )
                    )
                dirty[device_id] = None
        return results

    # --- persistence ---------------------------------------------------------------------------

    def device_record(self, device_id: str) -> bytes:
        """The stored record of a device (its open windows and last applied offset)."""
        dev = self.devices[device_id]
        windows = [
            [w.metric, w.start_ms, w.unit, w.device_kind, w.district, w.ward, *w.agg.to_list()]
            for w in dev.windows.values()
        ]
        return orjson.dumps({"v": RECORD_VERSION, "p": self.partition, "o": dev.offset,
                             "w": windows})  # fmt: skip

    def partition_record(self) -> bytes:
        """The stored record of the partition (last processed offset and watermark)."""
        return orjson.dumps({"v": RECORD_VERSION, "p": self.partition, "o": self.offset,
                             "wm": self.watermark.value_ms})  # fmt: skip

    @classmethod
    def restore(
        cls,
        records: Iterable[tuple[bytes, bytes]],
        windows: TumblingWindows,
        partitions: int | None = None,
    ) -> dict[int, PartitionState]:
        """Rebuild the states of every partition found in stored ``(key, value)`` records.

        Raises ``StateFormatError`` for a record it cannot read: a corrupt state must stop
        the worker rather than silently lose or double-count readings.
        """
        states: dict[int, PartitionState] = {}
        for key, value in records:
            try:
                obj = orjson.loads(value)
                if obj.get("v") != RECORD_VERSION:
                    raise ValueError(f"unknown record version {obj.get('v')!r}")
                p = int(obj["p"])
                state = states.get(p)
                if state is None:
                    state = states[p] = cls(p, windows, partitions)
                if key.startswith(PARTITION_KEY_PREFIX):
                    state.offset = int(obj["o"])
                    wm = obj["wm"]
                    state.watermark = Watermark(None if wm is None else int(wm))
                    continue
                device_id = key.decode("utf-8")
                dev = DeviceState(device_id, int(obj["o"]))
                for item in obj["w"]:
                    metric, start_ms, unit, kind, district, ward = item[:6]
                    win = OpenWindow(
                        str(metric),
                        int(start_ms),
                        str(unit),
                        str(kind),
                        str(district),
                        str(ward),
                        Aggregate.from_list(item[6:]),
                    )
                    dev.windows[(win.metric, win.start_ms)] = win
                    end = win.start_ms + windows.size_ms
                    state._ends.setdefault(end, set()).add(device_id)
                state.devices[device_id] = dev
            except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as exc:
                raise StateFormatError(f"unreadable state record {key!r}: {exc}") from exc
        return states
