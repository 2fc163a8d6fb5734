"""Platform health per district: devices reporting vs expected per window (pure).

A device *reports* in a window when the worker closed at least one of its windows of that
size (``reading_stats_1h`` for the hourly figure), whatever the metric. A device is
*expected* in a window of size ``W`` when the device registry lists it with an expected
reporting interval of at most ``W`` (a device that reports daily is not expected every hour).
Every district of the registry gets a record per window — zero reporting included — so a
silent district is visible. Record (``ioc.indicator-values/v1``): indicator
``devices_reporting_<W>``, subject kind ``district``, ``value`` the share reporting (0..1; 1
when nothing is expected), components ``reporting``, ``expected``, ``silent`` (expected but
not reporting) and ``unexpected`` (reporting, not in the registry for that district), labels
``silent_devices``: up to :data:`MAX_LISTED` silent device ids, comma-separated.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Final

from schemas.indicator_values import IndicatorValue

MAX_LISTED: Final = 20
SOURCE_INDICATOR: Final = "reading_stats_1h"
INDICATOR: Final = "devices_reporting_1h"
WINDOW_S: Final = 3600.0


def expected_devices(
    devices: Iterable[tuple[str, str, float]], window_s: float = WINDOW_S
) -> dict[str, frozenset[str]]:
    """District -> ids of the devices expected in every window of ``window_s`` seconds, from
    ``(device id, district, expected interval s)`` of the registry."""
    out: dict[str, set[str]] = {}
    for device_id, district, interval in devices:
        bucket = out.setdefault(district, set())
        if interval <= window_s:
            bucket.add(device_id)
    return {d: frozenset(ids) for d, ids in out.items()}


def reporting_values(
    expected: Mapping[str, Collection[str]],
    reported: Mapping[str, Collection[str]],
    start: datetime,
    end: datetime,
    revision: int = 0,
) -> list[IndicatorValue]:
    """One record per district (registry districts and any that reported), sorted."""
    out = []
    for district in sorted(set(expected) | set(reported)):
        want = set(expected.get(district, ()))
        seen = set(reported.get(district, ()))
        silent = sorted(want - seen)
        ok = len(want & seen)
        out.append(
            IndicatorValue(
                indicator=INDICATOR,
                subject_kind="district",
                subject_id=district,
                district=district,
                window_start=start,
                window_end=end,
                value=ok / len(want) if want else 1.0,
                components={
                    "reporting": float(ok),
                    "expected": float(len(want)),
                    "silent": float(len(silent)),
                    "unexpected": float(len(seen - want)),
                },
                labels={"silent_devices": ",".join(silent[:MAX_LISTED])},
                revision=revision,
            )
        )
    return out
