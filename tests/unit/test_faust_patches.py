"""streams/faust_patches.py: uncommitted input partitions are sought to their log start."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams import faust_patches


class FakeConsumer:
    """Records the seeks an AIOKafkaConsumer would be asked for."""

    def __init__(self, committed: dict[TopicPartition, int | None]) -> None:
        self.committed = committed
        self.beginning: list[TopicPartition] = []

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return dict(self.committed)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.beginning += partitions


def test_uncommitted_input_partitions_go_to_their_log_start() -> None:
    readings = [TopicPartition("ioc.readings", p) for p in range(4)]
    changelog = TopicPartition("app-reading-windows-1m-changelog", 0)
    consumer = FakeConsumer(
        {readings[0]: None, readings[1]: 0, readings[2]: 17, readings[3]: None, changelog: None}
    )
    committed = asyncio.run(faust_patches._seek_to_committed_or_beginning(consumer))
    assert committed[readings[2]] == 17
    # committed ones are left where seek_to_committed put them; changelogs to Faust's recovery
    assert consumer.beginning == [readings[0], readings[1], readings[3]]


def test_nothing_to_seek_when_every_partition_has_a_commit() -> None:
    consumer = FakeConsumer({TopicPartition("ioc.readings", 0): 5})
    asyncio.run(faust_patches._seek_to_committed_or_beginning(consumer))
    assert consumer.beginning == []


def test_apply_replaces_the_driver_method_once() -> None:
    faust_patches.apply()
    patched: Any = faust_aiokafka.AIOKafkaConsumerThread.seek_to_committed
    faust_patches.apply()
    assert faust_aiokafka.AIOKafkaConsumerThread.seek_to_committed is patched
    assert patched is faust_patches._seek_to_committed
