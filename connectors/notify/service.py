"""The notifier process: ``ioc.alerts`` + silences in, deliveries out, every attempt logged.

Start-up (so that a restart neither repeats nor loses a notification beyond at-least-once):

1. read the notification log (``ioc.notifications``) from the beginning and restore what was
   *delivered* (or given up) into the :class:`~connectors.notify.dispatch.Dispatcher`;
2. read the silences topic and ``ioc.alerts`` from the beginning up to their current ends
   (``ioc.alerts`` is compaction-friendly: its last message per fingerprint is the latest
   state), sending nothing;
3. then follow both topics live and, every ``IOC_NOTIFY_EVALUATE_INTERVAL_S``, send what the
   dispatcher says is due.

A notification is written to the log as delivered only after the receiver accepted it, so a
crash between delivery and log write re-sends it after the restart with the same idempotency
key; a notification decided but not delivered before the crash is decided again, with the same
key. Every instance reads everything; several instances share the deliveries through a Kafka
consumer group (``connectors/notify/ownership.py``): each sends only for the notification
groups it owns, and takes over the groups of an instance that stopped or died.

Delivery: each notification is its own task, so a slow or failing receiver never delays the
others; up to the receiver's ``max_attempts`` attempts with exponential backoff
(``IOC_NOTIFY_BACKOFF_S`` doubling up to ``IOC_NOTIFY_BACKOFF_MAX_S``). Every attempt is one
record on the log topic (key: idempotency key; value schema ``ioc.notifications/v1``), which
the ClickHouse sink can load into a table (see the README).

Metrics: ``iocstream_notification_attempts_total`` per receiver type and outcome, and every
5 s ``iocstream_consumer_lag_records{component="notifier"}`` for the alerts and silences
topics (a growing lag means notifications fall behind the alert feed).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.metrics import Metrics
from connectors.notify.config import NotifyConfig
from connectors.notify.dispatch import Delivered, Dispatcher, Notification
from connectors.notify.ownership import RELEASE_WAIT_S, Ownership
from connectors.notify.senders import Attempt, Senders
from connectors.notify.silences import decode_silence
from connectors.settings import KafkaSettings
from schemas.alerts import AlertFormatError, decode_event, format_time_us

log = logging.getLogger(__name__)

LOG_SCHEMA: Final = "ioc.notifications/v1"
LAG_REPORT_S: Final = 5.0  # how often the consumer-lag gauges are refreshed


class NotifierStartError(RuntimeError):
    """The notifier cannot start (a topic is missing, Kafka unreachable)."""


class NotifierSettings(BaseSettings):
    """Notifier settings (``IOC_NOTIFY_*``); receiver secrets are separate env variables."""

    model_config = SettingsConfigDict(env_prefix="IOC_NOTIFY_", extra="ignore")

    routes: str | None = Field(None, description="routing file (default deploy/alerts/routes.yaml)")
    silences_topic: str = "ioc.alert-silences"
    log_topic: str = Field("ioc.notifications", description="delivery attempts (audit)")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics port (9406 in deployments); 0 = off"
    )
    group_id: str | None = Field(
        None,
        description="Kafka consumer group of the notifier instances: they share the "
        "notification groups among themselves (default iocstream-notifier.<alerts topic>)",
    )
    evaluate_interval_s: float = Field(1.0, gt=0)
    backoff_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments for aiokafka clients (security included)."""
    opts: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap.split(","),
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_cafile)
        if kafka.ssl_certfile:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
        opts["ssl_context"] = context
    if kafka.sasl_mechanism:
        opts["sasl_mechanism"] = kafka.sasl_mechanism
        opts["sasl_plain_username"] = kafka.sasl_username
        opts["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    return opts


def topic_partitions(kafka: KafkaSettings, topics: list[str]) -> dict[str, set[int]]:
    """Partitions of each topic (blocking); :class:`NotifierStartError` if one is missing."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    try:
        found = {t: consumer.partitions_for_topic(t) or set() for t in topics}
    finally:
        consumer.close()
    missing = sorted(t for t, p in found.items() if not p)
    if missing:
        raise NotifierStartError(f"topic(s) {missing} do not exist on {kafka.bootstrap}")
    return found


def attempt_record(
    n: Notification, receiver_type: str, number: int, result: Attempt, outcome: str
) -> bytes:
    """One ``ioc.notifications/v1`` record (``outcome``: delivered, failed, gave_up)."""
    record: dict[str, Any] = {
        "schema": LOG_SCHEMA,
        "at": format_time_us(datetime.now(UTC)),
        "idempotency_key": n.idempotency_key,
        "receiver": n.receiver,
        "receiver_type": receiver_type,
        "route": n.route,
        "group_key": dict(n.group_key),
        "kind": n.kind,
        "status": n.status,
        "attempt": number,
        "outcome": outcome,
        "http_status": result.status,
        "error": result.error,
        "duration_ms": round(result.duration_ms, 3),
        "alert_ids": [s.alert_id for s in (*n.firing, *n.resolved)],
        "fingerprints": [s.fingerprint for s in (*n.firing, *n.resolved)],
    }
    if outcome != "failed":
        record["delivered"] = Delivered.of(n).to_dict()
    return orjson.dumps(record)


class Notifier:
    """Wires the dispatcher to Kafka and the senders (module docstring)."""

    def __init__(
        self,
        config: NotifyConfig,
        settings: NotifierSettings,
        kafka: KafkaSettings,
        alerts_topic: str,
        senders_factory: Callable[[aiohttp.ClientSession], Senders],
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.config = config
        self.settings = settings
        self.kafka = kafka
        self.alerts_topic = alerts_topic
        self.dispatcher = Dispatcher(config)
        self.senders_factory = senders_factory
        self.tasks: set[asyncio.Task[None]] = set()
        self.ownership: Ownership | None = None
        self._log_target: tuple[int, dict[Any, int]] | None = None
        self.stopping = asyncio.Event()

    async def _catch_up(
        self, consumer: AIOKafkaConsumer, topics: list[str], handle: Callable[[Any], None]
    ) -> None:
        """Assign every partition of ``topics``, read from the beginning to the current end."""
        parts = await asyncio.to_thread(topic_partitions, self.kafka, topics)
        tps = [TopicPartition(t, p) for t in topics for p in sorted(parts[t])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for m in records:
                    handle(m)

    def _restore(self, m: Any) -> None:
        try:
            obj = orjson.loads(m.value)
            if obj.get("outcome") in ("delivered", "gave_up") and "delivered" in obj:
                self.dispatcher.restore(Delivered.from_dict(obj["delivered"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("notification log record at offset %d skipped: %s", m.offset, exc)

    def _input(self, m: Any) -> None:
        now = datetime.now(UTC)
        if m.topic == self.settings.log_topic:  # deliveries, this instance's and the others'
            self._restore(m)
            return
        if m.topic == self.settings.silences_topic:
            try:
                self.dispatcher.silences.put(decode_silence(m.value))
            except ValueError as exc:
                log.warning("silence at offset %d skipped: %s", m.offset, exc)
            return
        try:
            event = decode_event(m.value)
        except AlertFormatError as exc:
            log.warning("alert event %s/%d/%d skipped: %s", m.topic, m.partition, m.offset, exc)
            return
        self.dispatcher.observe(event.state, now)

    async def run(self) -> None:
        """Restore, catch up, then follow and deliver until :attr:`stopping` is set.

        Deliveries are limited to the notification groups this instance owns through the
        notifiers' consumer group (``connectors/notify/ownership.py``); the notification log
        is followed live, so a group taken over from another instance continues from what
        that instance delivered."""
        history = AIOKafkaConsumer(**aiokafka_options(self.kafka), enable_auto_commit=False)
        await history.start()
        try:
            await self._catch_up(history, [self.settings.log_topic], self._restore)
        finally:
            await history.stop()
        consumer = AIOKafkaConsumer(**aiokafka_options(self.kafka), enable_auto_commit=False)
        producer = AIOKafkaProducer(**aiokafka_options(self.kafka), acks="all")
        parts = await asyncio.to_thread(topic_partitions, self.kafka, [self.alerts_topic])
        group_id = self.settings.group_id or f"iocstream-notifier.{self.alerts_topic}"
        ownership = self.ownership = Ownership(
            self.alerts_topic, len(parts[self.alerts_topic]), group_id,
            aiokafka_options(self.kafka),
        )  # fmt: skip
        ownership.on_release = self._finish_deliveries
        await consumer.start()
        await producer.start()
        await ownership.start()
        try:
            inputs = [self.alerts_topic, self.settings.silences_topic, self.settings.log_topic]
            await self._catch_up(consumer, inputs, self._input)
            log.info(
                "notifier caught up: %d alerts, %d groups, %d silences, %d receivers",
                len(self.dispatcher.alerts),
                len(self.dispatcher.groups),
                len(self.dispatcher.silences.silences),
                len(self.config.receivers),
            )
            async with aiohttp.ClientSession() as session:
                senders = self.senders_factory(session)
                await self._loop(consumer, producer, senders, ownership)
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await ownership.stop()
            await consumer.stop()
            await producer.stop()

    async def _loop(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        senders: Senders,
        ownership: Ownership,
    ) -> None:
        interval_ms = int(self.settings.evaluate_interval_s * 1000)
        lag_reported = float("-inf")
        while not self.stopping.is_set():
            batch = await consumer.getmany(timeout_ms=interval_ms)
            for records in batch.values():
                for m in records:
                    self._input(m)
            await ownership.keep_alive()
            await self._maybe_grant(consumer, ownership)
            if time.monotonic() - lag_reported >= LAG_REPORT_S:
                await self.report_lag(consumer)
                lag_reported = time.monotonic()
            for n in self.dispatcher.due(datetime.now(UTC), ownership.owns()):
                log.info(
                    "notify %s via %s (%s, %s, %d firing, %d resolved, key %s)",
                    dict(n.group_key),
                    n.receiver,
                    n.kind,
                    n.status,
                    len(n.firing),
                    len(n.resolved),
                    n.idempotency_key,
                )
                task = asyncio.create_task(self._deliver(n, senders, producer))
                self.tasks.add(task)
                task.add_done_callback(self._delivered)

    async def _finish_deliveries(self) -> None:
        """(Partitions revoked.) Let deliveries in flight finish and be logged, so that the
        next owner of their groups reads them from the notification log."""
        if self.tasks:
            log.info("waiting for %d deliveries before the handover", len(self.tasks))
            await asyncio.wait(set(self.tasks), timeout=RELEASE_WAIT_S)

    async def _maybe_grant(self, consumer: AIOKafkaConsumer, ownership: Ownership) -> None:
        """Grant a new assignment once the notification log is read up to its end as of the
        assignment (every delivery of the previous owners is then known)."""
        if ownership.pending is None:
            return
        generation = ownership.generation
        if self._log_target is None or self._log_target[0] != generation:
            tps = [tp for tp in consumer.assignment() if tp.topic == self.settings.log_topic]
            self._log_target = (generation, await consumer.end_offsets(tps))
        for tp, end in self._log_target[1].items():
            if await consumer.position(tp) < end:
                return
        ownership.grant(generation)

    async def report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Set ``iocstream_consumer_lag_records{component="notifier"}`` for the alerts and
        silences topics: the end offset as of the last fetch minus the consumer's position,
        summed over the partitions (all of them: the notifier reads without a group).
        Partitions without a fetch yet are left out. Never waits for the broker."""
        if self.metrics is None:
            return
        lag = dict.fromkeys((self.alerts_topic, self.settings.silences_topic), 0)
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is not None and tp.topic in lag:
                lag[tp.topic] += max(0, end - await consumer.position(tp))
        for topic, records in lag.items():
            self.metrics.consumer_lag.labels("notifier", topic).set(records)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # the notification log could not be written: the delivery is redone after a
            # restart (same idempotency key), so this is logged, not fatal
            log.error("delivery task failed: %r", task.exception())

    async def _deliver(self, n: Notification, senders: Senders, producer: AIOKafkaProducer) -> None:
        receiver = self.config.receivers[n.receiver]
        delay = self.settings.backoff_s
        for number in range(1, receiver.max_attempts + 1):
            result = await senders.attempt(receiver, n)
            last = number == receiver.max_attempts or not result.retryable
            outcome = "delivered" if result.ok else ("gave_up" if last else "failed")
            value = attempt_record(n, receiver.type, number, result, outcome)
            if self.metrics is not None:
                self.metrics.notification_attempts.labels(receiver.type, outcome).inc()
            await producer.send_and_wait(
                self.settings.log_topic, value, key=n.idempotency_key.encode()
            )
            if result.ok:
                return
            log.warning(
                "delivery to %s failed (attempt %d/%d): %s",
                n.receiver,
                number,
                receiver.max_attempts,
                result.error or result.status,
            )
            if last:
                log.error(
                    "giving up on %s for %s after %d attempts",
                    n.idempotency_key,
                    n.receiver,
                    number,
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.backoff_max_s)
