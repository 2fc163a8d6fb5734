"""Replay-safe district aggregation state: district VN_AQI and devices reporting (pure).

The worker forwards, unchanged, the station VN_AQI records (``vn_aqi_1h``/``vn_aqi_1d``,
subject kind ``device``) and the 1-minute device windows (``reading_stats_1m``, one per device
and minute) from ``ioc.indicators`` onto one internal partition
(``streams/agents/districts.py``): one partition sees every district and one watermark — the
greatest ``window_end`` seen, or an idle tick — closes windows for all of them (a district that
sends nothing still gets its zero).

A *cell* is one window of one family for one district. Families:

* ``vn_aqi_1h`` and ``vn_aqi_1d`` (``streams/district_aqi.py``): inputs are the station
  records; a district without any station value has no record. The record is emitted once
  the cell is *complete* (every station the registry expects in the district has reported)
  or when the watermark reaches the window's end plus ``grace_ms``; cells are kept until the
  watermark passes their end plus ``keep_ms``.
* the devices-reporting families (``streams/district_health.py``: 1 minute, the hopping
  windows, 1 hour): their input is the *minute cell* of each district and hour (internal
  family :data:`MINUTES`: device -> bit mask of the minutes it was seen in); a window's
  reporting devices are those seen in any of its minutes. Every registry district gets a
  record for every window that closes (watermark at end plus ``grace_ms``) after the first
  input, plus any district that reported in the window; when the watermark jumps, windows
  already more than ``health_keep_ms`` behind it are skipped (they could not be revised
  either). Minute cells are kept for ``health_keep_ms`` plus the largest window, window cells
  (their emissions) for ``health_keep_ms``. Memory: about one entry per device and hour kept.

After its first emission, a cell is emitted again, with ``revision`` + 1, whenever a later
input changes it (a late station, a device's late minute). Inputs older than the kept windows
(station records: ``keep_ms``; minutes: ``health_keep_ms``, both past the window's end and
the grace) are counted as ``late`` and dropped.

Persistence as in ``streams/service_partition.py``: a record per changed cell (its inputs and
emissions, each with the input offset it came from) and then the partition record (offset,
watermark, first input's time); :meth:`DistrictState.restore` drops everything of an offset
after the partition record's, so the restored state is exactly the state after it, and
replaying the following input repeats the uninterrupted run's decisions. Nothing here reads
the wall clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from schemas.indicator_values import SCHEMA as VALUES_SCHEMA
from schemas.indicator_values import IndicatorValue, decode_value, encode_value, value_to_dict
from schemas.indicators import SCHEMA as WINDOWS_SCHEMA
from schemas.indicators import decode_indicator
from streams.district_aqi import STATION_INDICATORS, district_aqi
from streams.district_health import SOURCE_INDICATOR, HealthFamily, reporting_value
from streams.window_specs import DAY_MS, HOUR_MS
from streams.windows import MINUTE_MS, from_ms, to_ms

RECORD_VERSION: Final = 1
PARTITION_KEY: Final = b"\x00partition"
CELL_PREFIX: Final = b"\x01"
TICK_SCHEMA: Final = "ioc.district-tick/v1"
MINUTES: Final = "minutes"  # family of the minute cells (devices seen; never emitted)

CellKey = tuple[str, int, int, str]  # (family, start ms, end ms, district)


class StateFormatError(ValueError):
    """A stored record cannot be read."""


class InputError(ValueError):
    """A forwarded message is neither a district input nor a tick."""


def encode_tick(watermark_ms: int) -> bytes:
    return orjson.dumps({"schema": TICK_SCHEMA, "watermark": watermark_ms})


@dataclass(slots=True)
class Cell:
    """Inputs (subject -> versions ``(offset, payload)``) and emissions ``(offset, revision,
    encoded record)`` of one family, window and district."""

    inputs: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    emitted: list[tuple[int, int, bytes]] = field(default_factory=list)

    def current(self) -> dict[str, Any]:
        return {s: versions[-1][1] for s, versions in self.inputs.items()}


@dataclass(slots=True)
class DistrictOutcome:
    offset: int
    replayed: bool = False
    late: bool = False
    values: list[IndicatorValue] = field(default_factory=list)


class DistrictState:
    """District cells, watermark and replay bookkeeping of the one district partition."""

    def __init__(
        self,
        stations: Mapping[str, Collection[str]],
        health: Sequence[HealthFamily],
        *,
        grace_ms: int = 0,
        keep_ms: int = 2 * DAY_MS,
        health_keep_ms: int = DAY_MS,
    ) -> None:
        """``stations``: district -> the air-quality station ids the registry expects;
        ``health``: the devices-reporting families (their districts are the registry's)."""
        names = [f.name for f in health]
        if len(set(names)) != len(names) or set(names) & {MINUTES, *STATION_INDICATORS}:
            raise ValueError(f"devices-reporting families need distinct names: {names}")
        if any(f.window.pane_ms != MINUTE_MS for f in health):
            raise ValueError("devices-reporting windows must be built on 1-minute panes")
        self.stations = {d: frozenset(s) for d, s in stations.items()}
        self.health = tuple(health)
        self._families = {f.name: f for f in self.health}
        self.districts = sorted({d for f in self.health for d in f.expected})
        self._registry_districts = frozenset(self.districts)
        self._span_ms = max((f.window.size_ms for f in self.health), default=MINUTE_MS)
        self.grace_ms = grace_ms
        self.keep_ms = keep_ms
        self.health_keep_ms = health_keep_ms
        self.offset = -1
        self.watermark: int | None = None
        self.opened: int | None = None  # time of the first input: no health windows before
        self.cells: dict[CellKey, Cell] = {}
        self._pending: set[CellKey] = set()  # station cells not emitted yet
        self._hours: dict[int, set[str]] = {}  # hour start -> districts with a minute cell
        self._dirty: set[CellKey] = set()
        self._saved_offset = -1
        self._saved_watermark: int | None = None

    def _limit(self, wm: int | None) -> int | None:
        return None if wm is None else wm - self.grace_ms

    def _late_ms(self, family: str) -> int:
        """How long past its window's end (and the grace) an input is still taken."""
        return self.health_keep_ms if family == MINUTES else self.keep_ms

    def _kept_ms(self, family: str) -> int:
        """How long past its window's end (and the grace) a cell is kept."""
        if family == MINUTES:  # as long as a kept window of any family holds the minute
            return self.health_keep_ms + self._span_ms
        return self.health_keep_ms if family in self._families else self.keep_ms

    # --- applying input ------------------------------------------------------------------------

    def apply(self, offset: int, data: bytes) -> DistrictOutcome:
        """Apply one forwarded message; raises ``InputError`` for one that is not an input
        (the caller dead-letters it; the offset still counts as applied)."""
        out = DistrictOutcome(offset)
        if offset <= self.offset:
            out.replayed = True
            return out
        self.offset = offset
        key, subject, payload, end = _parse(data)
        old = self.watermark
        wm = end if old is None else max(old, end)
        if key is not None:
            limit = self._limit(old)
            if limit is not None and key[2] + self._late_ms(key[0]) <= limit:
                out.late = True
            elif key[0] == MINUTES:
                out.values += self._add_minute(offset, key, subject)
            else:
                out.values += self._add(offset, key, subject, payload)
        self.watermark = wm
        if self.opened is None:  # the clock opens at the first minute, or station record's end
            self.opened = key[1] if key is not None and key[0] == MINUTES else end
        out.values += self._close(offset, self._limit(old), self._limit(wm))
        return out

    def _add(self, offset: int, key: CellKey, subject: str, payload: Any) -> list[IndicatorValue]:
        cell = self.cells.setdefault(key, Cell())
        versions = cell.inputs.setdefault(subject, [])
        if versions and versions[-1][1] == payload:
            return []  # a repeat: nothing changes
        versions.append((offset, payload))
        self._dirty.add(key)
        limit = self._limit(self.watermark)
        closed = limit is not None and key[2] <= limit
        if cell.emitted or closed or self._complete(key, cell):
            return self._emit(offset, key, cell)
        self._pending.add(key)
        return []

    def _complete(self, key: CellKey, cell: Cell) -> bool:
        want = self.stations.get(key[3])
        return bool(want) and want is not None and want <= cell.inputs.keys()

    def _add_minute(self, offset: int, key: CellKey, device: str) -> list[IndicatorValue]:
        """A device seen in a minute; revises the closed windows that it changes."""
        _, minute, _, district = key
        hour = minute - minute % HOUR_MS
        hkey = (MINUTES, hour, hour + HOUR_MS, district)
        bit = 1 << (minute - hour) // MINUTE_MS
        cell = self.cells.setdefault(hkey, Cell())
        versions = cell.inputs.setdefault(device, [])
        mask: int = versions[-1][1] if versions else 0
        if mask & bit:
            return []  # a repeat (another metric, a re-forwarded copy): nothing changes
        versions.append((offset, mask | bit))
        self._dirty.add(hkey)
        self._hours.setdefault(hour, set()).add(district)
        limit = self._limit(self.watermark)
        if limit is None:
            return []
        out: list[IndicatorValue] = []
        for family in self.health:
            for start, end in family.containing(minute):
                if end > limit:
                    continue  # still open: its record comes when it closes
                wkey = (family.name, start, end, district)
                wcell = self.cells.get(wkey)
                if wcell is not None and wcell.emitted and self._seen(device, wkey, minute):
                    continue  # the device already reports in that window
                out += self._emit(offset, wkey, self.cells.setdefault(wkey, Cell()))
        return out

    def _hour_cells(self, wkey: CellKey) -> Iterator[tuple[int, int, Cell]]:
        """``(hour start, mask of the window's minutes in that hour, minute cell)`` of every
        hour of the window that has a minute cell of the window's district."""
        _, start, end, district = wkey
        hour = start - start % HOUR_MS
        while hour < end:
            cell = self.cells.get((MINUTES, hour, hour + HOUR_MS, district))
            if cell is not None:
                lo, hi = max(start, hour), min(end, hour + HOUR_MS)
                bits = ((1 << (hi - lo) // MINUTE_MS) - 1) << (lo - hour) // MINUTE_MS
                yield hour, bits, cell
            hour += HOUR_MS

    def _seen(self, device: str, wkey: CellKey, but: int) -> bool:
        """Whether ``device`` is seen in a minute of the window other than minute ``but``."""
        for hour, bits, cell in self._hour_cells(wkey):
            versions = cell.inputs.get(device)
            other = (
                bits & ~(1 << (but - hour) // MINUTE_MS) if hour <= but < hour + HOUR_MS else bits
            )
            if versions is not None and versions[-1][1] & other:
                return True
        return False

    def _reporting(self, wkey: CellKey) -> set[str]:
        """Devices seen in the window's minutes (of the window's district)."""
        seen: set[str] = set()
        for _, bits, cell in self._hour_cells(wkey):
            seen.update(d for d, versions in cell.inputs.items() if versions[-1][1] & bits)
        return seen

    def _close(self, offset: int, old: int | None, new: int | None) -> list[IndicatorValue]:
        """Emit what closes when the watermark limit goes from ``old`` to ``new``."""
        if new is None or (old is not None and new <= old):
            return []
        keys = [k for k in self._pending if k[2] <= new]
        if self.opened is not None:
            after = self.opened if old is None else max(old, self.opened)
            for family in self.health:
                for start, end in family.ending(max(after, new - self.health_keep_ms), new):
                    for district in self._districts(start, end):
                        keys.append((family.name, start, end, district))
        out: list[IndicatorValue] = []
        for key in sorted(set(keys), key=lambda k: (k[2], k[0], k[1], k[3])):
            cell = self.cells.get(key)
            if cell is None:
                cell = self.cells[key] = Cell()
            out += self._emit(offset, key, cell)
        return out

    def _districts(self, start: int, end: int) -> list[str]:
        """Registry districts and any that reported in ``[start, end)``."""
        extra: set[str] = set()
        for hour in range(start - start % HOUR_MS, end, HOUR_MS):
            extra.update(self._hours.get(hour, ()))
        extra.difference_update(self.districts)
        seen = [d for d in extra if self._reporting(("", start, end, d))]
        return sorted(self._registry_districts.union(seen))

    def _emit(self, offset: int, key: CellKey, cell: Cell) -> list[IndicatorValue]:
        family, start, end, district = key
        health = self._families.get(family)
        value: IndicatorValue | None
        if health is not None:
            want = health.expected.get(district, frozenset())
            value = reporting_value(family, district, want, self._reporting(key),
                                    from_ms(start), from_ms(end))  # fmt: skip
        else:
            stations = {s: decode_value(orjson.dumps(p)) for s, p in cell.current().items()}
            value = district_aqi(district, stations, len(self.stations.get(district, ())))
        if value is None:
            return []
        fingerprint = _fingerprint(value)
        if cell.emitted and cell.emitted[-1][2] == fingerprint:
            return []
        revision = cell.emitted[-1][1] + 1 if cell.emitted else 0
        if revision:
            value = replace(value, revision=revision)
        cell.emitted.append((offset, revision, fingerprint))
        self._dirty.add(key)
        self._pending.discard(key)
        return [value]

    # --- persistence ---------------------------------------------------------------------------

    def checkpoint(self) -> list[tuple[bytes, bytes | None]]:
        """Records to persist, in order: tombstones of cells no longer kept (judged by the
        previous checkpoint's watermark), changed cells, the partition record."""
        if self.offset == self._saved_offset and not self._dirty:
            return []
        records: list[tuple[bytes, bytes | None]] = []
        limit = self._limit(self._saved_watermark)
        if limit is not None:
            for key in [k for k in self.cells if k[2] + self._kept_ms(k[0]) <= limit]:
                self._forget(key)
                records.append((cell_key(key), None))
        for key in sorted(self._dirty):
            cell = self.cells[key]
            obj = {"v": RECORD_VERSION, "k": list(key),
                   "i": {s: [[o, p] for o, p in v] for s, v in cell.inputs.items()},
                   "e": [[o, r, f.decode()] for o, r, f in cell.emitted]}  # fmt: skip
            records.append((cell_key(key), orjson.dumps(obj)))
            if cell.emitted:
                del cell.emitted[:-1]
            for versions in cell.inputs.values():
                del versions[:-1]
        wm = self.watermark
        records.append((PARTITION_KEY, orjson.dumps({"v": RECORD_VERSION, "o": self.offset,
                                                     "wm": wm, "op": self.opened})))  # fmt: skip
        self._dirty.clear()
        self._saved_offset = self.offset
        self._saved_watermark = wm
        return records

    def _forget(self, key: CellKey) -> None:
        del self.cells[key]
        self._dirty.discard(key)
        self._pending.discard(key)
        if key[0] == MINUTES:
            districts = self._hours.get(key[1])
            if districts is not None:
                districts.discard(key[3])
                if not districts:
                    del self._hours[key[1]]

    def restore(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Load stored records into this (new) state, as of the partition record's offset.
        Raises ``StateFormatError``."""
        try:
            parsed = [(k, orjson.loads(v)) for k, v in records]
            for key, obj in parsed:
                if obj.get("v") != RECORD_VERSION:
                    raise ValueError(f"unknown record version {obj.get('v')!r}")
                if key == PARTITION_KEY:
                    self.offset = self._saved_offset = int(obj["o"])
                    wm, opened = obj["wm"], obj.get("op")
                    self.watermark = self._saved_watermark = None if wm is None else int(wm)
                    self.opened = None if opened is None else int(opened)
            for key, obj in parsed:
                if not key.startswith(CELL_PREFIX):
                    continue
                family, start, end, district = obj["k"]
                cell = Cell()
                for subject, versions in obj["i"].items():
                    kept = [(int(o), p) for o, p in versions if int(o) <= self.offset]
                    if kept:
                        cell.inputs[str(subject)] = kept[-1:]
                kept_e = [(int(o), int(r), str(f).encode()) for o, r, f in obj["e"]
                          if int(o) <= self.offset]  # fmt: skip
                cell.emitted = kept_e[-1:]
                if cell.inputs or cell.emitted:
                    ckey = (str(family), int(start), int(end), str(district))
                    self.cells[ckey] = cell
                    if ckey[0] == MINUTES:
                        self._hours.setdefault(ckey[1], set()).add(ckey[3])
                    elif ckey[0] in STATION_INDICATORS and not cell.emitted:
                        self._pending.add(ckey)
        except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as exc:
            raise StateFormatError(f"unreadable district state: {exc}") from exc


def _fingerprint(value: IndicatorValue) -> bytes:
    """A digest of the record as of revision 0 (what the record says, not its version)."""
    return hashlib.blake2b(encode_value(value), digest_size=16).hexdigest().encode()


def _parse(data: bytes) -> tuple[CellKey | None, str, Any, int]:
    """``(cell key or None for a tick, subject, payload, watermark candidate ms)``."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc}") from exc
    schema = obj.get("schema") if isinstance(obj, dict) else None
    try:
        if schema == TICK_SCHEMA:
            return None, "", None, int(obj["watermark"])
        if schema == WINDOWS_SCHEMA:
            w = decode_indicator(data)
            if w.indicator != SOURCE_INDICATOR:
                raise InputError(f"not a district input: {w.indicator}")
            start, end = to_ms(w.window_start), to_ms(w.window_end)
            return (MINUTES, start, end, w.district), w.device_id, 1, end
        if schema == VALUES_SCHEMA:
            v = decode_value(data)
            if v.indicator not in STATION_INDICATORS or v.subject_kind != "device":
                raise InputError(f"not a district input: {v.indicator} of a {v.subject_kind}")
            start, end = to_ms(v.window_start), to_ms(v.window_end)
            return (v.indicator, start, end, v.district), v.subject_id, value_to_dict(v), end
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(str(exc)) from exc
    raise InputError(f"unknown schema {schema!r}")


def cell_key(key: CellKey) -> bytes:
    family, start, end, district = key
    return CELL_PREFIX + f"{family}|{start}|{end}|{district}".encode()


class MinuteRepeats:
    """Recognises a 1-minute device window (key ``reading_stats_1m|device|metric|start``)
    of the device and minute forwarded last for that device — another metric of the same
    minute, which changes no district state — so the forwarder can drop it. Memory: one
    entry per device."""

    PREFIX: Final = b"reading_stats_1m|"

    def __init__(self) -> None:
        self._last: dict[bytes, bytes] = {}

    def repeated(self, key: bytes) -> bool:
        """Whether ``key`` repeats its device's last minute; remembers the minute otherwise
        (keys of other records are never repeats)."""
        if not key.startswith(self.PREFIX):
            return False
        parts = key.split(b"|")
        device, start = parts[1], parts[-1]
        if self._last.get(device) == start:
            return True
        self._last[device] = start
        return False
