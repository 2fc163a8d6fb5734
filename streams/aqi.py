"""Air quality index maths: VN_AQI (Decision 1459/QĐ-TCMT, 2019) and the US EPA AQI (2024).

Pure functions, no I/O. All concentrations are µg/m³ (the unit VN stations report).

Guarantees and documented choices:

* **Index tables are data.** :data:`VN_AQI` (default) and :data:`US_EPA` are frozen
  :class:`IndexTable` values: breakpoints per ``(pollutant, averaging)`` plus the bands. Pass
  ``table=US_EPA`` to any function to switch. A caller can build its own table the same way.
* **Interpolation** is the decision's formula ``(I_hi − I_lo)/(BP_hi − BP_lo)·(C − BP_lo) + I_lo``
  on the segment whose lower breakpoint is the largest one ``≤ C``.
* **Rounding**: each sub-index is rounded half up to an integer (``42.5 → 43``); the station
  AQI is the largest rounded sub-index. The decision's printed examples do not all follow one
  rule (NO2 118.7 µg/m³ is printed as 60 where half-up gives 59.35 → 59), so results agree
  with them within ±1.
* **Above the top breakpoint** a sub-index is capped at 500. The exception is a scale that
  stops below 500 (O3 8-hour: 400 µg/m³ in VN_AQI, 0.200 ppm in EPA), where the decision says
  to use the 1-hour O3 value only: :func:`daily_aqi` does that, and raises
  :class:`AqiInputError` if no 1-hour value was given.
* **Particulates required**: VN_AQI needs PM2.5 or PM10. Without both, :func:`hourly_aqi` and
  :func:`daily_aqi` raise :class:`AqiInputError` (a clear error rather than a misleading index).
* **Bad input** (unknown pollutant key, negative, NaN or infinite value, non-number) raises
  :class:`AqiInputError`, a :class:`ValueError`. A value of ``None`` means "not measured" and is
  skipped, so the output of :func:`nowcast` can be passed on as is.

US EPA table: PM2.5 (2024 revision, good ends at 9.0 µg/m³) and PM10 in µg/m³. EPA gas
breakpoints are in ppm/ppb; inputs stay in µg/m³ and are converted at 25 °C and 1 atm
(molar volume 24.45 L/mol) before EPA's truncation (PM2.5 0.1, PM10 1, O3 0.001 ppm, NO2 and
SO2 1 ppb). Limitations, on purpose: EPA has no 1-hour CO breakpoints (CO is indexed on
8-hour means), so ``co`` with ``US_EPA`` raises :class:`AqiInputError`; EPA's 1-hour O3 scale
starts at 0.125 ppm, so a lower 1-hour O3 gives no sub-index and is left out of the result;
SO2 above 304 ppb is indexed on the 1-hour value although EPA prescribes 24-hour means there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from types import MappingProxyType
from typing import Final

Rgb = tuple[int, int, int]

AQI_MAX: Final = 500

#: Keys accepted by :func:`hourly_aqi` (PM are NowCast values, gases 1-hour means).
HOURLY_KEYS: Final = ("pm25", "pm10", "o3", "no2", "so2", "co")
#: Keys accepted by :func:`daily_aqi` (``o3`` is the daily max 1-hour, ``o3_8h`` the 8-hour).
DAILY_KEYS: Final = ("pm25", "pm10", "o3", "o3_8h", "no2", "so2", "co")

_PM: Final = frozenset({"pm25", "pm10"})
_ORDER: Final = ("pm25", "pm10", "o3", "no2", "so2", "co")

# key in the input mapping -> (pollutant, averaging) scale in a table
_HOURLY_SCALES: Final = {
    "pm25": ("pm25", "24h"),  # NowCast estimates the 24-hour mean: same breakpoints
    "pm10": ("pm10", "24h"),
    "o3": ("o3", "1h"),
    "no2": ("no2", "1h"),
    "so2": ("so2", "1h"),
    "co": ("co", "1h"),
}
_DAILY_SCALES: Final = {**_HOURLY_SCALES, "o3_8h": ("o3", "8h")}

NOWCAST_HOURS: Final = 12


class AqiInputError(ValueError):
    """Input that no index can be computed from (bad key, bad value, no particulates...)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One breakpoint row: concentrations ``c_lo..c_hi`` (table unit) map to ``i_lo..i_hi``."""

    c_lo: float
    c_hi: float
    i_lo: int
    i_hi: int


@dataclass(frozen=True, slots=True)
class PollutantScale:
    """The breakpoints of one pollutant and averaging period.

    ``per_ugm3`` converts µg/m³ into the table unit (1.0 when the table is in µg/m³);
    ``truncate_decimals`` truncates the converted value before lookup (EPA practice), ``None``
    for no truncation.
    """

    segments: tuple[Segment, ...]
    unit: str = "µg/m³"
    per_ugm3: float = 1.0
    truncate_decimals: int | None = None

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a pollutant scale needs at least one segment")
        previous: Segment | None = None
        for seg in self.segments:
            if not (seg.c_lo < seg.c_hi and 0 <= seg.i_lo < seg.i_hi <= AQI_MAX):
                raise ValueError(f"bad breakpoint segment {seg}")
            if previous is not None and (seg.c_lo < previous.c_hi or seg.i_lo < previous.i_hi):
                raise ValueError(f"segments out of order at {seg}")
            previous = seg


@dataclass(frozen=True, slots=True)
class Band:
    """An AQI band: integer range ``lo..hi``, names and RGB colour."""

    key: str
    lo: int
    hi: int
    name_vi: str
    name_en: str
    colour: Rgb


@dataclass(frozen=True, eq=False)
class IndexTable:
    """A complete index definition: scales by ``(pollutant, averaging)`` and bands."""

    name: str
    scales: Mapping[tuple[str, str], PollutantScale]
    bands: tuple[Band, ...]
    requires_particulates: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", MappingProxyType(dict(self.scales)))
        expected = 0
        for band in self.bands:
            if band.lo != expected or band.hi < band.lo:
                raise ValueError(f"bands of {self.name} must cover 0..{AQI_MAX} without gaps")
            expected = band.hi + 1
        if expected != AQI_MAX + 1:
            raise ValueError(f"bands of {self.name} must end at {AQI_MAX}")

    def __repr__(self) -> str:
        return f"IndexTable({self.name!r})"


@dataclass(frozen=True, slots=True)
class AqiResult:
    """A station AQI.

    ``sub_indices`` maps each pollutant that gave a sub-index (``pm25``, ``pm10``, ``o3``,
    ``no2``, ``so2``, ``co``) to its integer sub-index (rounded half up); in a daily result
    ``o3`` is the O3 sub-index after the 1-hour/8-hour rule. ``aqi`` is the largest of them and
    ``dominant`` its key (ties: larger unrounded value, then the order above). ``band`` is a
    stable key (e.g. ``"poor"``), ``band_vi``/``band_en`` display names, ``colour`` RGB.
    """

    aqi: int
    dominant: str
    sub_indices: Mapping[str, int] = field(hash=False)
    band: str
    band_vi: str
    band_en: str
    colour: Rgb
    table: str


def _rows(breakpoints: Sequence[float], levels: Sequence[int]) -> tuple[Segment, ...]:
    return tuple(
        Segment(breakpoints[i], breakpoints[i + 1], levels[i], levels[i + 1])
        for i in range(len(breakpoints) - 1)
    )


def _epa_rows(rows: Sequence[tuple[float, float, int, int]]) -> tuple[Segment, ...]:
    return tuple(Segment(*row) for row in rows)


_VN_LEVELS: Final = (0, 50, 100, 150, 200, 300, 400, 500)
_MOLAR_VOLUME_L: Final = 24.45  # 25 °C, 1 atm


def _ugm3_to_ppb(molar_mass: float) -> float:
    return _MOLAR_VOLUME_L / molar_mass


_VN_BANDS: Final = (
    Band("good", 0, 50, "Tốt", "Good", (0, 228, 0)),
    Band("moderate", 51, 100, "Trung bình", "Moderate", (255, 255, 0)),
    Band("poor", 101, 150, "Kém", "Poor", (255, 126, 0)),
    Band("bad", 151, 200, "Xấu", "Bad", (255, 0, 0)),
    Band("very_bad", 201, 300, "Rất xấu", "Very bad", (143, 63, 151)),
    Band("hazardous", 301, 500, "Nguy hại", "Hazardous", (126, 0, 35)),
)

# fmt: off
#: Decision 1459/QĐ-TCMT, Table 2: µg/m³ at I = 0, 50, 100, 150, 200, 300, 400, 500.
_VN_BREAKPOINTS: Final = {
    ("o3", "1h"):    (0,   160,   200,   300,   400,   800,   1000,   1200),
    ("o3", "8h"):    (0,   100,   120,   170,   210,   400),
    ("co", "1h"):    (0, 10000, 30000, 45000, 60000, 90000, 120000, 150000),
    ("so2", "1h"):   (0,   125,   350,   550,   800,  1600,   2100,   2630),
    ("no2", "1h"):   (0,   100,   200,   700,  1200,  2350,   3100,   3850),
    ("pm10", "24h"): (0,    50,   150,   250,   350,   420,    500,    600),
    ("pm25", "24h"): (0,    25,    50,    80,   150,   250,    350,    500),
}

VN_AQI: Final = IndexTable(
    name="VN_AQI",
    scales={k: PollutantScale(_rows(bp, _VN_LEVELS)) for k, bp in _VN_BREAKPOINTS.items()},
    bands=_VN_BANDS,
    requires_particulates=True,
)

#: US EPA AQI, Technical Assistance Document EPA-454/B-24-002 (May 2024), Table 6.
US_EPA: Final = IndexTable(
    name="US_EPA",
    scales={
        ("pm25", "24h"): PollutantScale(
            _epa_rows(((0.0, 9.0, 0, 50), (9.1, 35.4, 51, 100), (35.5, 55.4, 101, 150),
                       (55.5, 125.4, 151, 200), (125.5, 225.4, 201, 300),
                       (225.5, 325.4, 301, 500))),
            truncate_decimals=1,
        ),
        ("pm10", "24h"): PollutantScale(
            _epa_rows(((0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150),
                       (255, 354, 151, 200), (355, 424, 201, 300), (425, 604, 301, 500))),
            truncate_decimals=0,
        ),
        ("o3", "8h"): PollutantScale(
            _epa_rows(((0.000, 0.054, 0, 50), (0.055, 0.070, 51, 100), (0.071, 0.085, 101, 150),
                       (0.086, 0.105, 151, 200), (0.106, 0.200, 201, 300))),
            unit="ppm", per_ugm3=_ugm3_to_ppb(48.00) / 1000, truncate_decimals=3,
        ),
        ("o3", "1h"): PollutantScale(
            _epa_rows(((0.125, 0.164, 101, 150), (0.165, 0.204, 151, 200),
                       (0.205, 0.404, 201, 300), (0.405, 0.604, 301, 500))),
            unit="ppm", per_ugm3=_ugm3_to_ppb(48.00) / 1000, truncate_decimals=3,
        ),
        ("no2", "1h"): PollutantScale(
            _epa_rows(((0, 53, 0, 50), (54, 100, 51, 100), (101, 360, 101, 150),
                       (361, 649, 151, 200), (650, 1249, 201, 300), (1250, 2049, 301, 500))),
            unit="ppb", per_ugm3=_ugm3_to_ppb(46.0055), truncate_decimals=0,
        ),
        ("so2", "1h"): PollutantScale(
            _epa_rows(((0, 35, 0, 50), (36, 75, 51, 100), (76, 185, 101, 150),
                       (186, 304, 151, 200), (305, 604, 201, 300), (605, 1004, 301, 500))),
            unit="ppb", per_ugm3=_ugm3_to_ppb(64.066), truncate_decimals=0,
        ),
        ("co", "8h"): PollutantScale(
            _epa_rows(((0.0, 4.4, 0, 50), (4.5, 9.4, 51, 100), (9.5, 12.4, 101, 150),
                       (12.5, 15.4, 151, 200), (15.5, 30.4, 201, 300), (30.5, 50.4, 301, 500))),
            unit="ppm", per_ugm3=_ugm3_to_ppb(28.010) / 1000, truncate_decimals=1,
        ),
    },
    bands=(
        Band("good", 0, 50, "Tốt", "Good", (0, 228, 0)),
        Band("moderate", 51, 100, "Trung bình", "Moderate", (255, 255, 0)),
        Band("unhealthy_for_sensitive_groups", 101, 150, "Kém",
             "Unhealthy for sensitive groups", (255, 126, 0)),
        Band("unhealthy", 151, 200, "Xấu", "Unhealthy", (255, 0, 0)),
        Band("very_unhealthy", 201, 300, "Rất xấu", "Very unhealthy", (143, 63, 151)),
        Band("hazardous", 301, 500, "Nguy hại", "Hazardous", (126, 0, 35)),
    ),
    requires_particulates=False,
)
# fmt: on


def _check_value(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AqiInputError(f"{name}: expected a number in µg/m³, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise AqiInputError(f"{name}: concentration must be finite, got {number!r}")
    if number < 0:
        raise AqiInputError(f"{name}: concentration must not be negative, got {number!r}")
    return number


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves upwards (``42.5 → 43``), tolerant of float noise."""
    return math.floor(round(value, 9) + 0.5)


def _nowcast_hours(hourly_means: Sequence[float | None]) -> list[tuple[int, float]] | None:
    hours = islice(hourly_means, NOWCAST_HOURS)  # islice: a deque cannot be sliced
    values = [None if v is None else _check_value(f"hour c{i + 1}", v) for i, v in enumerate(hours)]
    if sum(v is not None for v in values[:3]) < 2:
        return None
    return [(i, v) for i, v in enumerate(values) if v is not None]


def _weight(present: Sequence[tuple[int, float]]) -> float:
    c_max = max(v for _, v in present)
    return 1.0 if c_max == 0 else max(min(v for _, v in present) / c_max, 0.5)


def nowcast_weight(hourly_means: Sequence[float | None]) -> float | None:
    """The NowCast weight ``w = max(Cmin/Cmax, 1/2)`` (1.0 when ``Cmax`` is 0); same input
    rules, ``None`` and errors as :func:`nowcast`."""
    present = _nowcast_hours(hourly_means)
    return None if present is None else _weight(present)


def nowcast(hourly_means: Sequence[float | None]) -> float | None:
    """NowCast of PM2.5 or PM10 from hourly means, newest first (index 0 = current hour c1).

    Uses the first 12 values (extra ones are ignored); ``None`` marks a missing hour, which
    keeps its place (weight 0) so older hours still get their ``w^(i−1)`` weights.
    Returns ``None`` when fewer than 2 of c1..c3 are present (the decision's data rule).
    ``w* = Cmin/Cmax`` over the available hours, ``w = max(w*, 1/2)``; if ``Cmax`` is 0 the
    NowCast is 0.0. The result is unrounded. Raises :class:`AqiInputError` for a negative,
    NaN, infinite or non-number hour.
    """
    present = _nowcast_hours(hourly_means)
    if present is None:
        return None
    weight = _weight(present)
    numerator = sum(weight**i * v for i, v in present)
    denominator = sum(weight**i for i, _ in present)
    return numerator / denominator


def _truncate(value: float, decimals: int) -> float:
    scale = 10.0**decimals
    return math.floor(round(value * scale, 6)) / scale


def scale_for(pollutant: str, averaging: str, table: IndexTable = VN_AQI) -> PollutantScale:
    """The breakpoints of ``pollutant`` at ``averaging`` in ``table``; AqiInputError if none."""
    try:
        return table.scales[(pollutant, averaging)]
    except KeyError:
        known = sorted(f"{p}/{a}" for p, a in table.scales)
        raise AqiInputError(
            f"table {table.name} has no {averaging} breakpoints for {pollutant}"
            f" (it has: {', '.join(known)})"
        ) from None


def sub_index(
    pollutant: str, concentration: float, *, averaging: str, table: IndexTable = VN_AQI
) -> float | None:
    """Unrounded sub-index of one concentration (µg/m³), or ``None`` when the scale does not
    define one: below its first breakpoint (EPA 1-hour O3 under 0.125 ppm) or above the top of
    a scale that stops below 500 (O3 8-hour). Above the top of any other scale: 500.0.
    """
    scale = scale_for(pollutant, averaging, table)
    c = _check_value(pollutant, concentration) * scale.per_ugm3
    if scale.truncate_decimals is not None:
        c = _truncate(c, scale.truncate_decimals)
    segments = scale.segments
    if c < segments[0].c_lo:
        return None
    top = segments[-1]
    if c > top.c_hi:
        return float(AQI_MAX) if top.i_hi == AQI_MAX else None
    seg = next(s for s in reversed(segments) if s.c_lo <= c)
    if c >= seg.c_hi:  # at the top breakpoint, or in the gap after it (EPA rows)
        return float(seg.i_hi)
    return (seg.i_hi - seg.i_lo) / (seg.c_hi - seg.c_lo) * (c - seg.c_lo) + seg.i_lo


def band_for(aqi: int, table: IndexTable = VN_AQI) -> Band:
    """The band of an integer AQI (0..500) in ``table``; AqiInputError outside that range."""
    for band in table.bands:
        if band.lo <= aqi <= band.hi:
            return band
    raise AqiInputError(f"AQI {aqi!r} is outside 0..{AQI_MAX}")


def _validated(concentrations: Mapping[str, float | None], keys: Sequence[str]) -> dict[str, float]:
    unknown = sorted(str(k) for k in concentrations if k not in keys)
    if unknown:
        raise AqiInputError(f"unknown pollutant key(s) {unknown}; expected among {list(keys)}")
    return {k: _check_value(k, v) for k, v in concentrations.items() if v is not None}


def _result(raw: Mapping[str, float], table: IndexTable) -> AqiResult:
    if not raw:
        raise AqiInputError(f"no pollutant gives a {table.name} sub-index for this input")
    rounded = {k: round_half_up(v) for k, v in raw.items()}
    dominant = max(raw, key=lambda k: (rounded[k], raw[k], -_ORDER.index(k)))
    aqi = rounded[dominant]
    band = band_for(aqi, table)
    ordered: dict[str, int] = {k: rounded[k] for k in _ORDER if k in rounded}
    return AqiResult(
        aqi=aqi,
        dominant=dominant,
        sub_indices=MappingProxyType(ordered),
        band=band.key,
        band_vi=band.name_vi,
        band_en=band.name_en,
        colour=band.colour,
        table=table.name,
    )


def _require_particulates(values: Mapping[str, float], table: IndexTable) -> None:
    if table.requires_particulates and not (_PM & values.keys()):
        raise AqiInputError(
            f"{table.name} needs PM2.5 or PM10 at least (Decision 1459/QĐ-TCMT);"
            f" got only {sorted(values) or 'nothing'}"
        )


def hourly_aqi(concentrations: Mapping[str, float | None], table: IndexTable = VN_AQI) -> AqiResult:
    """Hourly station AQI from µg/m³ values keyed by :data:`HOURLY_KEYS`.

    ``pm25``/``pm10`` are NowCast values (see :func:`nowcast`), ``o3``, ``no2``, ``so2``,
    ``co`` 1-hour means. ``None`` values are skipped. Raises :class:`AqiInputError` for an
    unknown key, a bad value, missing particulates (VN_AQI) or a pollutant the table cannot
    index at this averaging (``co`` with US_EPA).
    """
    values = _validated(concentrations, HOURLY_KEYS)
    _require_particulates(values, table)
    raw: dict[str, float] = {}
    for key, value in values.items():
        pollutant, averaging = _HOURLY_SCALES[key]
        index = sub_index(pollutant, value, averaging=averaging, table=table)
        if index is not None:
            raw[key] = index
    return _result(raw, table)


def daily_aqi(concentrations: Mapping[str, float | None], table: IndexTable = VN_AQI) -> AqiResult:
    """Daily station AQI from µg/m³ values keyed by :data:`DAILY_KEYS`.

    ``pm25``/``pm10``: 24-hour means; ``o3``: daily max 1-hour value; ``o3_8h``: daily max
    8-hour mean; ``no2``, ``so2``, ``co``: daily max 1-hour values. The O3 sub-index (reported
    under ``o3``) is the larger of the 1-hour and 8-hour sub-indices; if the 8-hour value is
    above the top of its scale (400 µg/m³ in VN_AQI) only the 1-hour value is used, and
    :class:`AqiInputError` is raised if it is missing. Other errors as :func:`hourly_aqi`.
    """
    values = _validated(concentrations, DAILY_KEYS)
    _require_particulates(values, table)
    raw: dict[str, float] = {}
    for key, value in values.items():
        if key in ("o3", "o3_8h"):
            continue
        pollutant, averaging = _DAILY_SCALES[key]
        index = sub_index(pollutant, value, averaging=averaging, table=table)
        if index is not None:
            raw[key] = index
    o3 = _daily_o3(values.get("o3"), values.get("o3_8h"), table)
    if o3 is not None:
        raw["o3"] = o3
    return _result(raw, table)


def _daily_o3(one_hour: float | None, eight_hour: float | None, table: IndexTable) -> float | None:
    by_1h = None if one_hour is None else sub_index("o3", one_hour, averaging="1h", table=table)
    if eight_hour is None:
        return by_1h
    by_8h = sub_index("o3", eight_hour, averaging="8h", table=table)
    if by_8h is None:  # above the 8-hour scale: the 1-hour value alone decides
        if one_hour is None:
            raise AqiInputError(
                f"o3_8h {eight_hour} µg/m³ is above the {table.name} 8-hour O3 scale;"
                " the daily max 1-hour O3 ('o3') is required then"
            )
        return by_1h
    return by_8h if by_1h is None else max(by_1h, by_8h)
