"""The open windows of one device, in memory (pure data: no Faust, no I/O).

Shared by the three modules that handle a partition's window state: the state machine
(``streams/agents/partition.py``) opens panes and closes them, the derived windows
(``streams/agents/derived_windows.py``) merge closed panes into larger windows, and the state
records (``streams/agents/state_records.py``) store and restore both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.station_aqi import StationHours
from streams.windows import Aggregate, WindowResult


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

    @staticmethod
    def of_reading(reading: dict[str, Any], metric: str, start_ms: int) -> OpenWindow:
        """A new pane of ``metric`` starting at ``start_ms``, its metadata from ``reading``."""
        return OpenWindow(
            metric,
            start_ms,
            _text(reading, "unit"),
            _text(reading, "device_kind"),
            _text(reading, "district"),
            _text(reading, "ward"),
            Aggregate(),
        )

    def result(self, device_id: str, size_ms: int, indicator: str) -> WindowResult:
        """The window's result record, as emitted when it closes."""
        return self.agg.result(
            device_id=device_id,
            device_kind=self.device_kind,
            district=self.district,
            ward=self.ward,
            metric=self.metric,
            unit=self.unit,
            start_ms=self.start_ms,
            size_ms=size_ms,
            indicator=indicator,
        )


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name, "")
    return value if isinstance(value, str) else str(value)


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
