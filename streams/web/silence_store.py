"""The web server's Kafka store of silences: follows the silences topic, writes new versions.

Guarantees: :meth:`SilenceFollower.write` returns only after Kafka acknowledged the record
(``acks=all``, idempotent producer), otherwise it raises (the API answers 503), so a silence is
never silently lost; the store reads the topic from the beginning and follows it, so silences
made by the CLI or another server show here within one poll; a Kafka failure while following is
logged and retried with backoff; an undecodable record is logged and skipped; a tombstone
forgets its silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connectors.metrics import Metrics
from connectors.notify.silences import Silence, SilenceSet, decode_silence, encode_silence
from streams.web.feed import follow_forever

log = logging.getLogger(__name__)


class SilenceFollower:
    """Keeps every silence of the topic (read from the start, followed live) and writes new ones.

    ``ensure_topic`` (run once in a thread at :meth:`start`) creates the topic compacted before
    anything is written to it, so a broker's auto-creation can never make it uncompacted.
    """

    def __init__(
        self,
        topic: str,
        kafka_options: Mapping[str, Any],
        metrics: Metrics,
        ensure_topic: Callable[[], object] | None = None,
    ) -> None:
        self.topic = topic
        self.silences = SilenceSet()
        self.ready = asyncio.Event()
        self._options = dict(kafka_options)
        self._metrics = metrics
        self._ensure = ensure_topic
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    def get(self, silence_id: str) -> Silence | None:
        return self.silences.silences.get(silence_id)

    def all(self) -> list[Silence]:
        return list(self.silences.silences.values())

    async def write(self, silence: Silence) -> None:
        """Produce ``silence`` and wait for Kafka's acknowledgement; then it is readable here."""
        if self._producer is None:
            raise RuntimeError("the silence store is not started")
        await self._producer.send_and_wait(
            self.topic, encode_silence(silence), key=silence.id.encode("utf-8")
        )
        self.silences.put(silence)

    async def start(self) -> None:
        """Ensure the topic, connect the producer, start following (returns before caught up)."""
        if self._ensure is not None:
            await asyncio.to_thread(self._ensure)
        self._producer = AIOKafkaProducer(
            **self._options, acks="all", enable_idempotence=True, client_id="iocstream-web-silences"
        )
        await self._producer.start()
        self._task = asyncio.create_task(self._run(), name="silence-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _run(self) -> None:
        await follow_forever(self._consume, "silence follower")

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="iocstream-web-silences",
        )
        await consumer.start()
        try:
            parts: set[int] = set()
            for _ in range(60):
                await consumer._client.force_metadata_update()  # no public refresh in aiokafka
                parts = consumer.partitions_for_topic(self.topic) or set()
                if parts:
                    break
                log.warning("silences topic %s not found yet; waiting for it", self.topic)
                await asyncio.sleep(1.0)
            if not parts:
                raise RuntimeError(f"topic {self.topic} does not exist")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            while True:
                if not self.ready.is_set() and all(
                    [await consumer.position(tp) >= end for tp, end in ends.items()]
                ):
                    self.ready.set()
                    log.info("silences read from %s: %d known", self.topic, len(self.all()))
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                for tp, records in batches.items():
                    for record in records:
                        self._handle(tp, record.offset, record.key, record.value)
                lag = sum(
                    [
                        max((consumer.highwater(tp) or 0) - await consumer.position(tp), 0)
                        for tp in tps
                    ]
                )
                self._metrics.consumer_lag.labels(component="web", topic=self.topic).set(lag)
        finally:
            await consumer.stop()

    def _handle(
        self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        """Apply one record: a silence version, or a tombstone that forgets its key."""
        if value is None:
            if key is not None:
                self.silences.silences.pop(key.decode("utf-8", "replace"), None)
            return
        try:
            self.silences.put(decode_silence(value))
        except ValueError as exc:
            log.warning("skipping %s[%d]@%d: %s", tp.topic, tp.partition, offset, exc)
