"""Inhibition and per-receiver rate limits (pure, time passed in).

**Inhibition** (Alertmanager's): an alert is inhibited while some *other* open alert (firing
or no-data; silenced ones count too, as in Alertmanager) matches an inhibit rule's ``source``
matchers, the alert matches its ``target`` matchers, and both have equal values for every
``equal`` label. Example: a flood alarm at a station mutes that gauge's sensor warnings.

**Rate limit**: a token bucket per receiver holding at most ``count`` tokens, refilled
continuously at ``count`` per ``per``. A notification that finds no token is not sent *yet*:
its group stays due and goes out when a token is back (nothing is dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from connectors.notify.config import InhibitRule, RateLimit
from connectors.notify.labels import matches_all


def inhibited(
    labels: Mapping[str, str],
    fingerprint: str,
    sources: Iterable[tuple[str, Mapping[str, str]]],
    rules: Iterable[InhibitRule],
) -> bool:
    """Whether an alert (``labels``, ``fingerprint``) is inhibited by a firing source.

    ``sources``: ``(fingerprint, labels)`` of the firing alerts.
    """
    rules = [r for r in rules if matches_all(r.target, labels)]
    if not rules:
        return False
    for fp, src in sources:
        if fp == fingerprint:
            continue
        for rule in rules:
            if matches_all(rule.source, src) and all(
                src.get(n, "") == labels.get(n, "") for n in rule.equal
            ):
                return True
    return False


class TokenBucket:
    """``count`` per ``per``, burst ``count``; ``take(now)`` spends a token if there is one."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.tokens = float(limit.count)
        self.at: datetime | None = None

    def _refill(self, now: datetime) -> None:
        if self.at is not None and now > self.at:
            rate = self.limit.count / self.limit.per.total_seconds()
            self.tokens = min(
                float(self.limit.count), self.tokens + (now - self.at).total_seconds() * rate
            )
        if self.at is None or now > self.at:
            self.at = now

    def available(self, now: datetime) -> bool:
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: datetime) -> bool:
        """Spend one token at ``now``; ``False`` (nothing spent) if none is available."""
        if not self.available(now):
            return False
        self.tokens -= 1.0
        return True
