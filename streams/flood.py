"""River gauge indicators: flood alarm level (BĐ I–III), rise rate and period maxima.

Pure functions, no I/O except :func:`load_flood_levels`, which reads the YAML configuration
(default ``deploy/flood_levels.yaml``, the table of Decision 05/2020/QĐ-TTg levels for An Giang).

Guarantees and documented choices:

* Water levels are metres relative to the national datum, as the thresholds are.
* **Alarm level reached** means ``level >= threshold`` ("đạt BĐ"); a station without BĐ II or
  BĐ III thresholds can reach BĐ I at most.
* **Rise rate** is the ordinary least-squares slope of level against time over the samples in
  ``[end − span, end]``, in cm/h (positive = rising). A regression, not the two endpoints, so one
  noisy sample moves it little. It is ``None`` (not enough data) when fewer than
  ``min_samples`` samples fall in the window or they cover less than ``min_coverage`` of the
  span; stale or sparse gauges therefore give no rate rather than a wrong one.
* **Maxima** are grouped by period start in a given timezone (default ICT, UTC+07:00): hours
  are the same in any whole-hour offset; days run from local midnight.
* Bad input — a naive datetime, a non-finite level, a non-positive span — raises
  :class:`ValueError`; a bad configuration raises :class:`FloodConfigError` naming the file and
  the station.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from enum import IntEnum
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Final

import yaml

ICT: Final = timezone(timedelta(hours=7), "ICT")
DEFAULT_FLOOD_LEVELS_PATH: Final = (
    Path(__file__).resolve().parents[1] / "deploy" / "flood_levels.yaml"
)

Sample = tuple[datetime, float]


class FloodConfigError(ValueError):
    """The flood level configuration cannot be read or is inconsistent."""


class AlarmLevel(IntEnum):
    """Flood alarm level reached (mức báo động), ordered: ``NONE < BD1 < BD2 < BD3``."""

    NONE = 0
    BD1 = 1
    BD2 = 2
    BD3 = 3

    @property
    def label_vi(self) -> str:
        """Vietnamese label as bulletins write it (``"BĐ II"``); ``"Dưới BĐ I"`` for NONE."""
        return ("Dưới BĐ I", "BĐ I", "BĐ II", "BĐ III")[self.value]

    @property
    def label_en(self) -> str:
        """English label (``"alarm level II"``); ``"below alarm level I"`` for NONE."""
        return ("below alarm level I", "alarm level I", "alarm level II", "alarm level III")[
            self.value
        ]


_LEVEL_NAMES: Final = {"bd1": AlarmLevel.BD1, "bd2": AlarmLevel.BD2, "bd3": AlarmLevel.BD3}


@dataclass(frozen=True, slots=True)
class GaugeThresholds:
    """Alarm thresholds of one gauge station, metres relative to the national datum.

    ``bd2_m``/``bd3_m`` may be ``None`` (BĐ I only); ``bd3_m`` needs ``bd2_m``; thresholds
    strictly increase. ``unconfirmed`` names levels whose values are best estimates.
    Raises :class:`ValueError` on construction if any of this does not hold.
    """

    station_id: str
    name: str
    bd1_m: float
    bd2_m: float | None = None
    bd3_m: float | None = None
    river: str = ""
    unconfirmed: frozenset[AlarmLevel] = frozenset()
    source: str = ""

    def __post_init__(self) -> None:
        if not self.station_id:
            raise ValueError("station_id must not be empty")
        if self.bd3_m is not None and self.bd2_m is None:
            raise ValueError(f"{self.station_id}: bd3_m given without bd2_m")
        levels = [v for v in (self.bd1_m, self.bd2_m, self.bd3_m) if v is not None]
        for v in levels:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{self.station_id}: thresholds must be finite numbers, got {v!r}")
        if any(b <= a for a, b in pairwise(levels)):
            raise ValueError(f"{self.station_id}: thresholds must strictly increase, got {levels}")
        if AlarmLevel.NONE in self.unconfirmed:
            raise ValueError(f"{self.station_id}: 'unconfirmed' names alarm levels BD1..BD3")

    def thresholds(self) -> tuple[tuple[AlarmLevel, float], ...]:
        """The defined ``(level, metres)`` pairs, lowest first."""
        pairs = (
            (AlarmLevel.BD1, self.bd1_m),
            (AlarmLevel.BD2, self.bd2_m),
            (AlarmLevel.BD3, self.bd3_m),
        )
        return tuple((level, m) for level, m in pairs if m is not None)


def _check_level(level_m: float) -> float:
    if isinstance(level_m, bool) or not isinstance(level_m, int | float):
        raise ValueError(f"water level must be a number in metres, got {level_m!r}")
    if not math.isfinite(level_m):
        raise ValueError(f"water level must be finite, got {level_m!r}")
    return float(level_m)


def alarm_level(level_m: float, thresholds: GaugeThresholds) -> AlarmLevel:
    """The highest alarm level whose threshold ``level_m`` has reached (``>=``)."""
    level = _check_level(level_m)
    reached = AlarmLevel.NONE
    for name, threshold in thresholds.thresholds():
        if level >= threshold:
            reached = name
    return reached


def _checked_samples(samples: Iterable[Sample]) -> list[tuple[datetime, float]]:
    checked: list[tuple[datetime, float]] = []
    for when, level in samples:
        if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"sample times must be timezone-aware datetimes, got {when!r}")
        checked.append((when, _check_level(level)))
    checked.sort(key=lambda s: s[0])
    return checked


def rise_rate_cm_per_h(
    samples: Iterable[Sample],
    *,
    span: timedelta = timedelta(hours=3),
    end: datetime | None = None,
    min_samples: int = 3,
    min_coverage: float = 0.5,
) -> float | None:
    """Rise rate in cm/h (least-squares slope) of ``(time, level_m)`` samples in a window.

    The window is ``[end − span, end]``; ``end`` defaults to the newest sample's time. Samples
    may come in any order; those outside the window are ignored. Returns ``None`` when fewer
    than ``min_samples`` (at least 2) samples are in the window or when they span less than
    ``min_coverage × span`` of time.
    """
    if span <= timedelta(0):
        raise ValueError(f"span must be positive, got {span}")
    if min_samples < 2:
        raise ValueError(f"min_samples must be at least 2, got {min_samples}")
    if not 0 <= min_coverage <= 1:
        raise ValueError(f"min_coverage must be within 0..1, got {min_coverage}")
    if end is not None and end.tzinfo is None:
        raise ValueError("end must be a timezone-aware datetime")
    ordered = _checked_samples(samples)
    if not ordered:
        return None
    window_end = end if end is not None else ordered[-1][0]
    window = [s for s in ordered if window_end - span <= s[0] <= window_end]
    if len(window) < min_samples:
        return None
    covered = window[-1][0] - window[0][0]
    if covered <= timedelta(0) or covered < span * min_coverage:
        return None
    t0 = window[0][0]
    xs = [(t - t0) / timedelta(hours=1) for t, _ in window]
    ys = [level for _, level in window]
    x_mean = sum(xs) / len(xs)
    y_mean = sum(ys) / len(ys)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    sxy = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx * 100.0


def _period_maxima(samples: Iterable[Sample], tz: tzinfo, *, daily: bool) -> dict[datetime, float]:
    maxima: dict[datetime, float] = {}
    for when, level in _checked_samples(samples):
        local = when.astimezone(tz)
        key = local.replace(minute=0, second=0, microsecond=0)
        if daily:
            key = key.replace(hour=0)
        if key not in maxima or level > maxima[key]:
            maxima[key] = level
    return maxima


def hourly_maxima(samples: Iterable[Sample], *, tz: tzinfo = ICT) -> dict[datetime, float]:
    """Maximum level per clock hour, keyed by the hour's start in ``tz``, oldest first."""
    return _period_maxima(samples, tz, daily=False)


def daily_maxima(samples: Iterable[Sample], *, tz: tzinfo = ICT) -> dict[datetime, float]:
    """Maximum level per local day (the tide-driven daily peak), keyed by midnight in ``tz``."""
    return _period_maxima(samples, tz, daily=True)


_STATION_FIELDS: Final = frozenset(
    {"id", "name", "river", "bd1_m", "bd2_m", "bd3_m", "unconfirmed", "source"}
)


def _station(entry: object, where: str) -> GaugeThresholds:
    if not isinstance(entry, dict):
        raise FloodConfigError(f"{where}: each station must be a mapping, got {entry!r}")
    unknown = sorted(str(k) for k in entry if k not in _STATION_FIELDS)
    if unknown:
        raise FloodConfigError(f"{where}: unknown field(s) {unknown}")
    for required in ("id", "name", "bd1_m"):
        if required not in entry:
            raise FloodConfigError(f"{where}: missing field {required!r}")
    station_id, name = entry["id"], entry["name"]
    if not isinstance(station_id, str) or not isinstance(name, str):
        raise FloodConfigError(f"{where}: 'id' and 'name' must be strings")
    where = f"{where} ({station_id})"
    for key in ("bd1_m", "bd2_m", "bd3_m"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise FloodConfigError(f"{where}: {key} must be a number of metres, got {value!r}")
    unconfirmed = entry.get("unconfirmed") or []
    if not isinstance(unconfirmed, list) or any(u not in _LEVEL_NAMES for u in unconfirmed):
        raise FloodConfigError(f"{where}: 'unconfirmed' must be a list among bd1, bd2, bd3")
    try:
        return GaugeThresholds(
            station_id=station_id,
            name=name,
            river=str(entry.get("river") or ""),
            bd1_m=float(entry["bd1_m"]),
            bd2_m=None if entry.get("bd2_m") is None else float(entry["bd2_m"]),
            bd3_m=None if entry.get("bd3_m") is None else float(entry["bd3_m"]),
            unconfirmed=frozenset(_LEVEL_NAMES[u] for u in unconfirmed),
            source=str(entry.get("source") or ""),
        )
    except ValueError as exc:
        raise FloodConfigError(f"{where}: {exc}") from None


def parse_flood_levels(
    document: object, *, source: str = "<document>"
) -> Mapping[str, GaugeThresholds]:
    """Validate a parsed YAML document (``version: 1``) into thresholds keyed by station id.

    Raises :class:`FloodConfigError` (naming ``source`` and the station) for a wrong version,
    a missing or empty station list, unknown fields, duplicate ids or bad thresholds.
    """
    if not isinstance(document, dict):
        raise FloodConfigError(f"{source}: expected a mapping at the top level")
    if document.get("version") != 1:
        raise FloodConfigError(f"{source}: unsupported version {document.get('version')!r}")
    if document.get("unit", "m") != "m":
        raise FloodConfigError(f"{source}: thresholds must be in metres (unit: m)")
    entries = document.get("stations")
    if not isinstance(entries, list) or not entries:
        raise FloodConfigError(f"{source}: 'stations' must be a non-empty list")
    stations: dict[str, GaugeThresholds] = {}
    for i, entry in enumerate(entries):
        station = _station(entry, f"{source}: stations[{i}]")
        if station.station_id in stations:
            raise FloodConfigError(f"{source}: duplicate station id {station.station_id!r}")
        stations[station.station_id] = station
    return MappingProxyType(stations)


def load_flood_levels(
    path: Path | str = DEFAULT_FLOOD_LEVELS_PATH,
) -> Mapping[str, GaugeThresholds]:
    """Read and validate a flood level YAML file; :class:`FloodConfigError` on any problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise FloodConfigError(f"{file}: cannot read flood levels: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FloodConfigError(f"{file}: not valid YAML: {exc}") from None
    return parse_flood_levels(document, source=str(file))
