"""streams/faust_patches.py: uncommitted input partitions are sought to their log start."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from connectors.settings import KafkaSettings
from streams import faust_patches
from streams.app import GIL_SWITCH_MS, WorkerSettings, create_app


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


def _consumer_fetch_wait(tmp_path: Path, wait_ms: int) -> int:
    settings = WorkerSettings(app_id="t-fetch-wait", data_dir=tmp_path, fetch_max_wait_ms=wait_ms)
    app = create_app(settings, KafkaSettings(), partitions=1)
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]

    async def build() -> int:
        consumer = thread._create_worker_consumer(app.transport)
        await consumer.stop()  # never started: only marks it closed
        return int(consumer._fetch_max_wait_ms)

    try:
        return asyncio.run(build())
    finally:
        thread.thread_loop.close()
        app.loop.close()


def test_worker_consumer_gets_our_fetch_wait_not_faust_s_1500_ms(tmp_path: Path) -> None:
    """The consumer Faust builds for a worker app carries the configured fetch wait (which
    aiokafka hands to its fetcher at start); without the patch it would be 1,500 ms."""
    try:
        assert _consumer_fetch_wait(tmp_path, 25) == 25
        assert _consumer_fetch_wait(tmp_path, 0) == 0
    finally:
        faust_patches.apply()  # leave the process-wide default behind
    assert _consumer_fetch_wait(tmp_path, 100) == faust_patches.FETCH_MAX_WAIT_MS


def test_a_negative_fetch_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="fetch_max_wait_ms"):
        faust_patches.apply(fetch_max_wait_ms=-1)


def test_stream_apps_shorten_the_gil_switch_interval(tmp_path: Path) -> None:
    """create_app sets the process's switch interval (Faust's consumer thread would otherwise
    wait up to CPython's 5 ms for the GIL after every socket read: see streams/app.py)."""
    before = sys.getswitchinterval()
    try:
        create_app(
            WorkerSettings(app_id="t-gil", data_dir=tmp_path, gil_switch_ms=2.5),
            KafkaSettings(),
            partitions=1,
        )
        assert sys.getswitchinterval() == pytest.approx(0.0025)
        create_app(
            WorkerSettings(app_id="t-gil-2", data_dir=tmp_path), KafkaSettings(), partitions=1
        )
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_MS / 1000)
        assert GIL_SWITCH_MS < 5  # CPython's default, which starves the consumer thread
    finally:
        sys.setswitchinterval(before)
