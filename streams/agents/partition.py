"""Replay-safe window state of one ``ioc.readings`` partition (pure: no Faust, no I/O).

Every reading updates one 1-minute *pane*; when a pane closes it is emitted and merged into
the derived windows covering it (1 h, hopping, local days: ``streams/window_specs.py``), which
are emitted when they close in turn. Panes and derived windows of a device live in one record.

The worker keeps one :class:`PartitionState` per input partition and feeds it every message of
that partition, in offset order, with :meth:`PartitionState.apply`. The state is persisted as
small records (bytes) in a changelog-backed table keyed by device id:

* a *device record* per device (key: the device id, UTF-8): the device's open panes (``w``),
  its open derived windows (``d``, by spec name) and ``o``, the offset of the last input
  message whose readings of this device are included;
* a *partition record* per partition (key: :func:`partition_key`): ``o``, the last input offset
  fully processed, and ``wm``, the watermark after it.

:meth:`PartitionState.apply` tells the caller which device records changed (``dirty``); the
caller writes each of them once, then the partition record — after every message, or, with
:meth:`PartitionState.checkpoint`, once for many messages (every record is a consistent
snapshot carrying its own offset, so both give the same guarantees). Replay rules, relied on by the
worker's no-double-count argument (see ``streams/agents/readings.py``):

* a message at an offset ``<=`` the partition record's offset is skipped entirely;
* in a message replayed after that, the readings of a device whose record already has
  ``o >=`` the message's offset are not applied again, but they still advance the watermark,
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
from streams.gauge_levels import LEVEL_METRIC, GaugeConfig, gauge_values
from streams.station_aqi import POLLUTANTS, StationHours, station_values
from streams.traffic_flow import traffic_values
from streams.window_specs import WindowSpec
from streams.windows import Aggregate, TumblingWindows, Watermark, WindowResult, to_ms

PARTITION_KEY_PREFIX: Final = b"\x00partition:"
RECORD_VERSION: Final = 2
READABLE_VERSIONS: Final = frozenset({1, 2})  # v1: 1-minute panes only, no derived windows
_NO_WATERMARK: Final = -(1 << 62)  # below any event time in ms: "no reading seen yet"
_TIME_CACHE: Final = 4096  # distinct event-time strings remembered (parsed once each)
_COVER_CACHE: Final = 1024  # pane starts whose covering derived windows are remembered
_DEVICE_ID: Final = itemgetter("device_id")
_METRIC: Final = itemgetter("metric")
_VALUE: Final = itemgetter("value")
_EVENT_TIME: Final = itemgetter("event_time")
_STR: Final = frozenset({str})
_FLOAT: Final = frozenset({float})
_NUMBER: Final = frozenset({float, int})


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
    end_ms: int = 0  # derived windows only (a pane's end is start + pane size)


class DeviceState:
    """The open windows of one device and the last input offset applied to them."""

    __slots__ = ("derived_cache", "device_id", "hours", "offset", "partials", "windows")

    def __init__(self, device_id: str, offset: int = -1) -> None:
        self.device_id = device_id
        self.hours: StationHours | None = None  # air-quality stations: recent hourly means
        self.offset = offset
        self.derived_cache: bytes | None = None  # encoded ``partials``; they change rarely
        self.windows: dict[tuple[str, int], OpenWindow] = {}  # open panes by (metric, start)
        # open derived windows by (spec index, metric, start): merges of closed panes
        self.partials: dict[tuple[int, str, int], OpenWindow] = {}


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


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name, "")
    return value if isinstance(value, str) else str(value)


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
        self.specs = tuple(specs)
        self.station_aqi = station_aqi
        self.gauges = gauges
        self._spec_names = [spec.name for spec in self.specs]
        self.offset = -1
        self.watermark = Watermark()
        self.devices: dict[str, DeviceState] = {}
        self._ends: dict[int, set[str]] = {}  # pane end -> devices with a pane ending there
        self._pends: dict[int, set[str]] = {}  # derived window end -> devices
        self._unsaved: dict[str, None] = {}  # devices changed since the last checkpoint
        self._ms_of: dict[str, int] = {}  # event-time string -> epoch ms (a pure cache)
        self._covers: dict[int, list[tuple[int, int, int]]] = {}  # see _covering (a cache)
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
                win = panes[(metric, start)] = self._open(obj, metric, start)
                ends.setdefault(start + size, set()).add(device_id)
            win.agg.add(value, ms)
        return high, {d: devices[d] for d in firsts}

    @staticmethod
    def _open(obj: dict[str, Any], metric: str, start: int) -> OpenWindow:
        """A new pane; its metadata comes from its first reading."""
        return OpenWindow(
            metric,
            start,
            _text(obj, "unit"),
            _text(obj, "device_kind"),
            _text(obj, "district"),
            _text(obj, "ward"),
            Aggregate(),
        )

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
                win = dev.windows[(metric, start)] = self._open(obj, metric, start)
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
        for end in sorted(end for end in self._ends if end <= limit):
            for device_id in sorted(self._ends.pop(end)):
                dev = self.devices[device_id]
                done = sorted(
                    (w.metric, key) for key, w in dev.windows.items() if w.start_ms + size == end
                )
                for _, key in done:
                    win = dev.windows.pop(key)
                    results.append(self._result(device_id, win, size, READING_STATS_1M))
                    if self.specs:
                        self._fold(dev, win)
                dirty[device_id] = None
        # derived windows after panes: a pane closed above may complete one of them
        for end in sorted(end for end in self._pends if end <= limit):
            for device_id in sorted(self._pends.pop(end)):
                dev = self.devices[device_id]
                closed: list[WindowResult] = []
                for pkey in sorted(k for k, w in dev.partials.items() if w.end_ms == end):
                    win = dev.partials.pop(pkey)
                    name = self._spec_names[pkey[0]]
                    closed.append(self._result(device_id, win, end - win.start_ms, name))
                results += closed
                if closed:
                    values += self._derive(dev, closed)
                dev.derived_cache = None
                dirty[device_id] = None
        return results

    @staticmethod
    def _result(device_id: str, win: OpenWindow, size: int, name: str) -> WindowResult:
        return win.agg.result(
            device_id=device_id,
            device_kind=win.device_kind,
            district=win.district,
            ward=win.ward,
            metric=win.metric,
            unit=win.unit,
            start_ms=win.start_ms,
            size_ms=size,
            indicator=name,
        )

    def _derive(self, dev: DeviceState, closed: list[WindowResult]) -> list[IndicatorValue]:
        """City indicators from one device's derived windows that closed together."""
        kind = closed[0].device_kind
        if kind == "air_quality" and self.station_aqi:
            derive = station_values if any(r.metric in POLLUTANTS for r in closed) else None
            if derive is not None:
                dev.hours = dev.hours or StationHours()
                return derive(dev.hours, closed)
        if kind == "traffic":
            return traffic_values(closed)
        gauges = self.gauges
        if kind == "river_gauge" and gauges and any(r.metric == LEVEL_METRIC for r in closed):
            dev.hours = dev.hours or StationHours()
            return gauge_values(dev.hours, closed, gauges)
        return []

    def _fold(self, dev: DeviceState, pane: OpenWindow) -> None:
        """Merge a closed pane into every derived window covering it."""
        dev.derived_cache = None
        partials = dev.partials
        metric = pane.metric
        for idx, start, end in self._covering(pane.start_ms):
            key = (idx, metric, start)
            part = partials.get(key)
            if part is None:
                part = partials[key] = OpenWindow(
                    metric, start, pane.unit, pane.device_kind, pane.district, pane.ward,
                    Aggregate(), end,
                )  # fmt: skip
                self._pends.setdefault(end, set()).add(dev.device_id)
            part.agg.merge(pane.agg)

    def _covering(self, pane_start: int) -> list[tuple[int, int, int]]:
        """``(spec index, start, end)`` of every derived window covering the pane starting at
        ``pane_start``, in spec order (the same for every device: computed once per pane)."""
        found = self._covers.get(pane_start)
        if found is None:
            if len(self._covers) > _COVER_CACHE:
                self._covers.clear()
            pane_end = pane_start + self.windows.size_ms
            found = self._covers[pane_start] = [
                (idx, start, end)
                for idx, spec in enumerate(self.specs)
                for start, end in spec.containing(pane_start, pane_end)
            ]
        return found

    def checkpoint(self) -> list[tuple[bytes, bytes]]:
        """The records to persist now: every device changed since the last checkpoint, then
        the partition record; empty when nothing was applied since. Marks them saved.

        Writing these records (in order, to the changelog partition of this partition) after
        every message or only every so many messages gives the same recovery guarantees:
        each device record is a consistent snapshot with its own offset (module docstring).
        """
        if self.offset == self._saved_offset and not self._unsaved:
            return []
        records = [(d.encode("utf-8"), self.device_record(d)) for d in self._unsaved]
        records.append((partition_key(self.partition), self.partition_record()))
        self._unsaved.clear()
        self._saved_offset = self.offset
        return records

    # --- persistence ---------------------------------------------------------------------------

    def device_record(self, device_id: str) -> bytes:
        """The stored record of a device (its open windows and last applied offset)."""
        dev = self.devices[device_id]
        windows = [
            [w.metric, w.start_ms, w.unit, w.device_kind, w.district, w.ward, *w.agg.to_list()]
            for w in dev.windows.values()
        ]
        derived = dev.derived_cache
        if derived is None:
            names = self._spec_names
            derived = dev.derived_cache = orjson.dumps([
                [names[idx], w.metric, w.start_ms, w.end_ms, w.unit, w.device_kind,
                 w.district, w.ward, *w.agg.to_list()]
                for (idx, _, _), w in dev.partials.items()
            ])  # fmt: skip
        record: dict[str, Any] = {"v": RECORD_VERSION, "p": self.partition, "o": dev.offset,
                                  "w": windows, "d": orjson.Fragment(derived)}  # fmt: skip
        if dev.hours is not None:
            record["x"] = dev.hours.to_obj()
        return orjson.dumps(record)

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
        specs: Sequence[WindowSpec] = (),
        gauges: GaugeConfig | None = None,
        *,
        owned: Collection[int] | None = None,
    ) -> dict[int, PartitionState]:
        """Rebuild the states of every partition found in stored ``(key, value)`` records
        (only of the partitions in ``owned`` when given; records of others are skipped).

        Raises ``StateFormatError`` for a record it cannot read: a corrupt state must stop
        the worker rather than silently lose or double-count readings. Derived windows of a
        spec that is no longer configured are dropped and counted in ``dropped_partials``.
        """
        states: dict[int, PartitionState] = {}
        spec_index = {spec.name: i for i, spec in enumerate(specs)}
        for key, value in records:
            try:
                obj = orjson.loads(value)
                if obj.get("v") not in READABLE_VERSIONS:
                    raise ValueError(f"unknown record version {obj.get('v')!r}")
                p = int(obj["p"])
                if owned is not None and p not in owned:
                    continue
                state = states.get(p)
                if state is None:
                    state = states[p] = cls(p, windows, partitions, specs, gauges=gauges)
                if key.startswith(PARTITION_KEY_PREFIX):
                    state.offset = state._saved_offset = int(obj["o"])
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
                for item in obj.get("d", ()):
                    name, metric, start_ms, end_ms, unit, kind, district, ward = item[:8]
                    idx = spec_index.get(str(name))
                    if idx is None:
                        state.dropped_partials += 1
                        continue
                    win = OpenWindow(
                        str(metric),
                        int(start_ms),
                        str(unit),
                        str(kind),
                        str(district),
                        str(ward),
                        Aggregate.from_list(item[8:]),
                        int(end_ms),
                    )
                    dev.partials[(idx, win.metric, win.start_ms)] = win
                    state._pends.setdefault(win.end_ms, set()).add(device_id)
                if "x" in obj:
                    dev.hours = StationHours.from_obj(obj["x"])
                state.devices[device_id] = dev
            except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as exc:
                raise StateFormatError(f"unreadable state record {key!r}: {exc}") from exc
        return states
