"""Seeded air-quality readings for monitoring stations in Long Xuyên's wards.

Pure: no I/O, no wall clock. ``generate`` is a function of its arguments only:

* The same devices, start, interval, count and seed give exactly the same readings, in the
  same order, in any process (randomness comes from ``random.Random`` seeded with strings,
  which Python hashes with SHA-512, not with the per-process ``hash()``).
* A device's readings depend on its own id, the seed, the start and the interval, never on
  which other devices are generated with it, and a shorter run is a prefix of a longer one.
* Readings come round by round: every device at ``start``, then every device at
  ``start + interval``, and so on. Event times are aware UTC datetimes in whole milliseconds
  (the precision of the wire): ``start`` is truncated to the millisecond.
* Values are rounded to one decimal: PM2.5 and PM10 in µg/m³, temperature in °C, relative
  humidity in %RH. PM2.5 is at least 3.0; PM10 / PM2.5 stays within 1.3-2.0; humidity bends
  smoothly into 59-97 %RH (linear within 63-93), as a saturating sensor does.

What goes into a value: the city-wide cycles of ``connectors.simulator.climate``; a station's
own character, fixed by its id alone so a station keeps it across runs (a kerbside station
is dirtier, a riverside one cooler and damper); AR(1) noise per station and metric, whose
memory (a time constant in minutes) is independent of the interval; and occasional PM
spikes (a fire, a passing construction truck: about one every twelve hours per station, up
to 150 µg/m³, fading over about twenty minutes).

Bad input raises ``ValueError`` with the reason: a naive ``start``, an interval that is not
a positive whole number of milliseconds, a negative count, duplicate device ids.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from connectors.simulator.climate import CityClimate, city_climate, humidity_for

METRICS: Final = ("pm25", "pm10", "temperature", "humidity")
UNITS: Final = {"pm25": "ug/m3", "pm10": "ug/m3", "temperature": "Cel", "humidity": "%RH"}
DISTRICT: Final = "long-xuyen"
KIND: Final = "air_quality"

WARDS: Final = (
    "my-binh",
    "my-long",
    "my-xuyen",
    "my-phuoc",
    "my-quy",
    "dong-xuyen",
    "binh-duc",
    "binh-khanh",
    "my-thanh",
    "my-hoa",
    "my-thoi",
    "my-hoa-hung",
)
"""Long Xuyên's eleven wards (phường) and the river-island commune Mỹ Hòa Hưng, as slugs
(the city's units before the 2025 reorganisation)."""

PM25_FLOOR: Final = 3.0
HUMIDITY_RANGE: Final = (59.0, 97.0)
_HUMIDITY_KNEES: Final = (63.0, 93.0)
_PM10_RATIO_RANGE: Final = (1.35, 1.9)
_SPIKE_PM10_RATIO: Final = 1.85
_SPIKE_MEAN_GAP_S: Final = 12 * 3600.0
_SPIKE_DECAY_S: Final = 20 * 60.0
_SPIKE_RANGE: Final = (40.0, 150.0)

# AR(1) noise: (standard deviation, time constant in seconds) per component.
_NOISE_PM_LOG: Final = (0.18, 45 * 60.0)  # multiplicative, on log PM2.5
_NOISE_RATIO: Final = (0.07, 60 * 60.0)
_NOISE_T: Final = (0.35, 40 * 60.0)
_NOISE_RH: Final = (1.5, 40 * 60.0)


@dataclass(frozen=True, slots=True)
class SimDevice:
    """A simulated station: its MQTT identity and where it stands."""

    device_id: str
    district: str
    ward: str
    kind: str = KIND


@dataclass(frozen=True, slots=True)
class SimReading:
    """Every metric one station reports at one event time (aware UTC)."""

    device_id: str
    district: str
    kind: str
    event_time: datetime
    values: dict[str, float]
    ward: str = ""


def default_devices(n: int) -> list[SimDevice]:
    """Stations ``aq-lx-001`` … in district ``long-xuyen``, wards cycled from ``WARDS``.

    Ids have at least three digits (``aq-lx-1000`` follows ``aq-lx-999``), so a station keeps
    its id whatever ``n`` is. Raises ``ValueError`` if ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"number of devices must be >= 0, got {n}")
    return [SimDevice(f"aq-lx-{i + 1:03d}", DISTRICT, WARDS[i % len(WARDS)]) for i in range(n)]


@dataclass(frozen=True, slots=True)
class _Station:
    """A site's character, from its id alone."""

    pm_factor: float
    pm10_ratio: float
    temperature_offset: float
    humidity_offset: float


def _station(device_id: str) -> _Station:
    rng = random.Random(f"station:{device_id}")
    return _Station(
        pm_factor=rng.uniform(0.8, 1.35),
        pm10_ratio=rng.uniform(1.45, 1.75),
        temperature_offset=rng.uniform(-0.7, 0.7),
        humidity_offset=rng.uniform(-2.5, 2.5),
    )


def _soft_limit(humidity: float) -> float:
    """Identity within the knees, then bending smoothly towards ``HUMIDITY_RANGE``."""
    low, high = _HUMIDITY_KNEES
    if humidity > high:
        room = HUMIDITY_RANGE[1] - high
        return high + room * math.tanh((humidity - high) / room)
    if humidity < low:
        room = low - HUMIDITY_RANGE[0]
        return low - room * math.tanh((low - humidity) / room)
    return humidity


class _Ar1:
    """Stationary AR(1) noise sampled every ``dt`` seconds; starts in its stationary law."""

    __slots__ = ("_innovation", "_phi", "x")

    def __init__(self, rng: random.Random, sigma: float, tau_s: float, dt_s: float) -> None:
        self._phi = math.exp(-dt_s / tau_s)
        self._innovation = sigma * math.sqrt(1.0 - self._phi**2)
        self.x = rng.gauss(0.0, sigma)

    def step(self, rng: random.Random) -> float:
        self.x = self._phi * self.x + rng.gauss(0.0, self._innovation)
        return self.x


class _DeviceState:
    """One station's noise and spike state, with its own random stream."""

    def __init__(self, device: SimDevice, seed: int, dt_s: float) -> None:
        self.device = device
        self.station = _station(device.device_id)
        self.rng = random.Random(f"sim:{seed}:{device.device_id}")
        rng = self.rng
        self.pm = _Ar1(rng, *_NOISE_PM_LOG, dt_s)
        self.ratio = _Ar1(rng, *_NOISE_RATIO, dt_s)
        self.temperature = _Ar1(rng, *_NOISE_T, dt_s)
        self.humidity = _Ar1(rng, *_NOISE_RH, dt_s)
        self.spike = 0.0
        self._spike_decay = math.exp(-dt_s / _SPIKE_DECAY_S)
        self._spike_chance = 1.0 - math.exp(-dt_s / _SPIKE_MEAN_GAP_S)
        self.started = False

    def step(self, t: datetime, climate: CityClimate) -> SimReading:
        rng, st = self.rng, self.station
        if self.started:
            pm_noise = self.pm.step(rng)
            ratio_noise = self.ratio.step(rng)
            t_noise = self.temperature.step(rng)
            rh_noise = self.humidity.step(rng)
            self.spike *= self._spike_decay
        else:  # the first reading uses the stationary initial states
            pm_noise, ratio_noise = self.pm.x, self.ratio.x
            t_noise, rh_noise = self.temperature.x, self.humidity.x
            self.started = True
        if rng.random() < self._spike_chance:
            self.spike += rng.uniform(*_SPIKE_RANGE)

        base = max(PM25_FLOOR, climate.pm25 * st.pm_factor * math.exp(pm_noise))
        ratio = min(max(st.pm10_ratio + ratio_noise, _PM10_RATIO_RANGE[0]), _PM10_RATIO_RANGE[1])
        temperature = climate.temperature + st.temperature_offset + t_noise
        humidity = (
            humidity_for(temperature) + climate.humidity_offset + st.humidity_offset + rh_noise
        )
        humidity = _soft_limit(humidity)
        d = self.device
        return SimReading(
            device_id=d.device_id,
            district=d.district,
            kind=d.kind,
            event_time=t,
            values={
                "pm25": round(base + self.spike, 1),
                "pm10": round(base * ratio + self.spike * _SPIKE_PM10_RATIO, 1),
                "temperature": round(temperature, 1),
                "humidity": round(humidity, 1),
            },
            ward=d.ward,
        )


def _check(
    devices: Sequence[SimDevice], start: datetime, interval: timedelta, count: int | None
) -> datetime:
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (e.g. 2026-11-28T09:00:00+07:00)")
    if interval <= timedelta(0) or interval % timedelta(milliseconds=1):
        raise ValueError(f"interval must be a positive whole number of milliseconds: {interval}")
    if count is not None and count < 0:
        raise ValueError(f"count per device must be >= 0, got {count}")
    ids = [d.device_id for d in devices]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate device ids: {', '.join(dupes)}")
    utc = start.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond - utc.microsecond % 1000)


def generate(
    devices: Sequence[SimDevice],
    start: datetime,
    interval: timedelta,
    count_per_device: int | None,
    seed: int,
) -> Iterator[SimReading]:
    """Readings of ``devices`` every ``interval`` from ``start``: round by round, seeded.

    ``count_per_device=None`` generates forever (the caller stops iterating). Arguments are
    checked when this is called, not when iteration starts; see the module docstring for
    the guarantees and the errors.
    """
    first = _check(devices, start, interval, count_per_device)
    return _rounds(devices, first, interval, count_per_device, seed)


def _rounds(
    devices: Sequence[SimDevice],
    start: datetime,
    interval: timedelta,
    count: int | None,
    seed: int,
) -> Iterator[SimReading]:
    if not devices:
        return
    dt_s = interval.total_seconds()
    states = [_DeviceState(d, seed, dt_s) for d in devices]
    k = 0
    while count is None or k < count:
        t = start + k * interval
        climate = city_climate(t, seed)
        for state in states:
            yield state.step(t, climate)
        k += 1
