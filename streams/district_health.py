"""Platform health per district: devices reporting vs expected per window (pure).

A device *reports* in a minute when the worker closed at least one of its 1-minute windows
(``reading_stats_1m``, whatever the metric) for that minute, and in a larger window when it
reports in at least one of the window's minutes — so the families agree: a device reporting
in a minute reports in every window, of any family, that holds the minute. A device is *expected*
in a window of size ``W`` when the device registry lists it with an expected reporting
interval of at most ``W`` (a device that reports every 10 minutes is expected in every
15-minute window and every hour, not in every minute).

Window families (:func:`health_families`), the same as the device windows of the worker
(``streams/window_specs.py``): 1-minute tumbling (``devices_reporting_1m``), the configured
hopping windows (``IOC_WORKER_HOPPING``, default ``300/60,900/300``: ``devices_reporting_5m_hop1m``
and ``devices_reporting_15m_hop5m``) and 1-hour tumbling (``devices_reporting_1h``). Windows are
aligned on the epoch like the device windows (a window starts at a multiple of its hop), so a
local day in Asia/Ho_Chi_Minh (UTC+7) is covered by whole windows of every family.

Every district of the registry gets a record per window — zero reporting included — so a
silent district is visible. Record (``ioc.indicator-values/v1``): indicator
``devices_reporting_<W>[_hop<H>]``, subject kind ``district``, ``value`` the share reporting
(0..1; 1 when nothing is expected), components ``reporting``, ``expected``, ``silent``
(expected but not reporting) and ``unexpected`` (reporting, not expected in that district and
window), labels ``silent_devices``: up to :data:`MAX_LISTED` silent device ids,
comma-separated.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from schemas.indicator_values import IndicatorValue
from streams.window_specs import HOUR_MS, Hopping, duration_label, parse_hopping
from streams.windows import MINUTE_MS

MAX_LISTED: Final = 20
SOURCE_INDICATOR: Final = "reading_stats_1m"
PREFIX: Final = "devices_reporting_"
INDICATOR: Final = "devices_reporting_1h"
WINDOW_S: Final = 3600.0
DEFAULT_HOPPING: Final = "300/60,900/300"


@dataclass(frozen=True, slots=True)
class HealthFamily:
    """One family of devices-reporting windows and the devices expected in each window.

    ``window`` is a :class:`~streams.window_specs.Hopping` spec on 1-minute panes (its
    ``name`` is the indicator); ``expected`` maps every registry district (devices or not)
    to the ids expected in each window of the family."""

    window: Hopping
    expected: Mapping[str, frozenset[str]]

    @property
    def name(self) -> str:
        return self.window.name

    def containing(self, minute_start: int) -> list[tuple[int, int]]:
        """``(start, end)`` ms of every window of the family holding the minute."""
        return self.window.containing(minute_start, minute_start + MINUTE_MS)

    def ending(self, after: int, upto: int) -> list[tuple[int, int]]:
        """``(start, end)`` ms of every window with ``after < end <= upto``, by end."""
        size, hop = self.window.size_ms, self.window.hop_ms
        end = (after - size) // hop * hop + hop + size  # the first window end after ``after``
        out = []
        while end <= upto:
            out.append((end - size, end))
            end += hop
        return out


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


def health_windows(hopping: str = DEFAULT_HOPPING) -> list[Hopping]:
    """The window specs: 1-minute tumbling, the hopping windows of ``hopping`` (``SIZE/HOP``
    seconds, comma-separated, as ``IOC_WORKER_HOPPING``) and 1-hour tumbling, named
    ``devices_reporting_...``; a hopping entry equal to another family is kept once. Raises
    ``ValueError`` for malformed ``hopping``."""
    specs = [Hopping(MINUTE_MS, MINUTE_MS, MINUTE_MS, f"{PREFIX}1m")]
    for spec in parse_hopping(hopping, MINUTE_MS):
        label = PREFIX + duration_label(spec.size_ms)
        if spec.hop_ms != spec.size_ms:
            label += f"_hop{duration_label(spec.hop_ms)}"
        specs.append(Hopping(spec.size_ms, spec.hop_ms, MINUTE_MS, label))
    specs.append(Hopping(HOUR_MS, HOUR_MS, MINUTE_MS, INDICATOR))
    out: list[Hopping] = []
    for spec in specs:
        if all((s.size_ms, s.hop_ms) != (spec.size_ms, spec.hop_ms) for s in out):
            out.append(spec)
    return out


def health_families(
    devices: Iterable[tuple[str, str, float]], hopping: str = DEFAULT_HOPPING
) -> tuple[HealthFamily, ...]:
    """Every family of :func:`health_windows` with its expected devices, from ``(device id,
    district, expected interval s)`` of the registry."""
    registry = list(devices)
    return tuple(
        HealthFamily(spec, expected_devices(registry, spec.size_ms / 1000))
        for spec in health_windows(hopping)
    )


def reporting_value(
    indicator: str,
    district: str,
    expected: Collection[str],
    reported: Collection[str],
    start: datetime,
    end: datetime,
    revision: int = 0,
) -> IndicatorValue:
    """The record of one district and window."""
    want = set(expected)
    seen = set(reported)
    silent = sorted(want - seen)
    ok = len(want & seen)
    return IndicatorValue(
        indicator=indicator,
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


def reporting_values(
    expected: Mapping[str, Collection[str]],
    reported: Mapping[str, Collection[str]],
    start: datetime,
    end: datetime,
    revision: int = 0,
    indicator: str = INDICATOR,
) -> list[IndicatorValue]:
    """One record per district (registry districts and any that reported), sorted."""
    return [
        reporting_value(
            indicator,
            district,
            expected.get(district, ()),
            reported.get(district, ()),
            start,
            end,
            revision,
        )
        for district in sorted(set(expected) | set(reported))
    ]
