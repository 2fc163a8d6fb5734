"""Derived window specs built from closed 1-minute panes (pure: no Faust, Kafka or clock).

The worker aggregates each reading into exactly one *pane*: its 1-minute tumbling window
(``streams/windows.py``). Every larger window — tumbling 1 h, hopping 5 and 15 minutes,
calendar days in the city's time zone — is the merge (:meth:`Aggregate.merge`) of the panes it
covers, folded in when each pane closes. That keeps the per-reading cost at one aggregate
update whatever windows are configured.

Rules (``P`` is the pane size, ``G`` the grace period, both in ms):

* Every derived window's bounds are multiples of ``P`` (checked when a spec is built), so a
  pane lies entirely inside or entirely outside any derived window.
* A derived window ``[s, e)`` closes when the watermark reaches ``e + G``, like a pane. Its last
  pane ends at or before ``e`` and therefore has closed by then: the merged result is final.
* A reading whose pane is closed is late for every window (each window holding it ends at or
  after the pane's end), and a reading whose pane is open is admitted to all of them.
* Panes are merged in the order they close (by end, then device, then metric), so the same
  input always gives bit-identical results.

A calendar day is ``[local 00:00, next local 00:00)`` in ``tz`` — VN_AQI's 01:00–24:00 day
counts the hours *ending* 01:00 … 24:00, i.e. the readings of that local date. Its
``window_start`` on the wire is the UTC instant of local midnight (17:00Z the day before in
Asia/Ho_Chi_Minh).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final, Protocol
from zoneinfo import ZoneInfo

from streams.windows import MINUTE_MS, from_ms, to_ms

HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS
CITY_TZ: Final = "Asia/Ho_Chi_Minh"


class WindowSpec(Protocol):
    """A family of derived windows; ``name`` is the indicator id of its records."""

    @property
    def name(self) -> str: ...

    def containing(self, pane_start: int, pane_end: int) -> list[tuple[int, int]]:
        """``(start, end)`` in ms of every window of this family that covers the pane."""
        ...


def duration_label(ms: int) -> str:
    """``60000`` -> ``"1m"``, ``3600000`` -> ``"1h"``, ``86400000`` -> ``"1d"``, else seconds."""
    for unit, size in (("d", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True, slots=True)
class Hopping:
    """Windows of ``size_ms`` starting every ``hop_ms`` (tumbling when ``hop_ms == size_ms``)."""

    size_ms: int
    hop_ms: int
    pane_ms: int = MINUTE_MS
    label: str = ""

    def __post_init__(self) -> None:
        if self.pane_ms <= 0 or self.hop_ms <= 0 or self.size_ms <= 0:
            raise ValueError("window size, hop and pane must be positive")
        if self.size_ms % self.pane_ms or self.hop_ms % self.pane_ms:
            raise ValueError(
                f"window size {self.size_ms} ms and hop {self.hop_ms} ms must be multiples "
                f"of the {self.pane_ms} ms pane"
            )
        if self.hop_ms > self.size_ms:
            raise ValueError("hop must not exceed the window size (readings would be lost)")

    @property
    def name(self) -> str:
        return self.label or f"reading_stats_{duration_label(self.size_ms)}"

    def containing(self, pane_start: int, pane_end: int) -> list[tuple[int, int]]:
        hop, size = self.hop_ms, self.size_ms
        last = pane_start - pane_start % hop  # latest window start at or before the pane
        out = []
        start = last
        while start + size >= pane_end:
            out.append((start, start + size))
            start -= hop
        out.reverse()
        return out


def tumbling(size_ms: int, pane_ms: int = MINUTE_MS) -> Hopping:
    """Tumbling windows of ``size_ms`` (a :class:`Hopping` whose hop is its size)."""
    return Hopping(size_ms, size_ms, pane_ms)


@dataclass(frozen=True, slots=True)
class CalendarDays:
    """Local calendar days in ``tz`` (default Asia/Ho_Chi_Minh), named ``reading_stats_1d``."""

    tz: str = CITY_TZ
    pane_ms: int = MINUTE_MS
    label: str = "reading_stats_1d"
    _cache: dict[int, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.tz)
        except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {self.tz!r}") from exc

    @property
    def name(self) -> str:
        return self.label

    def day_bounds(self, ts_ms: int) -> tuple[int, int]:
        """UTC ms of the local midnight starting the day holding ``ts_ms``, and the next one."""
        zone = ZoneInfo(self.tz)
        local: date = from_ms(ts_ms).astimezone(zone).date()
        start = datetime(local.year, local.month, local.day, tzinfo=zone)
        nxt = local + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
        s, e = to_ms(start), to_ms(end)
        if s % self.pane_ms or e % self.pane_ms:
            raise ValueError(f"local midnight in {self.tz} is not on a pane boundary")
        return s, e

    def containing(self, pane_start: int, pane_end: int) -> list[tuple[int, int]]:
        hour = pane_start - pane_start % HOUR_MS  # zones change offset on hour boundaries here
        bounds = self._cache.get(hour)
        if bounds is None or not bounds[0] <= pane_start < bounds[1]:
            bounds = self.day_bounds(pane_start)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[hour] = bounds
        return [bounds]


def parse_hopping(text: str, pane_ms: int = MINUTE_MS) -> list[Hopping]:
    """Parse ``"300/60,900/300"`` (size/hop in seconds, comma-separated) into specs.

    Raises ``ValueError`` for malformed text or sizes that are not multiples of the pane.
    """
    specs: list[Hopping] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        size, sep, hop = item.partition("/")
        if not sep:
            raise ValueError(f"hopping window {item!r} is not SIZE/HOP in seconds")
        label = f"reading_stats_{duration_label(int(size) * 1000)}"
        if int(hop) != int(size):
            label += f"_hop{duration_label(int(hop) * 1000)}"
        specs.append(Hopping(int(size) * 1000, int(hop) * 1000, pane_ms, label))
    return specs


def default_specs(
    hopping: str = "300/60,900/300", tz: str = CITY_TZ, pane_ms: int = MINUTE_MS
) -> tuple[WindowSpec, ...]:
    """1-hour tumbling, the hopping windows of ``hopping``, and local calendar days."""
    specs: list[WindowSpec] = [
        Hopping(HOUR_MS, HOUR_MS, pane_ms),
        *parse_hopping(hopping, pane_ms),
        CalendarDays(tz, pane_ms),
    ]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"window specs must have distinct names: {names}")
    return tuple(specs)
