"""Replay-safe service-KPI state of one partition of the by-district event topic (pure).

The worker re-keys every service event of ``ioc.events`` by its district onto an internal
topic (``streams/agents/services.py``), so all items of a district, and so all of an
(agency, district)'s KPIs, meet in one partition. A :class:`ServicePartition` is fed that
partition's messages in offset order (:meth:`ServicePartition.apply`): each is one event or an
idle *tick* (:func:`encode_tick`) that only advances the watermark.

Time and emission. The watermark is the greatest event ``time`` (or tick) seen. A minute
boundary ``T`` is *closed* when the watermark reaches ``T + grace``; then every (agency,
district) whose KPIs may have changed at ``T`` is evaluated (:func:`streams.service_kpis.
snapshot`) and each KPI whose value or components differ from the last record emitted for it
is emitted as an ``ioc.indicator-values/v1`` record (subject kind ``agency``, subject id
``<agency>@<district>``, window ``[T - horizon, T)``, or ``[T - 1 min, T)`` for backlog and
overdue). So a record per change and closed minute, never one per event; with
``heartbeat_ms`` every KPI of every (agency, district) is also emitted at each multiple of it
(default hourly), so a dashboard's "latest value" finds quiet agencies within the hour.
"May have changed at ``T``" is known from the items' change points (opened, handled, done,
due, and the moments they leave the 24 h and 30 d windows), so a day of event time costs
evaluations only where something happens.

Before a KPI's first record, a zero (a count of 0 with zero components) counts as unchanged,
so an (agency, district) appears with its first non-zero value. A change applied after some
minutes were closed (an item reassigned to another agency, a late event) counts from the
first minute not yet closed: minutes are evaluated with the items as they are then, each
judged by its event times.

Late events are never dropped (a lost resolution would keep an item in the backlog forever):
an event whose time is before the last closed minute is applied, counted as ``late``, and
changes every later evaluation; minutes already emitted are not revised. A repeated event
(same CloudEvents ``source`` and ``id``, e.g. re-forwarded after a crash) is ignored.

Persistence (records for a changelog-backed table; :meth:`checkpoint`, :meth:`restore`):

* an *item record* per item: its facts, each with the input offset it came from;
* a *KPI record* per (agency, district): the emissions since the previous checkpoint and the
  last one before it, each with the input offset that emitted it;
* a *partition record*: last applied offset, watermark and last closed minute — written last.

Records of a partition are written in order to one changelog partition, so after a crash a
prefix of them survives. :meth:`restore` therefore drops every fact and emission of an offset
after the partition record's: the state is exactly the state after that offset, and replaying
the following input repeats the uninterrupted run's decisions (nothing here reads the wall
clock). An item is forgotten (tombstone) once it is done and no snapshot after the minute
closed at the *previous* checkpoint can see it, so a restore to either checkpoint is sound.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from schemas.events import Event, EventFormatError
from schemas.indicator_values import IndicatorValue
from streams.service_kpis import (
    KINDS,
    FactError,
    Item,
    KpiValue,
    fact_of,
    item_key,
    minute_after,
    snapshot,
    window_of,
)
from streams.window_specs import CITY_TZ, HOUR_MS
from streams.windows import MINUTE_MS, from_ms, to_ms

RECORD_VERSION: Final = 1
PARTITION_PREFIX: Final = b"\x00partition:"
KPI_PREFIX: Final = b"\x00kpi:"
ITEM_PREFIX: Final = b"\x01"
TICK_SCHEMA: Final = "ioc.service-tick/v1"
SEP: Final = "\x1f"

AgencyKey = tuple[str, str]  # (agency, district)
Emission = tuple[int, int, float, dict[str, float]]  # (offset, minute, value, components)


class StateFormatError(ValueError):
    """A stored record cannot be read (corrupt or of an unknown version)."""


def encode_tick(watermark_ms: int) -> bytes:
    """A by-district topic message that only advances the watermark (idle partitions)."""
    return orjson.dumps({"schema": TICK_SCHEMA, "watermark": watermark_ms})


def decode_message(data: bytes) -> tuple[Event | None, int | None]:
    """``(event, None)`` or ``(None, tick watermark)``; raises ``EventFormatError``."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EventFormatError(f"not JSON: {exc}") from exc
    if isinstance(obj, dict) and obj.get("schema") == TICK_SCHEMA:
        wm = obj.get("watermark")
        if type(wm) is not int:
            raise EventFormatError("tick without an integer watermark")
        return None, wm
    return Event.from_dict(obj), None


def subject_id(key: AgencyKey) -> str:
    """The indicator subject of an (agency, district): ``<agency>@<district>`` (the ClickHouse
    key has no district, and one agency slug may serve several districts)."""
    return f"{key[0]}@{key[1]}"


@dataclass(slots=True)
class ServiceOutcome:
    """What one message did, and what the caller must emit."""

    offset: int
    replayed: bool = False  # already applied before a restart: nothing to do
    duplicate: bool = False  # an event already applied to its item
    late: bool = False  # before the last closed minute: applied, minutes not revised
    rejected: str = ""  # why a service event feeds no KPI (dead-letter detail)
    values: list[IndicatorValue] = field(default_factory=list)


class ServicePartition:
    """Items, KPI emissions, watermark and replay bookkeeping of one partition."""

    def __init__(
        self,
        partition: int,
        *,
        grace_ms: int = 0,
        heartbeat_ms: int = HOUR_MS,
        tz: str = CITY_TZ,
    ) -> None:
        if heartbeat_ms < 0 or heartbeat_ms % MINUTE_MS:
            raise ValueError("heartbeat_ms must be a multiple of a minute (0 = off)")
        self.partition = partition
        self.grace_ms = grace_ms
        self.heartbeat_ms = heartbeat_ms
        self.tz = ZoneInfo(tz)
        self.offset = -1
        self.watermark: int | None = None
        self.closed: int | None = None  # last closed minute boundary
        self.items: dict[tuple[str, str], Item] = {}
        self.members: dict[AgencyKey, dict[str, dict[str, Item]]] = {}  # kind -> subject -> item
        self.emitted: dict[AgencyKey, dict[str, list[Emission]]] = {}
        self._pending: list[tuple[int, str, str]] = []  # (minute, agency, district) heap
        self._scheduled: set[tuple[int, str, str]] = set()
        self._dirty_items: set[tuple[str, str]] = set()
        self._dirty_kpis: set[AgencyKey] = set()
        self._saved_offset = -1
        self._saved_closed: int | None = None
        self._purged_at: int | None = None

    # --- applying input ------------------------------------------------------------------------

    def apply(self, offset: int, event: Event | None, tick_ms: int | None = None) -> ServiceOutcome:
        """Apply the message at ``offset``: an event, or a tick watermark. Emits the KPIs of
        every minute the new watermark closes. Never raises for a bad event (``rejected``)."""
        out = ServiceOutcome(offset)
        if offset <= self.offset:
            out.replayed = True
            return out
        times = [tick_ms] if tick_ms is not None else []
        late = False
        if event is not None:
            at = to_ms(event.time)
            times.append(at)
            late = self.closed is not None and at < self.closed
        if times and self.closed is None:  # first time ever: nothing before it is closed
            self.closed = _floor(max(times) - self.grace_ms)
        if event is not None:
            try:
                kind, subject = item_key(event)
                fact = fact_of(event, offset)
            except FactError as exc:
                out.rejected = str(exc)
            else:
                item = self.items.get((kind, subject))
                if item is not None and item.has(fact.event_id):
                    out.duplicate = True
                else:
                    self._add(kind, subject, [fact])
                    out.late = late
        if times:
            wm = max(times) if self.watermark is None else max(self.watermark, *times)
            self.watermark = wm
            out.values = self._close(offset, _floor(wm - self.grace_ms))
        self.offset = offset
        return out

    def _add(self, kind: str, subject: str, facts: Iterable[Any]) -> None:
        key = (kind, subject)
        item = self.items.get(key)
        old = None if item is None else (item.agency, item.district)
        if item is None:
            item = self.items[key] = Item(kind, subject)
        for fact in facts:
            item.add(fact)
        new = (item.agency, item.district)
        if old is not None and old != new:
            self.members[old][kind].pop(subject, None)
            self._schedule(old, [self.closed or 0])  # it left: evaluate the old key soon
        self.members.setdefault(new, {}).setdefault(kind, {})[subject] = item
        self._schedule(new, item.change_points())
        self._dirty_items.add(key)

    def _schedule(self, key: AgencyKey, points: Iterable[int]) -> None:
        floor = None if self.closed is None else self.closed + MINUTE_MS
        for point in points:
            at = minute_after(point)
            if floor is not None and at < floor:
                at = floor
            entry = (at, key[0], key[1])
            if entry not in self._scheduled:
                self._scheduled.add(entry)
                heapq.heappush(self._pending, entry)

    # --- closing minutes -----------------------------------------------------------------------

    def _close(self, offset: int, limit: int) -> list[IndicatorValue]:
        closed = self.closed
        if closed is None or limit <= closed:
            return []
        minutes: dict[int, set[AgencyKey]] = {}
        pending = self._pending
        while pending and pending[0][0] <= limit:
            entry = heapq.heappop(pending)
            self._scheduled.discard(entry)
            minutes.setdefault(entry[0], set()).add((entry[1], entry[2]))
        beats: set[int] = set()
        hb = self.heartbeat_ms
        if hb:
            keys = set(self.members) | set(self.emitted)
            for at in range(closed - closed % hb + hb, limit + 1, hb):
                beats.add(at)
                minutes.setdefault(at, set()).update(keys)
        values: list[IndicatorValue] = []
        for at in sorted(minutes):
            for key in sorted(minutes[at]):
                values += self._evaluate(key, at, offset, force=at in beats)
        self.closed = limit
        return values

    def _kinds(self, key: AgencyKey) -> list[str]:
        present = {k for k, subjects in self.members.get(key, {}).items() if subjects}
        present |= {name.split("_", 1)[0] for name in self.emitted.get(key, {})}
        return [k for k in KINDS if k in present]

    def _evaluate(
        self, key: AgencyKey, at: int, offset: int, *, force: bool
    ) -> list[IndicatorValue]:
        out: list[IndicatorValue] = []
        logs = self.emitted.setdefault(key, {})
        members = self.members.get(key, {})
        for kind in self._kinds(key):
            snap = snapshot(members.get(kind, {}).values(), kind, at, self.tz)
            for name in sorted(snap):
                value, components = snap[name]
                log = logs.get(name)
                if not force and (
                    (log[-1][2], log[-1][3]) == (value, components)
                    if log
                    else value == 0 and not any(components.values())
                ):
                    continue  # unchanged; before any record a zero counts as unchanged
                logs.setdefault(name, []).append((offset, at, value, components))
                self._dirty_kpis.add(key)
                out.append(self._record(key, kind, name, at, (value, components)))
        return out

    def _record(
        self, key: AgencyKey, kind: str, name: str, at: int, kpi: KpiValue
    ) -> IndicatorValue:
        start, end = window_of(name, at)
        return IndicatorValue(
            indicator=name,
            subject_kind="agency",
            subject_id=subject_id(key),
            district=key[1],
            window_start=from_ms(start),
            window_end=from_ms(end),
            value=kpi[0],
            components=kpi[1],
            labels={"agency": key[0], "kind": kind},
        )

    # --- persistence ---------------------------------------------------------------------------

    def checkpoint(self) -> list[tuple[bytes, bytes | None]]:
        """The records to persist now, in order: tombstones (``None``) of forgotten items,
        changed items, changed KPI records, then the partition record; empty when nothing
        was applied since the last checkpoint. Marks them saved."""
        if self.offset == self._saved_offset and not self._dirty_items:
            return []
        records: list[tuple[bytes, bytes | None]] = []
        saved_closed = self._saved_closed
        if saved_closed is not None and saved_closed != self._purged_at:
            self._purged_at = saved_closed
            for key in [k for k, it in self.items.items() if _gone(it, saved_closed)]:
                item = self.items.pop(key)
                self.members[(item.agency, item.district)][item.kind].pop(item.subject, None)
                self._dirty_items.discard(key)
                records.append((item_record_key(*key), None))
        for key in sorted(self._dirty_items):
            records.append((item_record_key(*key), self._item_record(self.items[key])))
        for akey in sorted(self._dirty_kpis):
            logs = self.emitted[akey]
            records.append((kpi_record_key(akey), self._kpi_record(akey, logs)))
            for log in logs.values():
                del log[:-1]  # the last emission is all a later restore needs
        records.append((partition_record_key(self.partition), self._partition_record()))
        self._dirty_items.clear()
        self._dirty_kpis.clear()
        self._saved_offset = self.offset
        self._saved_closed = self.closed
        return records

    def _item_record(self, item: Item) -> bytes:
        facts = [f.to_list() for f in item.facts]
        p = self.partition
        return orjson.dumps(
            {"v": RECORD_VERSION, "p": p, "k": item.kind, "s": item.subject, "f": facts}
        )

    def _kpi_record(self, key: AgencyKey, logs: dict[str, list[Emission]]) -> bytes:
        emitted = {name: [list(e) for e in log] for name, log in logs.items()}
        p = self.partition
        return orjson.dumps({"v": RECORD_VERSION, "p": p, "a": key[0], "d": key[1], "e": emitted})

    def _partition_record(self) -> bytes:
        return orjson.dumps({"v": RECORD_VERSION, "p": self.partition, "o": self.offset,
                             "wm": self.watermark, "c": self.closed})  # fmt: skip

    @classmethod
    def restore(
        cls,
        records: Iterable[tuple[bytes, bytes]],
        *,
        grace_ms: int = 0,
        heartbeat_ms: int = HOUR_MS,
        tz: str = CITY_TZ,
        owned: Collection[int] | None = None,
    ) -> dict[int, ServicePartition]:
        """Rebuild the partitions found in stored records (only ``owned`` ones when given),
        as they were after their partition record's offset. Raises ``StateFormatError``."""
        from streams.service_kpis import Fact

        by_partition: dict[int, list[tuple[bytes, dict[str, Any]]]] = {}
        for key, value in records:
            try:
                obj = orjson.loads(value)
                if not isinstance(obj, dict) or obj.get("v") != RECORD_VERSION:
                    raise ValueError(f"unknown record version {obj!r:.40}")
                p = int(obj["p"])
            except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
                raise StateFormatError(f"unreadable state record {key!r}: {exc}") from exc
            if owned is None or p in owned:
                by_partition.setdefault(p, []).append((key, obj))
        states: dict[int, ServicePartition] = {}
        for p, entries in by_partition.items():
            st = states[p] = cls(p, grace_ms=grace_ms, heartbeat_ms=heartbeat_ms, tz=tz)
            try:
                for key, obj in entries:
                    if key.startswith(PARTITION_PREFIX):
                        st.offset = st._saved_offset = int(obj["o"])
                        st.watermark = _opt_int(obj["wm"])
                        st.closed = st._saved_closed = _opt_int(obj["c"])
                for key, obj in entries:
                    if key.startswith(ITEM_PREFIX):
                        facts = [Fact.from_list(f) for f in obj["f"]]
                        kept = [f for f in facts if f.offset <= st.offset]
                        if kept:
                            st._add(str(obj["k"]), str(obj["s"]), kept)
                    elif key.startswith(KPI_PREFIX):
                        akey = (str(obj["a"]), str(obj["d"]))
                        logs: dict[str, list[Emission]] = {}
                        for name, entries_ in obj["e"].items():
                            kept_e = [e for e in entries_ if int(e[0]) <= st.offset]
                            if kept_e:
                                o, at, v, comps = kept_e[-1]
                                comps_ = {str(k): float(x) for k, x in comps.items()}
                                logs[str(name)] = [(int(o), int(at), float(v), comps_)]
                        if logs:
                            st.emitted[akey] = logs
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise StateFormatError(f"unreadable state record of partition {p}: {exc}") from exc
            st._dirty_items.clear()
        return states


def _floor(ms: int) -> int:
    return ms - ms % MINUTE_MS


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _gone(item: Item, closed: int) -> bool:
    horizon = item.horizon()
    return horizon is not None and horizon < closed


def item_record_key(kind: str, subject: str) -> bytes:
    return ITEM_PREFIX + f"{kind}{SEP}{subject}".encode()


def kpi_record_key(key: AgencyKey) -> bytes:
    return KPI_PREFIX + f"{key[0]}{SEP}{key[1]}".encode()


def partition_record_key(partition: int) -> bytes:
    return PARTITION_PREFIX + str(partition).encode("ascii")
