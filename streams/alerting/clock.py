"""The time a tick may claim: the wall clock, held back while input is still being caught up.

A tick tells clock rules (absence, SLA, keep-firing, no-data) that time has reached ``now``.
If the forwarders still have a backlog (after a restart or an outage of the alerter), the
wall clock is ahead of what the alerter has seen: ticking at the wall clock would declare
every device in the backlog silent. So the tick time is bounded by the inputs' progress:

* an input partition that has forwarded a message and still lags behind its high watermark
  bounds the tick at that message's Kafka timestamp (the time the input has reached);
* an input partition that has forwarded nothing since the last rebalance holds ticks back
  entirely until ``hold`` has passed since the rebalance (it may have a backlog that has not
  been fetched yet; a quiet partition delays clock rules by ``hold`` after a rebalance);
* otherwise the tick is at the wall clock.

Pure: the caller passes every input (no Kafka, no clock read here).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Progress:
    """What a forwarder last did on one input partition: lag after it, and its timestamp."""

    lag: int
    timestamp: datetime


def tick_time(
    wall: datetime,
    assigned: Iterable[Hashable],
    progress: Mapping[Hashable, Progress],
    since_rebalance: timedelta,
    hold: timedelta,
) -> datetime | None:
    """The ``now`` of the next tick, or ``None`` to send no tick yet (module docstring)."""
    bound = wall
    for tp in assigned:
        seen = progress.get(tp)
        if seen is None:
            if since_rebalance < hold:
                return None
            continue
        if seen.lag > 0 and seen.timestamp < bound:
            bound = seen.timestamp
    return bound
