"""Which notification groups this notifier instance delivers, decided by a Kafka consumer group.

Several notifier processes share the work without a coordinator of their own: each joins one
Kafka consumer group (``IOC_NOTIFY_GROUP_ID``) subscribed to the alerts topic, and Kafka
assigns the topic's partitions among them. An instance *owns* a notification group (route +
``group_by`` values) when the group's key hashes (Kafka's default partitioner,
:func:`group_partition`) to a partition assigned to it. Every instance still reads every alert,
silence and delivered notification (the notification log), so its dispatcher knows every group;
it only *sends* for the groups it owns. When an instance stops or dies, the group rebalances
and the new owner continues from the notification log: what was delivered is not sent again,
and a notification decided but not logged as delivered is decided again with the same
idempotency key (at-least-once, as for a restart).

A handover must not send twice what the previous owner sent: the releasing instance waits
(up to ``RELEASE_WAIT_S``) for its deliveries in flight before its partitions move, and a new
assignment is granted only once the instance has read the notification log up to its end as
of the assignment (:meth:`Ownership.grant`), so every delivery logged before is known.

The membership consumer never reads records: its partitions are paused as soon as they are
assigned, and :meth:`Ownership.keep_alive` polls it (empty) so that it stays in the group.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from connectors.kafka.partitioning import partition_for

log = logging.getLogger(__name__)

GroupId = tuple[str, tuple[tuple[str, str], ...]]  # (route id, group key)
RELEASE_WAIT_S = 10.0  # longest wait for deliveries in flight when partitions are revoked


def group_partition(gid: GroupId, partitions: int) -> int:
    """The partition whose owner delivers the notifications of group ``gid``."""
    route, key = gid
    text = route + "\x1f" + "\x1e".join(f"{k}\x1d{v}" for k, v in key)
    return partition_for(text, partitions)


class _Pause(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: Ownership) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.owner.owned = frozenset()
        self.owner.pending = None
        if self.owner.on_release is not None:
            await self.owner.on_release()
        if revoked:
            released = sorted(tp.partition for tp in revoked)
            log.info("notification groups of partitions %s released", released)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        consumer = self.owner.consumer
        if consumer is not None and assigned:
            consumer.pause(*assigned)
        self.owner.pending = frozenset(tp.partition for tp in assigned)
        self.owner.generation += 1


class Ownership:
    """Membership in the notifiers' consumer group and the groups it makes this one own."""

    def __init__(self, topic: str, partitions: int, group_id: str, options: dict[str, Any]) -> None:
        self.topic = topic
        self.partitions = partitions
        self.group_id = group_id
        self.options = options
        self.owned: frozenset[int] = frozenset()
        self.pending: frozenset[int] | None = None  # assigned, not granted yet
        self.generation = 0  # assignments so far
        self.on_release: Callable[[], Awaitable[None]] | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            **self.options, group_id=self.group_id, enable_auto_commit=False
        )
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_Pause(self))

    async def keep_alive(self) -> None:
        """Poll the membership consumer (returns at once; its partitions are paused)."""
        if self.consumer is not None:
            await self.consumer.getmany(timeout_ms=0)

    def grant(self, generation: int) -> None:
        """Own the partitions of assignment ``generation`` (if it is still the current one)."""
        if self.pending is None or generation != self.generation:
            return
        self.owned, self.pending = self.pending, None
        log.info(
            "delivering the notification groups of partitions %s of %s",
            sorted(self.owned) or "none",
            self.topic,
        )

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()  # leaves the group: the others take over at once
            self.consumer = None
        self.owned = frozenset()

    def owns(self) -> Callable[[GroupId], bool]:
        """A predicate over group ids for :meth:`Dispatcher.due`, for the current assignment."""
        owned, partitions = self.owned, self.partitions
        return lambda gid: group_partition(gid, partitions) in owned


__all__ = ["GroupId", "Ownership", "group_partition"]
