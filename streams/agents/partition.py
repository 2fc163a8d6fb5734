"""Replay-safe window state of one ``ioc.readings`` partition (pure: no Faust, no I/O).

Every reading updates one 1-minute *pane*; when a pane closes it is emitted and merged into
the derived windows covering it (1 h, hopping, local days: ``streams/window_specs.py``,
``streams/agents/derived_windows.py``), which are emitted when they close in turn. Panes and
derived windows of a device live in one :class:`DeviceState` (``streams/agents/device_state.py``).

The worker keeps one :class:`PartitionState` per input partition and feeds it every message of
that partition, in offset order, with :meth:`PartitionState.apply`, which names the device
records that changed (``dirty``). The state is persisted as records
(``streams/agents/state_records.py``): one per device, carrying the offset of the last message
whose readings of that device it includes, and one per partition, carrying the last offset fully
processed and the watermark after it; they are written after every message or, with
:meth:`PartitionState.checkpoint`, once for many (each record is a consistent snapshot, so both
give the same guarantees). Replay rules, relied on by the worker's no-double-count argument
(see ``streams/agents/readings.py``):

* a message at an offset ``<=`` the partition record's offset is skipped entirely;
* in a message replayed after that, the readings of a device whose record's offset is already
  ``>=`` the message's offset are not applied again, but they still advance the watermark,
  so lateness is decided exactly as in the first run;
* nothing depends on the wall clock, so the same messages give the same windows, the same
  late readings and bit-identical floating-point results.

Two ways through a message, with the same effect: a message whose readings are all valid,
on time, on this partition and new (the normal case) is admitted with whole-batch checks
(``_admit_all``: field types, finiteness, the earliest reading against the latest possible
watermark); any other message is applied reading by reading (``_apply_each``), which decides
every rule below for each reading in order. ``tests/unit/test_partition_fast_path.py`` checks
that both give identical outcomes and records.

Bad readings never raise: they come back in ``rejected`` with a dead-letter reason
(``malformed_payload``, ``non_finite_value``, ``schema_violation`` for a device that does not
hash to this partition, ``late``) and the original reading object as payload.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from math import isfinite
from operator import itemgetter
from typing import Any, Final

import orjson

from connectors.kafka.partitioning import partition_for
from schemas.deadletter import Reason
from schemas.indicator_values import IndicatorValue
from schemas.indicators import READING_STATS_1M
from schemas.readings import parse_time
from streams.agents import state_records
from streams.agents.derived_windows import DerivedWindows
from streams.agents.device_state import DeviceState, OpenWindow
from streams.agents.state_records import (
    PARTITION_KEY_PREFIX,
    READABLE_VERSIONS,
    RECORD_VERSION,
    StateFormatError,
    partition_key,
)
from streams.gauge_levels import GaugeConfig
from streams.window_specs import WindowSpec
from streams.windows import TumblingWindows, Watermark, WindowResult, to_ms

# also importable from here, as before the records and device data had their own modules
__all__ = ["PARTITION_KEY_PREFIX", "READABLE_VERSIONS", "RECORD_VERSION", "BatchOutcome",
           "DeviceState", "OpenWindow", "PartitionState", "Rejected", "StateFormatError",
           "partition_key"]  # fmt: skip

_NO_WATERMARK: Final = -(1 << 62)  # below any event time in ms: "no reading seen yet"
_TIME_CACHE: Final = 4096  # distinct event-time strings remembered (parsed once each)
_DEVICE_ID: Final = itemgetter("device_id")
_METRIC: Final = itemgetter("metric")
_VALUE: Final = itemgetter("value")
_EVENT_TIME: Final = itemgetter("event_time")
_STR: Final = frozenset({str})
_FLOAT: Final = frozenset({float})
_NUMBER: Final = frozenset({float, int})


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
    values: list[IndicatorValue] = field(default_factory=list)  # derived: station VN_AQI
    rejected: list[Rejected] = field(default_factory=list)
    dirty: list[str] = field(default_factory=list)  # device records to write, in this order

    @property
    def late(self) -> int:
        return sum(1 for r in self.rejected if r.reason == "late")


class PartitionState:
    """Windows, watermark and replay bookkeeping of one input partition."""

    def __init__(
        self,
        partition: int,
        windows: TumblingWindows,
        partitions: int | None = None,
        specs: Sequence[WindowSpec] = (),
        *,
        station_aqi: bool = True,
        gauges: GaugeConfig | None = None,
    ) -> None:
        """``windows``: the 1-minute panes every reading goes to; ``specs``: the derived
        windows merged from closed panes (``streams/window_specs.py``); ``station_aqi``:
        derive VN_AQI per air-quality station from its closed 1 h and 1 d windows
        (``streams/station_aqi.py``); ``gauges``: derive river-gauge levels, rise rates and
        flood alarm levels from closed hours (``streams/gauge_levels.py``; off when None).
        ``partitions``: the topic's partition count; when given, a device must hash to
        ``partition`` (Kafka's default partitioner) or its readings are rejected."""
        self.partition = partition
        self.windows = windows
        self.partitions = partitions
        self.derived = DerivedWindows(
            specs, windows.size_ms, station_aqi=station_aqi, gauges=gauges
        )
        self.specs = self.derived.specs
        self.offset = -1
        self.watermark = Watermark()
        self.devices: dict[str, DeviceState] = {}
        self._ends: dict[int, set[str]] = {}  # pane end -> devices with a pane ending there
        self._unsaved: dict[str, None] = {}  # devices changed since the last checkpoint
        self._ms_of: dict[str, int] = {}  # event-time string -> epoch ms (a pure cache)
        self._saved_offset = -1
        self.dropped_partials = 0  # restored derived windows of specs no longer configured

    @property
    def open_windows(self) -> int:
        return sum(len(d.windows) + len(d.partials) for d in self.devices.values())

    def apply(
        self, offset: int, readings: Sequence[Any], watermark_ms: int | None = None
    ) -> BatchOutcome:
        """Apply the readings of the input message at ``offset`` (raw reading objects).

        ``watermark_ms`` (an idle-partition tick, see ``streams/agents/ticks.py``) advances
        the watermark after the readings. Closes every window of the partition that the new
        watermark closes. Never raises for bad readings; see the module docstring for what is
        skipped on replay.
        """
        out = BatchOutcome(offset)
        if offset <= self.offset:
            out.replayed = True
            return out
        admitted = self._admit_all(offset, readings)
        if admitted is not None:  # the common case: every reading valid, on time and new
            wm_, touched = admitted
            accepted, skipped = len(readings), 0
        else:
            wm_, touched, accepted, skipped = self._apply_each(offset, readings, out.rejected)
        out.accepted = accepted
        out.skipped = skipped
        wm = None if wm_ == _NO_WATERMARK else wm_
        for dev in touched.values():
            dev.offset = offset
        if watermark_ms is not None and (wm is None or watermark_ms > wm):
            wm = watermark_ms
        self.watermark.value_ms = wm
        dirty = dict.fromkeys(touched)
        out.results = self._close(wm, dirty, out.values)
        out.dirty = list(dirty)
        self._unsaved.update(dirty)
        self.offset = offset
        return out

    def _event_ms(self, times: Sequence[Any]) -> list[int]:
        """Epoch ms of each event time (parsed once per distinct string, cached).

        Raises ``KeyError``/``TypeError``/``ValueError``/``OverflowError`` for a bad time.
        """
        cache = self._ms_of
        try:
            return list(map(cache.__getitem__, times))
        except KeyError:
            if len(cache) > _TIME_CACHE:
                cache.clear()
            for text in set(times):
                if text not in cache:
                    if type(text) is not str:
                        raise TypeError("event_time must be a string") from None
                    cache[text] = to_ms(parse_time(text))
            return list(map(cache.__getitem__, times))

    def _admit_all(
        self, offset: int, readings: Sequence[Any]
    ) -> tuple[int, dict[str, DeviceState]] | None:
        """Apply a message whose readings are all valid, on time and not yet applied, with
        whole-batch checks; ``None`` (nothing changed) when any reading needs the per-reading
        rules of :meth:`_apply_each`. Same effect as :meth:`_apply_each` on such a batch:
        the watermark is the greatest event time, every reading is added in order.

        Returns the new watermark (``_NO_WATERMARK`` if none) and the devices touched.
        """
        wm = self.watermark.value_ms
        if not readings:
            return (_NO_WATERMARK if wm is None else wm), {}
        try:
            devs = list(map(_DEVICE_ID, readings))
            metrics = list(map(_METRIC, readings))
            values = list(map(_VALUE, readings))
            times = list(map(_EVENT_TIME, readings))
            if set(map(type, devs)) != _STR or set(map(type, metrics)) != _STR:
                return None
            if "" in devs or "" in metrics:
                return None
            kinds = set(map(type, values))
            if kinds != _FLOAT:
                if not kinds <= _NUMBER:  # exact types: a bool is not a number here
                    return None
                values = list(map(float, values))
            if not all(map(isfinite, values)):
                return None
            stamps = self._event_ms(times)
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        size = self.windows.size_ms
        low = min(stamps)
        high = max(stamps)
        if wm is not None and wm > high:
            high = wm
        if high >= low - low % size + size + self.windows.grace_ms:
            return None  # a reading may be late: judged one by one
        devices = self.devices
        firsts = dict.fromkeys(devs)  # in order of first appearance, like _apply_each
        new = [d for d in firsts if d not in devices]
        if self.partitions and any(
            partition_for(d, self.partitions) != self.partition for d in new
        ):
            return None
        if any(devices[d].offset >= offset for d in firsts if d in devices):
            return None  # replay after a restart: some readings were already applied
        for d in new:
            devices[d] = DeviceState(d)
        ends = self._ends
        for obj, device_id, metric, value, ms in zip(
            readings, devs, metrics, values, stamps, strict=True
        ):
            start = ms - ms % size
            panes = devices[device_id].windows
            win = panes.get((metric, start))
            if win is None:
                win = panes[(metric, start)] = OpenWindow.of_reading(obj, metric, start)
                ends.setdefault(start + size, set()).add(device_id)
            win.agg.add(value, ms)
        return high, {d: devices[d] for d in firsts}

    def _apply_each(
        self, offset: int, readings: Sequence[Any], rejected: list[Rejected]
    ) -> tuple[int, dict[str, DeviceState], int, int]:
        """Apply readings one by one: each is validated, judged late against the watermark
        before it, skipped if its device's record already includes ``offset``, else added.

        Returns the new watermark (``_NO_WATERMARK`` if none), the devices touched, and the
        counts of accepted and skipped readings; rejected readings are appended to
        ``rejected``.
        """
        size = self.windows.size_ms
        grace = self.windows.grace_ms
        wm = self.watermark.value_ms
        devices = self.devices
        ends = self._ends
        touched: dict[str, DeviceState] = {}
        accepted = skipped = 0
        # exact-type checks (orjson yields exact types), no None checks on the watermark
        wm_ = _NO_WATERMARK if wm is None else wm
        for obj in readings:
            try:
                device_id = obj["device_id"]
                metric = obj["metric"]
                value = obj["value"]
                if type(device_id) is not str or not device_id:
                    raise TypeError("device_id must be a non-empty string")
                if type(metric) is not str or not metric:
                    raise TypeError("metric must be a non-empty string")
                kind = type(value)
                if kind is int:
                    value = float(value)
                elif kind is not float:  # bool is not int here: exact types
                    raise TypeError("value must be a number")
                (ms,) = self._event_ms((obj["event_time"],))
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                rejected.append(self._reject(obj, "malformed_payload", f"invalid reading: {exc}"))
                continue
            if not isfinite(value):
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
            if wm_ >= end + grace:
                detail = f"window ending {end} ms closed (watermark {wm_} ms, grace {grace} ms)"
                rejected.append(self._reject(obj, "late", detail))
                continue
            if ms > wm_:  # noqa: PLR1730 - max() costs a call per reading
                wm_ = ms
            if dev.offset >= offset:
                skipped += 1
                continue
            start = end - size
            win = dev.windows.get((metric, start))
            if win is None:
                win = dev.windows[(metric, start)] = OpenWindow.of_reading(obj, metric, start)
                ends.setdefault(end, set()).add(device_id)
            win.agg.add(value, ms)
            touched[device_id] = dev
            accepted += 1
        return wm_, touched, accepted, skipped

    def _reject(self, obj: Any, reason: Reason, detail: str) -> Rejected:
        device_id = obj.get("device_id") if isinstance(obj, dict) else None
        return Rejected(
            reason, detail, device_id if isinstance(device_id, str) else "", orjson.dumps(obj)
        )

    def _close(
        self, wm: int | None, dirty: dict[str, None], values: list[IndicatorValue]
    ) -> list[WindowResult]:
        if wm is None:
            return []
        limit = wm - self.windows.grace_ms
        results: list[WindowResult] = []
        size = self.windows.size_ms
        derived = self.derived
        fold = derived.fold if derived.specs else None
        for end in sorted(end for end in self._ends if end <= limit):
            for device_id in sorted(self._ends.pop(end)):
                dev = self.devices[device_id]
                done = sorted(
                    (w.metric, key) for key, w in dev.windows.items() if w.start_ms + size == end
                )
                for _, key in done:
                    win = dev.windows.pop(key)
                    results.append(win.result(device_id, size, READING_STATS_1M))
                    if fold is not None:
                        fold(dev, win)
                dirty[device_id] = None
        # derived windows after panes: a pane closed above may complete one of them
        results += derived.close(limit, self.devices, dirty, values)
        return results

    # --- persistence: streams/agents/state_records.py (kept here for existing callers) ---

    checkpoint = state_records.checkpoint
    device_record = state_records.device_record
    partition_record = state_records.partition_record

    @classmethod
    def restore(
        cls,
        records: Iterable[tuple[bytes, bytes]],
        windows: TumblingWindows,
        partitions: int | None = None,
        specs: Sequence[WindowSpec] = (),
        gauges: GaugeConfig | None = None,
        *,
        owned: Collection[int] | None = None,
    ) -> dict[int, PartitionState]:
        """:func:`~streams.agents.state_records.restore` into states configured like
        ``cls(p, windows, partitions, specs, gauges=gauges)``."""
        return state_records.restore(
            records, lambda p: cls(p, windows, partitions, specs, gauges=gauges), owned=owned
        )
