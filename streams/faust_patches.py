"""Two corrections to faust-streaming 0.15.3 that the stream apps need.

1. Seek-to-committed that also repositions partitions without a committed offset.
2. A fetch wait of our choosing instead of the 1.5 s that Faust hard-codes (below).

**Seek-to-committed.** Faust "seeks back to the committed offsets" (``Consumer.perform_seek``)
whenever it may have fetched records it did not deliver — at the end of every rebalance, and
when ``getmany`` runs while flow is stopped or the generation changed mid-batch (records
fetched from aiokafka and then dropped). Its aiokafka driver delegates to
``AIOKafkaConsumer.seek_to_committed``, which seeks only partitions whose committed offset is
greater than 0 (``aiokafka/consumer/consumer.py``: ``if offset and offset > 0``). A partition
of a new consumer group (no commit yet) keeps the fetcher's position, which may already be
past the dropped records: those messages are never delivered, and Faust then commits past
them. Seen here as the first message of a partition lost when readings arrived while the
group rebalanced (the worker's first-offset check, ``streams/agents/readings.py``, stopped
the worker instead of computing wrong windows).

The correction: after seeking to the committed offsets, seek every input partition without
one (``None`` or ``0``) to the beginning of its log, which is what
``auto_offset_reset=earliest`` (the stream apps' setting, ``streams/app.py``) means for a group
without a commit. Table changelog partitions are left alone: Faust's recovery positions them
and never commits them. Messages delivered again are harmless: the agents skip offsets their
state already includes.

**The fetch wait.** Faust's aiokafka driver builds the worker consumer with
``fetch_max_wait_ms=1500``, a literal, not a setting. aiokafka keeps at most one fetch request
in flight per broker, and a request covers only the partitions whose earlier records have all
been handed to the app. So once the app is a little behind, the request in flight covers only
idle partitions (an alerter reads four input topics, a worker its changelogs); the broker
holds it for the full 1.5 s, and no partition is fetched again until it returns. The next
fetch then brings 1.5 s of records, the app is behind again, and the cycle holds: seen in the
``alert_latency`` benchmark as a standing 1.5 s delay at *each* Faust stage of the alerter
(3 s from publish to alert at 20,000 readings/s, the alerter using 42% of a core), which
vanished when the app happened to keep up from the start. The correction sets the wait to
:data:`FETCH_MAX_WAIT_MS` (``apply(fetch_max_wait_ms=...)``): an idle request then costs a few
requests a second, and a stall lasts that long at most.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

CHANGELOG_SUFFIX = "-changelog"  # table changelogs: Faust positions those itself (recovery)
FETCH_MAX_WAIT_MS = 100  # longest a fetch request of idle partitions blocks the next fetch
_ORIGINAL: Any = None
_ORIGINAL_CREATE: Any = None
_fetch_max_wait_ms = FETCH_MAX_WAIT_MS


async def _seek_to_committed_or_beginning(consumer: Any) -> Mapping[Any, Any]:
    """(In the consumer's thread.) Committed offsets after seeking; uncommitted partitions
    are moved to their log start."""
    committed: Mapping[Any, Any] = await consumer.seek_to_committed()
    uncommitted = [
        tp
        for tp, offset in committed.items()
        if (not offset or offset <= 0) and not tp.topic.endswith(CHANGELOG_SUFFIX)
    ]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    return committed


async def _seek_to_committed(self: Any) -> Mapping[Any, Any]:
    """Replacement of ``AIOKafkaConsumerThread.seek_to_committed``."""
    return await self.call_thread(_seek_to_committed_or_beginning, self._ensure_consumer())  # type: ignore[no-any-return]


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    """Replacement of ``AIOKafkaConsumerThread._create_worker_consumer``: Faust's consumer
    with the fetch wait set (read by aiokafka when the consumer starts its fetcher)."""
    consumer = _ORIGINAL_CREATE(self, transport)
    consumer._fetch_max_wait_ms = _fetch_max_wait_ms
    return consumer


def apply(*, fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Install the corrections (idempotent); ``fetch_max_wait_ms`` applies to the consumers
    created from now on."""
    global _ORIGINAL, _ORIGINAL_CREATE, _fetch_max_wait_ms  # noqa: PLW0603 - process-wide
    if fetch_max_wait_ms < 0:
        raise ValueError(f"fetch_max_wait_ms must be >= 0, not {fetch_max_wait_ms}")
    _fetch_max_wait_ms = fetch_max_wait_ms
    cls = faust_aiokafka.AIOKafkaConsumerThread
    if _ORIGINAL is None:
        _ORIGINAL = cls.seek_to_committed
        cls.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
    if _ORIGINAL_CREATE is None:
        _ORIGINAL_CREATE = cls._create_worker_consumer
        cls._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
