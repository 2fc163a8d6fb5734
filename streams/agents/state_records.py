"""Stored records of the window state of one ``ioc.readings`` partition: encoding, checkpoint
and restore (pure: no Faust, no I/O).

A :class:`~streams.agents.partition.PartitionState` is persisted as small JSON records (bytes)
in a changelog-backed table keyed by device id:

* a *device record* per device (key: the device id, UTF-8): ``o``, the offset of the last input
  message whose readings of this device are included; ``w``, its open panes (``[metric, start,
  unit, device kind, district, ward, *aggregate]``); ``d``, its open derived windows (``[spec
  name, metric, start, end, unit, device kind, district, ward, *aggregate]``); ``x``, the hourly
  means of a station, when it has any;
* a *partition record* per partition (key: :func:`partition_key`): ``o``, the last input offset
  fully processed, and ``wm``, the watermark after it (``null`` before the first reading).

Every record carries ``v`` (the version) and ``p`` (its partition). Guarantees:

* records are written at version :data:`RECORD_VERSION` (2); :func:`restore` reads every
  version in :data:`READABLE_VERSIONS` (1: panes only, no derived windows);
* checkpoint → restore round-trips: restoring the last record per key of everything
  :func:`checkpoint` returned gives, with the same configuration, a state whose records are
  byte-identical and whose outcomes for the following messages are identical (aggregates
  round-trip exactly through JSON);
* each device record is a consistent snapshot carrying its own offset, so writing records after
  every message or once for many messages gives the same recovery guarantees (the replay rules
  are in ``streams/agents/partition.py``);
* :func:`restore` rejects, with :class:`StateFormatError`, a record that is not JSON, has an
  unknown version or a missing or ill-typed field: a corrupt state must stop the worker rather
  than silently lose or double-count readings. It accepts records of partitions it is not asked
  for (``owned``) and skips them, and drops the derived windows of a spec that is no longer
  configured, counting them in ``dropped_partials``.

This module is the persistence half of ``PartitionState``: besides its public attributes it
reads and sets the state's save bookkeeping (``_unsaved``, ``_saved_offset``) and its index of
pane ends (``_ends``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Final

import orjson

from streams.agents.device_state import DeviceState, OpenWindow
from streams.station_aqi import StationHours
from streams.windows import Aggregate, Watermark

if TYPE_CHECKING:
    from streams.agents.partition import PartitionState

PARTITION_KEY_PREFIX: Final = b"\x00partition:"
RECORD_VERSION: Final = 2
READABLE_VERSIONS: Final = frozenset({1, 2})  # v1: 1-minute panes only, no derived windows


class StateFormatError(ValueError):
    """A stored state record cannot be read (corrupt or from an unknown version)."""


def partition_key(partition: int) -> bytes:
    """Table key of the partition record of ``partition``."""
    return PARTITION_KEY_PREFIX + str(partition).encode("ascii")


def checkpoint(state: PartitionState) -> list[tuple[bytes, bytes]]:
    """The records to persist now: every device changed since the last checkpoint, then the
    partition record; empty when nothing was applied since. Marks them saved.

    Writing these records (in order, to the changelog partition of this partition) after every
    message or only every so many messages gives the same recovery guarantees: each device
    record is a consistent snapshot with its own offset (module docstring).
    """
    if state.offset == state._saved_offset and not state._unsaved:
        return []
    records = [(d.encode("utf-8"), device_record(state, d)) for d in state._unsaved]
    records.append((partition_key(state.partition), partition_record(state)))
    state._unsaved.clear()
    state._saved_offset = state.offset
    return records


def device_record(state: PartitionState, device_id: str) -> bytes:
    """The stored record of a device (its open windows and last applied offset)."""
    dev = state.devices[device_id]
    windows = [
        [w.metric, w.start_ms, w.unit, w.device_kind, w.district, w.ward, *w.agg.to_list()]
        for w in dev.windows.values()
    ]
    derived = dev.derived_cache
    if derived is None:
        names = state.derived.names
        derived = dev.derived_cache = orjson.dumps([
            [names[idx], w.metric, w.start_ms, w.end_ms, w.unit, w.device_kind,
             w.district, w.ward, *w.agg.to_list()]
            for (idx, _, _), w in dev.partials.items()
        ])  # fmt: skip
    record: dict[str, Any] = {"v": RECORD_VERSION, "p": state.partition, "o": dev.offset,
                              "w": windows, "d": orjson.Fragment(derived)}  # fmt: skip
    if dev.hours is not None:
        record["x"] = dev.hours.to_obj()
    return orjson.dumps(record)


def partition_record(state: PartitionState) -> bytes:
    """The stored record of the partition (last processed offset and watermark)."""
    return orjson.dumps({"v": RECORD_VERSION, "p": state.partition, "o": state.offset,
                         "wm": state.watermark.value_ms})  # fmt: skip


def restore(
    records: Iterable[tuple[bytes, bytes]],
    new_state: Callable[[int], PartitionState],
    *,
    owned: Collection[int] | None = None,
) -> dict[int, PartitionState]:
    """Rebuild the states of every partition found in stored ``(key, value)`` records (only of
    the partitions in ``owned`` when given; records of others are skipped).

    ``new_state(p)`` makes the empty state of partition ``p`` as configured now; the records are
    loaded into it (its specs decide which derived windows are kept). Raises
    :class:`StateFormatError` for a record it cannot read (module docstring).
    """
    states: dict[int, PartitionState] = {}
    spec_index: dict[int, dict[str, int]] = {}  # by partition: spec name -> index
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
                state = states[p] = new_state(p)
                spec_index[p] = {name: i for i, name in enumerate(state.derived.names)}
            if key.startswith(PARTITION_KEY_PREFIX):
                state.offset = state._saved_offset = int(obj["o"])
                wm = obj["wm"]
                state.watermark = Watermark(None if wm is None else int(wm))
                continue
            _load_device(state, key.decode("utf-8"), obj, spec_index[p])
        except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as exc:
            raise StateFormatError(f"unreadable state record {key!r}: {exc}") from exc
    return states


def _window(key: list[Any], meta: list[Any], aggregate: list[Any], end_ms: int = 0) -> OpenWindow:
    """An open window from its record fields: ``[metric, start]``, ``[unit, device kind,
    district, ward]`` and the aggregate's list."""
    metric, start_ms = key
    unit, kind, district, ward = meta
    return OpenWindow(
        str(metric), int(start_ms), str(unit), str(kind), str(district), str(ward),
        Aggregate.from_list(aggregate), end_ms,
    )  # fmt: skip


def _load_device(
    state: PartitionState, device_id: str, obj: Any, spec_index: dict[str, int]
) -> None:
    """Load one decoded device record into ``state``; raises for a malformed one."""
    dev = DeviceState(device_id, int(obj["o"]))
    pane_ends = state._ends
    for item in obj["w"]:
        win = _window(item[:2], item[2:6], item[6:])
        dev.windows[(win.metric, win.start_ms)] = win
        pane_ends.setdefault(win.start_ms + state.windows.size_ms, set()).add(device_id)
    derived_ends = state.derived.ends
    for item in obj.get("d", ()):
        idx = spec_index.get(str(item[0]))
        if idx is None:
            state.dropped_partials += 1
            continue
        win = _window(item[1:3], item[4:8], item[8:], int(item[3]))
        dev.partials[(idx, win.metric, win.start_ms)] = win
        derived_ends.setdefault(win.end_ms, set()).add(device_id)
    if "x" in obj:
        dev.hours = StationHours.from_obj(obj["x"])
    state.devices[device_id] = dev
