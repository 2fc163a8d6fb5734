"""Long Xuyên's air and weather as smooth functions of local time: the city-wide part.

Pure and deterministic: the same instant and seed always give the same ``CityClimate``. Station
effects, noise and spikes are added per device in ``connectors.simulator.model``.

The shapes (what a reader of Long Xuyên's monitoring data would recognise):

* Local time is Asia/Ho_Chi_Minh, UTC+7 all year (Vietnam has had no daylight saving since
  1975, so a fixed offset is exact and needs no tz database).
* PM2.5 follows traffic and the boundary layer: a morning rush peak about 07:30, an evening
  peak about 18:45, raised levels at night while the inversion holds, and the lowest values
  mid-afternoon (about 15:00) when mixing is deepest. The dry season (December to April,
  peak February: crop-residue burning, no rain washout) is about 30 % above the annual mean,
  the wet season (peak August) about 30 % below.
* Temperature has its minimum about 05:30 (about 25 °C) and its maximum about 14:00 (about
  33 °C), with April the hottest month and December-January the coolest.
* Relative humidity falls as temperature rises (about 89 %RH at 25 °C, 68 %RH at 33 °C) and
  is higher in the wet season.
* Day-to-day weather: each local day has its own regional factors (a hazier day, a cooler
  rainy day) drawn from the seed and the date, interpolated from local noon to local noon so
  nothing jumps at midnight.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Final

CITY_TZ: Final = timezone(timedelta(hours=7), "ICT")
"""Asia/Ho_Chi_Minh: UTC+7 with no daylight saving."""

PM25_BASE: Final = 22.0  # µg/m³: city background before the daily and seasonal cycles
T_MIN: Final = 25.0  # °C before dawn (annual mean)
T_MAX: Final = 33.0  # °C at 14:00 (annual mean)
T_MIN_HOUR: Final = 5.5
T_MAX_HOUR: Final = 14.0
YEAR_DAYS: Final = 365.25


@dataclass(frozen=True, slots=True)
class CityClimate:
    """The city-wide state at one instant, shared by every station."""

    pm25: float  # µg/m³ background before station factor, noise and spikes
    temperature: float  # °C before station offset and noise
    humidity_offset: float  # %RH added to ``humidity_for`` (season and the day's weather)


def local_hour(t: datetime) -> float:
    """Hour of the local (UTC+7) day as a float in [0, 24); ``t`` must be aware."""
    local = t.astimezone(CITY_TZ)
    return local.hour + local.minute / 60 + local.second / 3600 + local.microsecond / 3.6e9


def _bump(hour: float, centre: float, width: float) -> float:
    """A Gaussian bump on the 24-hour circle (1 at ``centre``)."""
    d = abs(hour - centre) % 24.0
    d = min(d, 24.0 - d)
    return math.exp(-0.5 * (d / width) ** 2)


def pm_diurnal(hour: float) -> float:
    """PM multiplier over the local day: about 1.6 at 07:30, 1.5 at 18:45, 0.6 at 15:00."""
    return (
        1.0
        + 0.60 * _bump(hour, 7.5, 1.3)  # morning rush
        + 0.45 * _bump(hour, 18.75, 1.6)  # evening rush
        + 0.35 * _bump(hour, 1.5, 3.0)  # night inversion
        - 0.45 * _bump(hour, 15.0, 2.6)  # deep afternoon mixing
    )


def pm_seasonal(day_of_year: float) -> float:
    """PM multiplier over the year: 1.3 in mid-February (dry season), 0.7 in mid-August."""
    return 1.0 + 0.30 * math.cos(2 * math.pi * (day_of_year - 45) / YEAR_DAYS)


def temperature_diurnal(hour: float) -> float:
    """Temperature (°C) over the local day: ``T_MIN`` at 05:30, ``T_MAX`` at 14:00.

    Warming takes 8.5 hours and cooling 15.5, each a half cosine, so the curve is smooth.
    """
    span = T_MAX - T_MIN
    if T_MIN_HOUR <= hour < T_MAX_HOUR:
        phase = (hour - T_MIN_HOUR) / (T_MAX_HOUR - T_MIN_HOUR)
        return T_MIN + span * (1 - math.cos(math.pi * phase)) / 2
    phase = ((hour - T_MAX_HOUR) % 24.0) / (24.0 - (T_MAX_HOUR - T_MIN_HOUR))
    return T_MAX - span * (1 - math.cos(math.pi * phase)) / 2


def temperature_seasonal(day_of_year: float) -> float:
    """°C added over the year: +0.8 in mid-April (hottest), -0.8 in mid-October."""
    return 0.8 * math.cos(2 * math.pi * (day_of_year - 105) / YEAR_DAYS)


def humidity_seasonal(day_of_year: float) -> float:
    """%RH added over the year: +2.5 in mid-September (wet season), -2.5 in mid-March."""
    return 2.5 * math.cos(2 * math.pi * (day_of_year - 260) / YEAR_DAYS)


def humidity_for(temperature: float) -> float:
    """Relative humidity (%RH) that goes with an air temperature, before offsets."""
    return 89.5 - 2.7 * (temperature - T_MIN)


@dataclass(frozen=True, slots=True)
class _DayWeather:
    pm_factor: float
    temperature_offset: float
    humidity_offset: float


@lru_cache(maxsize=4096)
def _day_weather(seed: int, day: date) -> _DayWeather:
    """The regional weather of one local day: deterministic from the seed and the date."""
    rng = random.Random(f"weather:{seed}:{day.isoformat()}")
    return _DayWeather(
        pm_factor=math.exp(rng.gauss(0.0, 0.25)),
        temperature_offset=rng.gauss(0.0, 0.7),
        humidity_offset=rng.gauss(0.0, 2.0),
    )


def _weather_at(t_local: datetime, seed: int) -> _DayWeather:
    """Day weather interpolated linearly between the two nearest local noons."""
    noon = t_local.replace(hour=12, minute=0, second=0, microsecond=0)
    if t_local < noon:
        noon -= timedelta(days=1)
    frac = (t_local - noon) / timedelta(days=1)
    a = _day_weather(seed, noon.date())
    b = _day_weather(seed, (noon + timedelta(days=1)).date())
    return _DayWeather(
        pm_factor=a.pm_factor + (b.pm_factor - a.pm_factor) * frac,
        temperature_offset=a.temperature_offset
        + (b.temperature_offset - a.temperature_offset) * frac,
        humidity_offset=a.humidity_offset + (b.humidity_offset - a.humidity_offset) * frac,
    )


def city_climate(t: datetime, seed: int) -> CityClimate:
    """The city-wide state at ``t`` (aware) for ``seed``; raises ``ValueError`` if naive."""
    if t.tzinfo is None:
        raise ValueError("city_climate needs a timezone-aware datetime")
    t_local = t.astimezone(UTC).astimezone(CITY_TZ)
    hour = local_hour(t_local)
    doy = t_local.timetuple().tm_yday + hour / 24
    weather = _weather_at(t_local, seed)
    return CityClimate(
        pm25=PM25_BASE * pm_diurnal(hour) * pm_seasonal(doy) * weather.pm_factor,
        temperature=temperature_diurnal(hour)
        + temperature_seasonal(doy)
        + weather.temperature_offset,
        humidity_offset=humidity_seasonal(doy) + weather.humidity_offset,
    )
