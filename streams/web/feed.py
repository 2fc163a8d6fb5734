"""The alert feed: reads ``ioc.alerts`` into an :class:`~streams.web.book.AlertBook` and fans
new events out to the page's SSE subscribers.

The consumer has no consumer group and commits nothing: at start it assigns itself every
partition of the alerts topic and reads it from the beginning, so the book is rebuilt from the
topic (the topic's retention is the history the page can show). It records the end offsets at
start; :attr:`AlertFeed.ready` is set once it has read up to them, i.e. the book reflects every
alert that existed when the server started. Afterwards every new event is pushed to every
subscriber queue.

Guarantees: a failure of Kafka (or a missing topic) is logged and retried with backoff, never
fatal to the server; an undecodable record is logged (topic, partition, offset) and counted, never
fatal. A subscriber whose queue is full (a stuck browser) is dropped — its stream ends and the
browser's EventSource reconnects and receives a fresh snapshot — so one slow client never
holds memory or slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.metrics import Metrics
from connectors.settings import KafkaSettings
from schemas.alerts import AlertFormatError, decode_event
from streams.web.book import AlertBook, alert_view, event_view

log = logging.getLogger(__name__)


async def follow_forever(consume: Callable[[], Awaitable[None]], what: str) -> None:
    """Run ``consume`` for ever: after a failure (Kafka down, topic missing) log it and start
    over after a backoff of 1 s doubling up to 30 s; cancellation ends it."""
    delay = 1.0
    while True:
        try:
            await consume()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  # any failure: log, back off, retry
            log.error("%s failed (%s); retrying in %.0f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


QUEUE_SIZE: Final = 1000
#: Put in a subscriber queue to end its stream (shutdown or overflow).
CLOSE: Final[dict[str, Any]] = {"type": "close"}


def aiokafka_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments for aiokafka clients (security included)."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap.split(","),
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        opts["sasl_mechanism"] = settings.sasl_mechanism
        opts["sasl_plain_username"] = settings.sasl_username
        opts["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.ssl_cafile)
        if settings.ssl_certfile:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
        opts["ssl_context"] = context
    return opts


class AlertFeed:
    """Background reader of the alerts topic (module docstring)."""

    def __init__(
        self,
        topic: str,
        kafka_options: Mapping[str, Any],
        book: AlertBook,
        metrics: Metrics,
    ) -> None:
        self.topic = topic
        self.book = book
        self.ready = asyncio.Event()
        self._options = dict(kafka_options)
        self._metrics = metrics
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None

    # --- subscribers ---------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A new queue that receives every new event as ``{"type": "alert", ...}``."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._subscribers.add(queue)
        self._metrics.web_sse_clients.set(len(self._subscribers))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)
        self._metrics.web_sse_clients.set(len(self._subscribers))

    def close_subscribers(self) -> None:
        """End every open stream (server shutdown)."""
        for queue in list(self._subscribers):
            self._drop(queue)

    def _drop(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.unsubscribe(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(CLOSE)

    def _broadcast(self, message: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("dropping a slow SSE subscriber (%d messages queued)", QUEUE_SIZE)
                self._drop(queue)

    # --- consumer ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading in the background (returns at once; see :attr:`ready`)."""
        self._task = asyncio.create_task(self._run(), name="alert-feed")

    async def stop(self) -> None:
        self.close_subscribers()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        """Consume for ever; after a failure, log it and start over (the book dedupes)."""
        await follow_forever(self._consume, "alert feed")

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="iocstream-web-feed",
        )
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            log.info(
                "reading %s from the start (%d partitions, %d records at start)",
                self.topic,
                len(partitions),
                sum(ends.values()),
            )
            while True:
                if not self.ready.is_set() and await self._caught_up(consumer, ends):
                    self.ready.set()
                    log.info("alert book ready: %d alerts", len(self.book))
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                for tp, records in batches.items():
                    for record in records:
                        self._handle(tp, record.offset, record.value)
                await self._report_lag(consumer, partitions)
        finally:
            await consumer.stop()

    async def _report_lag(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        lag = 0
        for tp in partitions:
            high = consumer.highwater(tp)
            if high is not None:
                lag += max(high - await consumer.position(tp), 0)
        self._metrics.consumer_lag.labels(component="web", topic=self.topic).set(lag)

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The topic's partitions, waiting (bounded retries) while its metadata is not known."""
        for _ in range(60):
            # aiokafka has no public call that refreshes the consumer's own metadata
            await consumer._client.force_metadata_update()
            ids = consumer.partitions_for_topic(self.topic)
            if ids:
                return [TopicPartition(self.topic, p) for p in sorted(ids)]
            log.warning("topic %s not found yet; waiting for it", self.topic)
            await asyncio.sleep(1.0)
        raise RuntimeError(f"topic {self.topic} does not exist")

    def _handle(self, tp: TopicPartition, offset: int, value: bytes | None) -> None:
        try:
            if value is None:
                raise AlertFormatError("empty record")
            event = decode_event(value)
        except AlertFormatError as exc:
            self._metrics.web_alert_events.labels(outcome="invalid").inc()
            log.warning("skipping %s[%d]@%d: %s", tp.topic, tp.partition, offset, exc)
            return
        if not self.book.apply(event):
            self._metrics.web_alert_events.labels(outcome="duplicate").inc()
            return
        self._metrics.web_alert_events.labels(outcome="applied").inc()
        if self._subscribers:
            self._broadcast(
                {
                    "type": "alert",
                    "event": event_view(event),
                    "alert": alert_view(event.state, event),
                }
            )
