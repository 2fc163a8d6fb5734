"""Derived windows of one ``ioc.readings`` partition, and the city indicators derived when they
close (pure: no Faust, no I/O).

:class:`~streams.agents.partition.PartitionState` folds every 1-minute pane it closes into the
derived windows covering it (:meth:`DerivedWindows.fold`; which windows: the specs of
``streams/window_specs.py``, 1 h, hopping, local days), then closes the derived windows the
watermark closes (:meth:`DerivedWindows.close`). Guarantees:

* a derived window ``[s, e)`` closes once, when the closing limit (watermark minus grace)
  reaches ``e``; every pane it covers has closed and been folded in by then (the rules of
  ``streams/window_specs.py``), so its result is final;
* windows close in the order of their end, then device, then (spec, metric, start), and panes
  are folded in the order they close, so the same input gives the same results in the same
  order, bit for bit;
* the city indicators of a device come from its derived windows that close together: VN_AQI of
  an air-quality station (``streams/station_aqi.py``), traffic-flow values
  (``streams/traffic_flow.py``), river-gauge levels and alarms (``streams/gauge_levels.py``,
  only when gauges are configured).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from schemas.indicator_values import IndicatorValue
from streams.agents.device_state import DeviceState, OpenWindow
from streams.gauge_levels import LEVEL_METRIC, GaugeConfig, gauge_values
from streams.station_aqi import POLLUTANTS, StationHours, station_values
from streams.traffic_flow import traffic_values
from streams.window_specs import WindowSpec
from streams.windows import Aggregate, WindowResult

_COVER_CACHE: Final = 1024  # pane starts whose covering derived windows are remembered


class DerivedWindows:
    """The derived-window specs of one partition and the index of its open derived windows
    (the windows themselves live in each device's :attr:`DeviceState.partials`)."""

    __slots__ = ("_covers", "ends", "gauges", "names", "pane_ms", "specs", "station_aqi")

    def __init__(
        self,
        specs: Sequence[WindowSpec],
        pane_ms: int,
        *,
        station_aqi: bool = True,
        gauges: GaugeConfig | None = None,
    ) -> None:
        """``pane_ms``: the size of the panes folded in; ``station_aqi`` and ``gauges``: see
        :class:`~streams.agents.partition.PartitionState`."""
        self.specs = tuple(specs)
        self.names = [spec.name for spec in self.specs]  # by spec index, as stored in records
        self.pane_ms = pane_ms
        self.station_aqi = station_aqi
        self.gauges = gauges
        self.ends: dict[int, set[str]] = {}  # derived window end -> devices with one ending there
        self._covers: dict[int, list[tuple[int, int, int]]] = {}  # see _covering (a cache)

    def fold(self, dev: DeviceState, pane: OpenWindow) -> None:
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
                self.ends.setdefault(end, set()).add(dev.device_id)
            part.agg.merge(pane.agg)

    def close(
        self,
        limit: int,
        devices: dict[str, DeviceState],
        dirty: dict[str, None],
        values: list[IndicatorValue],
    ) -> list[WindowResult]:
        """Close every derived window ending at or before ``limit``: returns their results,
        appends the indicators derived from them to ``values`` and the devices changed to
        ``dirty``."""
        results: list[WindowResult] = []
        names = self.names
        for end in sorted(end for end in self.ends if end <= limit):
            for device_id in sorted(self.ends.pop(end)):
                dev = devices[device_id]
                closed: list[WindowResult] = []
                for pkey in sorted(k for k, w in dev.partials.items() if w.end_ms == end):
                    win = dev.partials.pop(pkey)
                    closed.append(win.result(device_id, end - win.start_ms, names[pkey[0]]))
                results += closed
                if closed:
                    values += self._derive(dev, closed)
                dev.derived_cache = None
                dirty[device_id] = None
        return results

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

    def _covering(self, pane_start: int) -> list[tuple[int, int, int]]:
        """``(spec index, start, end)`` of every derived window covering the pane starting at
        ``pane_start``, in spec order (the same for every device: computed once per pane)."""
        found = self._covers.get(pane_start)
        if found is None:
            if len(self._covers) > _COVER_CACHE:
                self._covers.clear()
            pane_end = pane_start + self.pane_ms
            found = self._covers[pane_start] = [
                (idx, start, end)
                for idx, spec in enumerate(self.specs)
                for start, end in spec.containing(pane_start, pane_end)
            ]
        return found
