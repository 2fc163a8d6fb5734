"""The de-duplication memory of ingest: which (source, id) pairs were already published.

CloudEvents makes ``source`` + ``id`` unique per event, so a second event with the same pair
is a copy (a sender's retry, an outbox replayed after an outage, a record read again after an
ingest crash) and is dropped; the first copy wins, even if a later one differs.

:class:`SeenSet` is pure (time is passed in). Guarantees:

* A key added with time ``t`` is remembered at least until ``t + window`` and at most until
  ``t + window + window / slots`` (keys are grouped in ``slots`` time buckets that expire
  whole), unless the memory bound evicts it first.
* At most ``max_keys`` keys are held; adding beyond that evicts the oldest bucket's earliest
  keys one at a time (counted in ``evicted``), so the bound shrinks the effective window
  instead of growing memory. A key takes about 100 bytes (a 128-bit BLAKE2b digest of the
  pair as a Python int in a set, plus its place in its bucket): 1,000,000 keys ≈ 100 MB.
* Two different pairs collide only if their 128-bit digests do (probability ~n²/2¹²⁹).

How ingest fills it, so that a copy is published once even across restarts, is described in
``connectors.ingest.service``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque

log = logging.getLogger(__name__)


def digest(source: str, id_: str) -> int:
    """The 128-bit key of a (source, id) pair (length-prefixed, so no two pairs share it)."""
    raw = f"{len(source)}:{source}\x00{id_}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(raw, digest_size=16).digest(), "big")


class SeenSet:
    """A time-windowed, size-bounded set of (source, id) pairs. Not thread-safe."""

    def __init__(self, window_s: float, max_keys: int, slots: int = 24) -> None:
        """Raises ``ValueError`` unless ``window_s > 0``, ``max_keys >= 1`` and ``slots >= 1``."""
        if not window_s > 0:
            raise ValueError(f"window must be > 0 s, got {window_s}")
        if max_keys < 1 or slots < 1:
            raise ValueError("max_keys and slots must be >= 1")
        self.window_s = float(window_s)
        self.max_keys = max_keys
        self.slot_s = self.window_s / slots
        self._keys: set[int] = set()
        self._buckets: dict[int, deque[int]] = {}
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, pair: tuple[str, str]) -> bool:
        return digest(*pair) in self._keys

    def add(self, source: str, id_: str, at: float) -> bool:
        """Remember the pair as seen at ``at`` (epoch seconds); False if it already was."""
        return self.add_digest(digest(source, id_), at)

    def add_digest(self, key: int, at: float) -> bool:
        """:meth:`add` for a key made by :func:`digest`."""
        if key in self._keys:
            return False
        slot = int(at // self.slot_s)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = deque()
        bucket.append(key)
        self._keys.add(key)
        if len(self._keys) > self.max_keys:
            self._evict_one()
        return True

    def _evict_one(self) -> None:
        oldest = min(self._buckets)
        bucket = self._buckets[oldest]
        self._keys.discard(bucket.popleft())
        if not bucket:
            del self._buckets[oldest]
        if self.evicted % 100_000 == 0:
            log.warning(
                "de-duplication memory full (%d keys): forgetting the oldest keys before their "
                "window ends; raise --dedup-max-keys or shorten --dedup-window-hours",
                self.max_keys,
            )
        self.evicted += 1

    def expire(self, now: float) -> int:
        """Forget buckets wholly older than ``now - window``; returns how many keys went."""
        limit = now - self.window_s
        gone = 0
        for slot in [s for s in self._buckets if (s + 1) * self.slot_s <= limit]:
            bucket = self._buckets.pop(slot)
            self._keys.difference_update(bucket)
            gone += len(bucket)
        self.expired += gone
        return gone

    def oldest(self) -> float | None:
        """Start (epoch seconds) of the oldest bucket held, or None when empty."""
        return min(self._buckets) * self.slot_s if self._buckets else None
