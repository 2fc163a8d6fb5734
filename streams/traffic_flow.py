"""Traffic-segment indicators from closed windows (pure: no Faust, Kafka or clock).

When a traffic counter's rolling 15-minute window closes (``reading_stats_15m_hop5m``, so a
record every 5 minutes), one ``ioc.indicator-values/v1`` record ``traffic_15m`` (subject kind
``device``) is derived from the window's per-metric statistics:

* ``components``: ``vehicle_count`` — the sum of the ``vehicle_count`` readings (one-minute
  counts: ``mean × count``), ``mean_speed_kmh`` (mean of ``speed``), ``occupancy_pct`` (mean of
  ``occupancy``, percent), each present only when the metric was reported;
* ``value``: the congestion level as a number (0 free … 3 jammed), ``level`` its key
  (:func:`streams.traffic.assess_congestion`: occupancy as a fraction, and the speed ratio
  when the segment's free-flow speed is known in ``free_flow_kmh``); ``labels.level_vi``.

A window with no occupancy and no known free-flow speed gives no record (its level cannot be
judged).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from schemas.indicator_values import IndicatorValue
from schemas.indicators import WindowResult
from streams.traffic import assess_congestion

TRAFFIC_15M: Final = "traffic_15m"
WINDOW: Final = "reading_stats_15m_hop5m"
METRICS: Final = frozenset({"vehicle_count", "speed", "occupancy"})


def traffic_values(
    closed: list[WindowResult], free_flow_kmh: Mapping[str, float] | None = None
) -> list[IndicatorValue]:
    """Records for every 15-minute window among one segment's windows that closed together."""
    by_start: dict[object, dict[str, WindowResult]] = {}
    for r in closed:
        if r.indicator == WINDOW and r.metric in METRICS:
            by_start.setdefault(r.window_start, {})[r.metric] = r
    out = []
    for metrics in by_start.values():
        speed = metrics.get("speed")
        occupancy = metrics.get("occupancy")
        if speed is None and occupancy is None:
            continue
        first = next(iter(metrics.values()))
        free_flow = (free_flow_kmh or {}).get(first.device_id)
        components: dict[str, float] = {}
        if "vehicle_count" in metrics:
            counts = metrics["vehicle_count"]
            components["vehicle_count"] = round(counts.mean * counts.count, 6)
        if speed is not None:
            components["mean_speed_kmh"] = speed.mean
        if occupancy is not None:
            components["occupancy_pct"] = occupancy.mean
        congestion = assess_congestion(
            mean_speed_kmh=speed.mean if speed is not None and free_flow else None,
            occupancy=None if occupancy is None else min(max(occupancy.mean / 100, 0.0), 1.0),
            free_flow_kmh=free_flow,
        ) if (occupancy is not None or free_flow) else None  # fmt: skip
        if congestion is None:
            continue
        out.append(
            IndicatorValue(
                indicator=TRAFFIC_15M,
                subject_kind="device",
                subject_id=first.device_id,
                district=first.district,
                window_start=first.window_start,
                window_end=first.window_end,
                value=float(int(congestion.level)),
                level=congestion.level.key,
                components=components,
                labels={"level_vi": congestion.level.label_vi, "ward": first.ward},
            )
        )
    return out
