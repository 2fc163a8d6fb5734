"""A correction to faust-streaming 0.15.3 that the stream apps need: seek-to-committed that
also repositions partitions without a committed offset.

The bug: Faust "seeks back to the committed offsets" (``Consumer.perform_seek``) whenever it
may have fetched records it did not deliver — at the end of every rebalance, and when
``getmany`` runs while flow is stopped or the generation changed mid-batch (records fetched
from aiokafka and then dropped). Its aiokafka driver delegates to
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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

CHANGELOG_SUFFIX = "-changelog"  # table changelogs: Faust positions those itself (recovery)
_ORIGINAL: Any = None


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


def apply() -> None:
    """Install the correction (idempotent)."""
    global _ORIGINAL  # noqa: PLW0603 - one process-wide patch, installed once
    cls = faust_aiokafka.AIOKafkaConsumerThread
    if _ORIGINAL is None:
        _ORIGINAL = cls.seek_to_committed
        cls.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
