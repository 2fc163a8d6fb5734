"""Road segment congestion level from mean speed and occupancy (pure, no I/O).

Inputs follow the FIWARE ``TrafficFlowObserved`` model: ``averageVehicleSpeed`` in km/h and
``occupancy`` as a fraction 0..1 of the observation time a vehicle occupied the detector.

Levels (:class:`CongestionLevel`): ``free``, ``moderate``, ``heavy``, ``jammed``.

* **By speed**: the ratio ``r`` of mean speed to the segment's free-flow speed, with the default
  cut-offs taken from the Highway Capacity Manual urban-street level of service by percent of
  base free-flow speed (LOS A–B > 67 %, C > 50–67 %, D–E > 30–50 %, F ≤ 30 %):
  ``r > 0.67`` free, ``0.50 < r ≤ 0.67`` moderate, ``0.30 < r ≤ 0.50`` heavy, ``r ≤ 0.30``
  jammed. A speed above free flow is free.
* **By occupancy** (defaults are common detector practice, unconfirmed for mixed motorbike
  traffic; tune per site): ``< 0.15`` free, ``≥ 0.15`` moderate, ``≥ 0.25`` heavy,
  ``≥ 0.50`` jammed.
* With both signals the **worse** level wins, so a jam seen by one signal is not masked by the
  other (a queue standing over a loop detector reads high occupancy even if the few vehicles
  that do pass are fast).
* The FIWARE ``congested`` flag is ``level >= congested_from`` (default ``heavy``).

Guarantees: thresholds are a frozen :class:`CongestionThresholds` (configurable, validated on
construction; :meth:`CongestionThresholds.from_mapping` reads a config mapping). Bad input —
negative or non-finite speed, occupancy outside 0..1 (pass a fraction, not a percentage),
non-positive free-flow speed, a speed without a free-flow speed, no signal at all — raises
:class:`ValueError` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import IntEnum


class CongestionLevel(IntEnum):
    """Ordered congestion levels: ``FREE < MODERATE < HEAVY < JAMMED``."""

    FREE = 0
    MODERATE = 1
    HEAVY = 2
    JAMMED = 3

    @property
    def key(self) -> str:
        """Stable lower-case name (``"heavy"``) for labels and storage."""
        return self.name.lower()

    @property
    def label_vi(self) -> str:
        """Vietnamese display name."""
        return ("Thông thoáng", "Đông xe", "Ùn ứ", "Ùn tắc")[self.value]


@dataclass(frozen=True, slots=True)
class CongestionThresholds:
    """Cut-offs: a level is reached when ``speed/free_flow <= *_ratio`` or ``occupancy >=
    *_occupancy``. Ratios must strictly decrease and occupancies strictly increase, all in
    (0, 1]; :class:`ValueError` otherwise.
    """

    moderate_ratio: float = 0.67
    heavy_ratio: float = 0.50
    jammed_ratio: float = 0.30
    moderate_occupancy: float = 0.15
    heavy_occupancy: float = 0.25
    jammed_occupancy: float = 0.50
    congested_from: CongestionLevel = CongestionLevel.HEAVY

    def __post_init__(self) -> None:
        ratios = (self.moderate_ratio, self.heavy_ratio, self.jammed_ratio)
        occupancies = (self.moderate_occupancy, self.heavy_occupancy, self.jammed_occupancy)
        for value in (*ratios, *occupancies):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"thresholds must be numbers, got {value!r}")
            if not 0 < value <= 1:
                raise ValueError(f"thresholds must be within (0, 1], got {value!r}")
        if not ratios[0] > ratios[1] > ratios[2]:
            raise ValueError(
                f"speed ratios must strictly decrease (moderate > heavy > jammed), got {ratios}"
            )
        if not occupancies[0] < occupancies[1] < occupancies[2]:
            raise ValueError(
                f"occupancies must strictly increase (moderate < heavy < jammed), got {occupancies}"
            )
        if not isinstance(self.congested_from, CongestionLevel) or self.congested_from == 0:
            raise ValueError("congested_from must be MODERATE, HEAVY or JAMMED")

    @classmethod
    def from_mapping(cls, config: Mapping[str, object]) -> CongestionThresholds:
        """Build from a config mapping (e.g. parsed YAML); unknown keys raise ValueError.

        ``congested_from`` is given by key (``"heavy"``); missing keys keep the defaults.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in config if k not in names)
        if unknown:
            raise ValueError(f"unknown congestion threshold(s) {unknown}; known: {sorted(names)}")
        base = cls()

        def number(name: str) -> float:
            value = config.get(name, getattr(base, name))
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            return float(value)

        levels = {level.key: level for level in CongestionLevel}
        congested_from = config.get("congested_from", base.congested_from.key)
        if not isinstance(congested_from, str) or congested_from not in levels:
            raise ValueError(
                f"congested_from must be one of {sorted(levels)}, got {congested_from!r}"
            )
        return cls(
            moderate_ratio=number("moderate_ratio"),
            heavy_ratio=number("heavy_ratio"),
            jammed_ratio=number("jammed_ratio"),
            moderate_occupancy=number("moderate_occupancy"),
            heavy_occupancy=number("heavy_occupancy"),
            jammed_occupancy=number("jammed_occupancy"),
            congested_from=levels[congested_from],
        )


DEFAULT_THRESHOLDS = CongestionThresholds()


@dataclass(frozen=True, slots=True)
class Congestion:
    """A classified observation: the level, what each signal said, and the FIWARE flag."""

    level: CongestionLevel
    congested: bool
    speed_ratio: float | None
    by_speed: CongestionLevel | None
    by_occupancy: CongestionLevel | None


def _number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def speed_level(
    mean_speed_kmh: float,
    free_flow_kmh: float,
    thresholds: CongestionThresholds = DEFAULT_THRESHOLDS,
) -> CongestionLevel:
    """Level from mean speed relative to free-flow speed (km/h); see the module notes."""
    speed = _number("mean_speed_kmh", mean_speed_kmh)
    free_flow = _number("free_flow_kmh", free_flow_kmh)
    if speed < 0:
        raise ValueError(f"mean_speed_kmh must not be negative, got {speed}")
    if free_flow <= 0:
        raise ValueError(f"free_flow_kmh must be positive, got {free_flow}")
    ratio = speed / free_flow
    if ratio <= thresholds.jammed_ratio:
        return CongestionLevel.JAMMED
    if ratio <= thresholds.heavy_ratio:
        return CongestionLevel.HEAVY
    if ratio <= thresholds.moderate_ratio:
        return CongestionLevel.MODERATE
    return CongestionLevel.FREE


def occupancy_level(
    occupancy: float, thresholds: CongestionThresholds = DEFAULT_THRESHOLDS
) -> CongestionLevel:
    """Level from detector occupancy, a fraction 0..1 (not a percentage)."""
    occ = _number("occupancy", occupancy)
    if not 0 <= occ <= 1:
        raise ValueError(f"occupancy must be a fraction within 0..1, got {occ}")
    if occ >= thresholds.jammed_occupancy:
        return CongestionLevel.JAMMED
    if occ >= thresholds.heavy_occupancy:
        return CongestionLevel.HEAVY
    if occ >= thresholds.moderate_occupancy:
        return CongestionLevel.MODERATE
    return CongestionLevel.FREE


def assess_congestion(
    *,
    mean_speed_kmh: float | None = None,
    occupancy: float | None = None,
    free_flow_kmh: float | None = None,
    thresholds: CongestionThresholds = DEFAULT_THRESHOLDS,
) -> Congestion:
    """Classify one observation from whichever of speed and occupancy is present.

    ``free_flow_kmh`` is required with a speed. Raises :class:`ValueError` when neither signal
    is given (a window with no vehicles still has an occupancy of 0).
    """
    if mean_speed_kmh is None and occupancy is None:
        raise ValueError("need mean_speed_kmh or occupancy to classify congestion")
    by_speed = by_occupancy = None
    ratio = None
    if mean_speed_kmh is not None:
        if free_flow_kmh is None:
            raise ValueError("mean_speed_kmh needs the segment's free_flow_kmh")
        by_speed = speed_level(mean_speed_kmh, free_flow_kmh, thresholds)
        ratio = float(mean_speed_kmh) / float(free_flow_kmh)
    if occupancy is not None:
        by_occupancy = occupancy_level(occupancy, thresholds)
    level = max(x for x in (by_speed, by_occupancy) if x is not None)
    return Congestion(
        level=level,
        congested=level >= thresholds.congested_from,
        speed_ratio=ratio,
        by_speed=by_speed,
        by_occupancy=by_occupancy,
    )


def congestion_level(
    *,
    mean_speed_kmh: float | None = None,
    occupancy: float | None = None,
    free_flow_kmh: float | None = None,
    thresholds: CongestionThresholds = DEFAULT_THRESHOLDS,
) -> CongestionLevel:
    """Shorthand for ``assess_congestion(...).level``."""
    return assess_congestion(
        mean_speed_kmh=mean_speed_kmh,
        occupancy=occupancy,
        free_flow_kmh=free_flow_kmh,
        thresholds=thresholds,
    ).level
