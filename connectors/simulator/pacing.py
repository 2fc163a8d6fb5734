"""Token-bucket pacing for the publisher. Pure: the clock is injected.

Tokens accrue at ``rate`` per second up to ``burst``; each message takes one. The bucket
starts with one token, so a run never opens with a burst. Over any stretch of time T the
bucket hands out at most ``rate * T + burst`` tokens, and if the caller keeps asking it hands
out exactly that many (within one token): the long-run rate is exact whatever the caller's
sleep granularity, because sleeping past the next token only lets tokens pile up (to
``burst``) rather than be lost. That is what keeps 20,000 msg/s accurate when the OS cannot
sleep for 50 µs: the caller publishes what has accrued, then sleeps a millisecond.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_EPSILON = 1e-9


class TokenBucket:
    """Hands out tokens at ``rate`` per second, at most ``burst`` at once."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``burst`` defaults to 20 ms worth of tokens (at least one).

        Raises ``ValueError`` if ``rate`` is not positive or ``burst`` is below one.
        """
        if not rate > 0:
            raise ValueError(f"rate must be > 0 messages/s, got {rate}")
        self.rate = rate
        self.burst = max(1.0, rate * 0.02) if burst is None else burst
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1 token, got {burst}")
        self._clock = clock
        self._tokens = 1.0
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_take(self) -> float:
        """Take a token if one is there and return 0.0; else take nothing and return the
        seconds until one will be."""
        self._refill()
        if self._tokens >= 1.0 - _EPSILON:  # after sleeping the wait we gave, float
            self._tokens -= 1.0  # rounding must not leave the token a hair short
            return 0.0
        return (1.0 - self._tokens) / self.rate
