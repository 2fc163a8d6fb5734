"""Tumbling event-time windows with a grace period (pure: no Faust, Kafka or clock).

Times are integer epoch milliseconds inside (exact, fast); aware UTC datetimes at the edges
(:func:`to_ms`, :func:`from_ms`).

Rules, for a window size ``W`` and a grace ``G`` (both in ms):

* A reading at event time ``t`` belongs to the window ``[s, s + W)`` with ``s = t - t mod W``
  (floor, so it also holds before 1970): a reading exactly at a window's end belongs to the
  next window.
* A partition's watermark is the greatest event time seen on it so far (it never goes back).
* The window ``[s, e)`` is *closed* once ``watermark >= e + G``; its result is then final.
* A reading whose window is closed when the reading is processed, judged with the watermark
  *before* that reading, is *late*: it updates nothing and the caller dead-letters it. A
  reading within the grace period (``t < e`` and ``watermark < e + G``) still updates its window.

Because these rules depend only on the order of readings in the partition, processing the same
readings in the same order always gives the same windows, the same late readings and the same
floating-point results, whatever the batching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final

from schemas.indicators import READING_STATS_1M, WindowResult

__all__ = [
    "MINUTE_MS",
    "READING_STATS_1M",
    "Aggregate",
    "TumblingWindows",
    "Watermark",
    "WindowResult",
    "from_ms",
    "to_ms",
    "window_start",
]

MINUTE_MS: Final = 60_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)


def to_ms(value: datetime) -> int:
    """Exact epoch milliseconds of an aware datetime (sub-millisecond part floored).

    Raises ``ValueError`` for a naive datetime.
    """
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not allowed; pass a timezone-aware datetime")
    return (value - _EPOCH) // _ONE_MS


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=ms)


_bound = lru_cache(maxsize=4096)(from_ms)  # window bounds repeat across devices and metrics


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window of size ``size_ms`` holding ``ts_ms`` (floor division)."""
    return ts_ms - ts_ms % size_ms


@dataclass(frozen=True, slots=True)
class TumblingWindows:
    """Window assignment and the closing/lateness rules for one window size and grace."""

    size_ms: int = MINUTE_MS
    grace_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ValueError("window size must be positive")
        if self.grace_ms < 0:
            raise ValueError("grace must be >= 0")

    def start(self, ts_ms: int) -> int:
        """Start of the window holding ``ts_ms``."""
        return ts_ms - ts_ms % self.size_ms

    def end(self, ts_ms: int) -> int:
        """Exclusive end of the window holding ``ts_ms``."""
        return ts_ms - ts_ms % self.size_ms + self.size_ms

    def closes_at(self, end_ms: int) -> int:
        """The watermark at which the window ending at ``end_ms`` closes."""
        return end_ms + self.grace_ms

    def is_closed(self, end_ms: int, watermark_ms: int | None) -> bool:
        """Whether the window ending at ``end_ms`` is closed under ``watermark_ms``."""
        return watermark_ms is not None and watermark_ms >= end_ms + self.grace_ms

    def is_late(self, ts_ms: int, watermark_ms: int | None) -> bool:
        """Whether a reading at ``ts_ms`` is late under the watermark before it."""
        return watermark_ms is not None and watermark_ms >= self.end(ts_ms) + self.grace_ms


class Watermark:
    """Greatest event time seen on one partition (``None`` before the first reading)."""

    __slots__ = ("value_ms",)

    def __init__(self, value_ms: int | None = None) -> None:
        self.value_ms = value_ms

    def observe(self, ts_ms: int) -> bool:
        """Advance to ``ts_ms`` if it is newer; returns whether the watermark moved."""
        if self.value_ms is None or ts_ms > self.value_ms:
            self.value_ms = ts_ms
            return True
        return False

    def __repr__(self) -> str:
        return f"Watermark({self.value_ms!r})"


class Aggregate:
    """Count, sum, mean, min, max, last and population stddev of a stream of values.

    ``add`` is O(1) (Welford's update for the spread); ``merge`` combines two aggregates
    (Chan et al.). ``last`` is the value with the greatest event time; on a tie the value
    added (or merged in) later wins. An empty aggregate has ``count == 0`` and no result.
    """

    __slots__ = ("count", "last", "last_ms", "m2", "max", "mean", "min", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.mean = 0.0  # running mean for the spread; result() reports total / count
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = math.nan
        self.last_ms: int | None = None

    def add(self, value: float, event_ms: int) -> None:
        """Add one value observed at ``event_ms`` (the hot path: plain comparisons, no calls)."""
        n = self.count + 1
        self.count = n
        self.total += value
        mean = self.mean
        delta = value - mean
        mean += delta / n
        self.mean = mean
        self.m2 += delta * (value - mean)
        if value < self.min:  # noqa: PLR1730 - a call to min() costs more on the hot path
            self.min = value
        if value > self.max:  # noqa: PLR1730
            self.max = value
        last_ms = self.last_ms
        if last_ms is None or event_ms >= last_ms:
            self.last = value
            self.last_ms = event_ms

    def merge(self, other: Aggregate) -> None:
        """Fold ``other`` into this aggregate (``other`` is left unchanged)."""
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.total, self.mean, self.m2 = (
                other.count,
                other.total,
                other.mean,
                other.m2,
            )
            self.min, self.max = other.min, other.max
            self.last, self.last_ms = other.last, other.last_ms
            return
        count, other_count = self.count, other.count
        n = count + other_count
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * count * other_count / n
        self.mean += delta * other_count / n
        self.count = n
        self.total += other.total
        if other.min < self.min:  # noqa: PLR1730 - min() costs a call (merged once per pane)
            self.min = other.min
        if other.max > self.max:  # noqa: PLR1730
            self.max = other.max
        last_ms, other_ms = self.last_ms, other.last_ms
        if last_ms is None or (other_ms is not None and other_ms >= last_ms):
            self.last, self.last_ms = other.last, other_ms

    @property
    def stddev(self) -> float:
        """Population standard deviation (0.0 for a single value)."""
        if self.count == 0:
            raise ValueError("empty aggregate has no stddev")
        return math.sqrt(max(self.m2, 0.0) / self.count)

    def result(
        self,
        *,
        device_id: str,
        device_kind: str,
        district: str,
        ward: str,
        metric: str,
        unit: str,
        start_ms: int,
        size_ms: int = MINUTE_MS,
        indicator: str = READING_STATS_1M,
    ) -> WindowResult:
        """The closed window's record. Raises ``ValueError`` for an empty aggregate."""
        if self.count == 0:
            raise ValueError("empty aggregate has no result")
        return WindowResult(
            indicator=indicator,
            device_id=device_id,
            device_kind=device_kind,
            district=district,
            ward=ward,
            metric=metric,
            unit=unit,
            window_start=_bound(start_ms),
            window_end=_bound(start_ms + size_ms),
            count=self.count,
            mean=self.total / self.count,
            min=self.min,
            max=self.max,
            last=self.last,
            stddev=self.stddev,
        )

    def to_list(self) -> list[float | int | None]:
        """Compact, exact state for storage (floats round-trip exactly through JSON)."""
        return [self.count, self.total, self.mean, self.m2, self.min, self.max, self.last,
                self.last_ms]  # fmt: skip

    @classmethod
    def from_list(cls, data: list[float | int | None]) -> Aggregate:
        """Inverse of :meth:`to_list`; raises ``ValueError`` for a malformed list."""
        if len(data) != 8 or data[0] is None or int(data[0]) < 1:
            raise ValueError(f"not a stored aggregate: {data!r}")
        agg = cls()
        count, total, mean, m2, lo, hi, last, last_ms = data
        agg.count = int(count)  # type: ignore[arg-type]
        agg.total, agg.mean, agg.m2 = float(total), float(mean), float(m2)  # type: ignore[arg-type]
        agg.min, agg.max, agg.last = float(lo), float(hi), float(last)  # type: ignore[arg-type]
        agg.last_ms = None if last_ms is None else int(last_ms)
        return agg

    def __repr__(self) -> str:
        return (
            f"Aggregate(count={self.count}, total={self.total!r}, min={self.min!r}, "
            f"max={self.max!r}, last={self.last!r})"
        )
