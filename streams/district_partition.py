"""Replay-safe district aggregation state: district VN_AQI and devices reporting (pure).

The worker forwards, unchanged, the station VN_AQI records (``vn_aqi_1h``/``vn_aqi_1d``,
subject kind ``device``) and the hourly device windows (``reading_stats_1h``) from
``ioc.indicators`` onto one internal partition (``streams/agents/districts.py``): inputs are
hourly or daily, a few per device and hour, so one partition sees every district and one
watermark — the greatest ``window_end`` seen, or an idle tick — closes windows for all of them
(a district that sends nothing still gets its zero).

A *cell* is one window of one family for one district: its inputs by subject (station or
device id). A cell's record is emitted once — when the cell is *complete* (every station or
device the registry expects in that district has reported) or when the watermark reaches the
window's end plus ``grace_ms`` — and again, with ``revision`` + 1, whenever a later input
changes it (a late station, a late device). Cells are kept until the watermark passes their end
plus ``keep_ms``; inputs for a window older than that are counted as ``late`` and dropped.
Families: ``vn_aqi_1h`` and ``vn_aqi_1d`` (``streams/district_aqi.py``; a district without
any station value has no record) and ``devices_reporting_1h`` (``streams/district_health.py``;
every registry district gets a record for every hour the watermark passes).

Persistence as in ``streams/service_partition.py``: a record per changed cell (its inputs and
emissions, each with the input offset it came from) and then the partition record (offset,
watermark); :meth:`DistrictState.restore` drops everything of an offset after the partition
record's, so the restored state is exactly the state after it, and replaying the following
input repeats the uninterrupted run's decisions. Nothing here reads the wall clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from schemas.indicator_values import SCHEMA as VALUES_SCHEMA
from schemas.indicator_values import IndicatorValue, decode_value, encode_value, value_to_dict
from schemas.indicators import SCHEMA as WINDOWS_SCHEMA
from schemas.indicators import decode_indicator
from streams.district_aqi import STATION_INDICATORS, district_aqi
from streams.district_health import INDICATOR as HEALTH
from streams.district_health import SOURCE_INDICATOR, reporting_values
from streams.window_specs import DAY_MS, HOUR_MS
from streams.windows import from_ms, to_ms

RECORD_VERSION: Final = 1
PARTITION_KEY: Final = b"\x00partition"
CELL_PREFIX: Final = b"\x01"
TICK_SCHEMA: Final = "ioc.district-tick/v1"

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
        devices: Mapping[str, Collection[str]],
        *,
        grace_ms: int = 0,
        keep_ms: int = 2 * DAY_MS,
    ) -> None:
        """``stations``/``devices``: district -> ids the registry expects (air-quality
        stations; devices expected every hour)."""
        self.stations = {d: frozenset(s) for d, s in stations.items()}
        self.devices = {d: frozenset(s) for d, s in devices.items()}
        self.grace_ms = grace_ms
        self.keep_ms = keep_ms
        self.offset = -1
        self.watermark: int | None = None
        self.cells: dict[CellKey, Cell] = {}
        self._dirty: set[CellKey] = set()
        self._saved_offset = -1
        self._saved_watermark: int | None = None

    def _limit(self, wm: int | None) -> int | None:
        return None if wm is None else wm - self.grace_ms

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
            if limit is not None and key[2] + self.keep_ms <= limit:
                out.late = True
            else:
                out.values += self._add(offset, key, subject, payload)
        self.watermark = wm
        # the very first input opens the clock at its window's last hour (no health records
        # for hours before the platform saw anything)
        since = self._limit(old) if old is not None else (end - HOUR_MS if key else end)
        out.values += self._close(offset, since, self._limit(wm))
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
        return []

    def _complete(self, key: CellKey, cell: Cell) -> bool:
        family, _, _, district = key
        want = self.devices.get(district) if family == HEALTH else self.stations.get(district)
        return bool(want) and want is not None and want <= cell.inputs.keys()

    def _close(self, offset: int, old: int | None, new: int | None) -> list[IndicatorValue]:
        if new is None or (old is not None and new <= old):
            return []
        keys = [k for k, c in self.cells.items() if not c.emitted and k[2] <= new]
        if old is not None:  # every hour the watermark passed has a health record per district
            first = old - old % HOUR_MS + HOUR_MS
            for end in range(first, new + 1, HOUR_MS):
                for district in self.devices:
                    key = (HEALTH, end - HOUR_MS, end, district)
                    if key not in self.cells:
                        keys.append(key)
        out: list[IndicatorValue] = []
        for key in sorted(set(keys), key=lambda k: (k[2], k[0], k[1], k[3])):
            cell = self.cells.get(key)
            if cell is None:
                cell = self.cells[key] = Cell()
                self._dirty.add(key)
            out += self._emit(offset, key, cell)
        return out

    def _emit(self, offset: int, key: CellKey, cell: Cell) -> list[IndicatorValue]:
        family, start, end, district = key
        revision = cell.emitted[-1][1] + 1 if cell.emitted else 0
        if family == HEALTH:
            current = cell.current()
            want = {district: self.devices.get(district, frozenset())}
            values = reporting_values(want, {district: current.keys()}, from_ms(start),
                                      from_ms(end), revision)  # fmt: skip
            value: IndicatorValue | None = values[0]
        else:
            stations = {s: decode_value(orjson.dumps(p)) for s, p in cell.current().items()}
            expected = len(self.stations.get(district, ()))
            value = district_aqi(district, stations, expected, revision)
        if value is None:
            return []
        fingerprint = encode_value(_with_revision(value, 0))
        if cell.emitted and cell.emitted[-1][2] == fingerprint:
            return []
        cell.emitted.append((offset, revision, fingerprint))
        self._dirty.add(key)
        return [value]

    # --- persistence ---------------------------------------------------------------------------

    def checkpoint(self) -> list[tuple[bytes, bytes | None]]:
        """Records to persist, in order: tombstones of cells older than ``keep_ms`` (judged by
        the previous checkpoint's watermark), changed cells, the partition record."""
        if self.offset == self._saved_offset and not self._dirty:
            return []
        records: list[tuple[bytes, bytes | None]] = []
        limit = self._limit(self._saved_watermark)
        if limit is not None:
            for key in [k for k in self.cells if k[2] + self.keep_ms <= limit]:
                del self.cells[key]
                self._dirty.discard(key)
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
                                                     "wm": wm})))  # fmt: skip
        self._dirty.clear()
        self._saved_offset = self.offset
        self._saved_watermark = wm
        return records

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
                    wm = obj["wm"]
                    self.watermark = self._saved_watermark = None if wm is None else int(wm)
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
                    self.cells[(str(family), int(start), int(end), str(district))] = cell
        except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as exc:
            raise StateFormatError(f"unreadable district state: {exc}") from exc


def _with_revision(value: IndicatorValue, revision: int) -> IndicatorValue:
    obj = value_to_dict(value)
    obj["revision"] = revision
    return decode_value(orjson.dumps(obj))


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
            return (HEALTH, start, end, w.district), w.device_id, 1, end
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
