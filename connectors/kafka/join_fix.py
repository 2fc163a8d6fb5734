"""A correction of kafka-python 3.0.12's consumer-group join, for every group consumer we run.

Found by the sink's rebalance test (tests/integration/test_sink_rebalance.py): a member could
stay "rebalancing" for good after a join that finished between two ``poll()`` calls, fetching
nothing. :func:`patch_kafka_join` explains the bug and the correction; call it before creating
a ``KafkaConsumer`` with a ``group_id`` (the sink and the ingest service do).
"""

from __future__ import annotations

import logging
from typing import Any

from kafka.coordinator.base import BaseCoordinator
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.structs import MemberState

log = logging.getLogger(__name__)


def patch_kafka_join() -> None:
    """Correct kafka-python 3.0.12's group join so that a finished join is never lost.

    The bug: ``BaseCoordinator.join_group_async`` runs JoinGroup + SyncGroup as a task and,
    when the caller's ``poll()`` timeout ends first, leaves the task running for the next
    ``poll()``. If the task finishes in between, the next ``poll()`` either throws its
    assignment away and sends a new JoinGroup (one more rebalance of the whole group), or,
    when nothing asks for a rejoin any more (``need_rejoin()`` is false, e.g. a leader whose
    metadata-triggered rebalance brought its metadata snapshot up to date), never looks at it
    again: the member stays "rebalancing" with heartbeats off and every partition flagged for
    revocation, so it fetches nothing, for good. Seen here as a sink that stopped after a
    rebalance (tests/integration/test_sink_rebalance.py showed it in about 1 run of 15).

    The correction: a finished, unconsumed join task counts as a reason to join
    (``need_rejoin()``), and before joining, a join task that finished successfully is
    completed as the original would have done had it been waiting (member stable, heartbeats
    on, ``on_join_complete`` with its assignment, so the rebalance listener runs); the
    original then rejoins only if something still asks for it. Applied once per process; it
    changes nothing for a consumer whose joins finish while it waits.
    """
    if getattr(BaseCoordinator.join_group_async, "_iocstream_patched", False):
        return
    join_original = BaseCoordinator.join_group_async
    need_original = ConsumerCoordinator.need_rejoin

    async def join_group_async(self: Any, timeout_ms: int | None = None) -> Any:
        task = self._join_task
        if task is not None and task.is_done and task.succeeded():
            self._join_task = None
            with self._lock:
                self.rejoining = False
                self.rejoin_needed = False
                self.state = MemberState.STABLE
                self._enable_heartbeat()
            log.info("kafka group %s: completing a join that finished between polls", self.group_id)
            await self._on_join_complete_async(
                self._generation.generation_id,
                self._generation.member_id,
                self._generation.protocol,
                task.value,
            )
        return await join_original(self, timeout_ms)

    def need_rejoin(self: Any) -> bool:
        task = self._join_task
        if task is not None and task.is_done:
            return True
        return bool(need_original(self))

    join_group_async._iocstream_patched = True  # type: ignore[attr-defined]
    BaseCoordinator.join_group_async = join_group_async
    ConsumerCoordinator.need_rejoin = need_rejoin
