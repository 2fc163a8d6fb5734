"""``iocstream ingest``: inbound CloudEvents -> validated, de-duplicated ``ioc.events``.

Consumes ``IOC_TOPIC_INBOUND`` (consumer group, manual commits), turns each record into a
canonical event or a dead letter (``connectors.ingest.parse``), drops copies of events
already published, produces events to ``ioc.events`` keyed by subject and dead letters to
``ioc.deadletter`` keyed by the sender's ``source`` (kafka-python, acks=all, idempotent).

Delivery guarantees:

* At-least-once, never lost: a poll's offsets are committed only after every record produced
  from it was acknowledged by Kafka. A crash before the commit makes the group read those
  records again; the de-duplication below makes the replay publish nothing twice.
* A record Kafka refuses is retried with a backoff until acknowledged or ingest is stopped.
  Before an event is sent again, ``ioc.events`` is read back to see whether the refused
  attempt landed after all (a timed-out request may have been written), so an ambiguous
  failure does not publish an event twice. A retried record may land after records of the
  same subject that were sent after it.
* Invalid input never stops ingest: it becomes a dead letter with a reason, the original
  value and the original Kafka headers (so a binary-mode event keeps its ``ce_`` headers).
* SIGTERM/SIGINT (``stop``): no new poll; the records in hand are delivered and committed
  (waiting up to ``shutdown_grace_s`` for acknowledgements), the group is left, exit 0.
  Anything not acknowledged by then is not committed and is read again on the next start.

De-duplication by (source, id) — see ``connectors.ingest.dedup`` and ``.tail``:

* The memory is a :class:`SeenSet` (default: 24 h window, at most 1,000,000 keys ≈ 100 MB).
  It holds what this process sent plus what it read back from ``ioc.events``: at start-up
  the last window of the topic (so a copy arriving after a restart, or a record re-read after
  a crash before its commit, is dropped), then continuously, and fully again whenever the
  group assigns partitions (so records handed over from another replica are covered).
* So a copy is published once if it arrives within the window of the first copy and the
  memory bound was not hit. ``ioc.events`` must keep at least the window (retention).
* Several replicas: copies are recognised across replicas once the first copy is on
  ``ioc.events`` and read back (normally well under a second). Two copies processed by two
  replicas at the same moment can both be published; senders that key inbound records by
  subject (or by source) put all copies on one partition, hence one replica, which rules
  that out. With a single replica there is no such gap.
* Dead letters are not de-duplicated: every rejected record is kept.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Event as StopFlag
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.errors import KafkaError

from connectors.ingest.catalog import Catalog
from connectors.ingest.dedup import SeenSet, digest
from connectors.ingest.parse import Limits, origin_of, parse_record
from connectors.ingest.tail import EventsTail, TailStalled
from connectors.kafka.join_fix import patch_kafka_join
from connectors.metrics import Metrics
from connectors.settings import KafkaSettings, TopicSettings
from schemas.events import STRUCTURED_CONTENT_TYPE, Event

log = logging.getLogger(__name__)

TOPIC_WAIT_S = 30.0  # how long a just-created inbound topic may take to show in metadata

_EVENT_HEADERS = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


@dataclass
class IngestConfig:
    group_id: str = "iocstream-ingest"
    dedup_window_s: float = 24 * 3600.0
    dedup_max_keys: int = 1_000_000
    limits: Limits = field(default_factory=Limits)
    poll_ms: int = 200
    max_poll_records: int = 1_000
    retry_backoff_s: float = 1.0
    shutdown_grace_s: float = 10.0
    stall_s: float = 60.0
    log_every_s: float = 30.0


@dataclass
class _Out:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    digest: int | None = None  # events only: the (source, id) key


class Ingest:
    """Run ingest until ``stop`` is set; see the module docstring for what it guarantees."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: TopicSettings,
        config: IngestConfig | None = None,
        catalog: Catalog | None = None,
        metrics: Metrics | None = None,
        client_id: str = "iocstream-ingest",
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.config = config or IngestConfig()
        self.catalog = catalog or Catalog()
        self.metrics = metrics
        self.client_id = client_id
        self.stop = StopFlag()
        self.stats: Counter[str] = Counter()
        self.seen = SeenSet(self.config.dedup_window_s, self.config.dedup_max_keys)
        self._assigned = False

    # -- set-up -------------------------------------------------------------------------
    def _producer(self) -> KafkaProducer:
        return KafkaProducer(
            **self.kafka.client_options(),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_in_flight_requests_per_connection=5,
            max_block_ms=10_000,  # send() gives up (and is retried) rather than hang on SIGTERM
            client_id=f"{self.client_id}-producer",
        )

    def _tail(self) -> EventsTail:
        consumer = KafkaConsumer(
            **self.kafka.client_options(),
            group_id=None,
            enable_auto_commit=False,
            check_crcs=True,  # cheap with the crc32c package (a dependency)
            client_id=f"{self.client_id}-tail",
        )
        return EventsTail(consumer, self.topics.events, self.seen, stall_s=self.config.stall_s)

    def _consumer(self) -> KafkaConsumer:
        patch_kafka_join()  # a join finishing between polls must not leave the group stuck
        return KafkaConsumer(
            **self.kafka.client_options(),
            group_id=self.config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A crashed replica's partitions move on after 15 s (kafka-python's default is
            # 45 s); heartbeats come from a background thread, so parsing does not delay them.
            session_timeout_ms=15_000,
            heartbeat_interval_ms=5_000,
            client_id=self.client_id,
        )

    def _await_topic(self, consumer: KafkaConsumer, topic: str) -> None:
        """Wait (up to ``TOPIC_WAIT_S``) until the consumer's metadata knows ``topic``'s
        partitions; ``RuntimeError`` if it never does."""
        deadline = time.monotonic() + TOPIC_WAIT_S
        while not consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline or self.stop.wait(0.2):
                raise RuntimeError(f"topic {topic} does not exist: run `iocstream kafka init`")

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> None:
        """Rebuild the de-duplication memory, then consume until ``stop``.

        Raises ``RuntimeError`` when ``ioc.events`` or ``ioc.deadletter`` does not exist,
        and ``TailStalled`` when ``ioc.events`` cannot be read back.
        """
        tail = self._tail()
        consumer: KafkaConsumer | None = None
        producer: KafkaProducer | None = None
        try:
            if not tail.consumer.partitions_for_topic(self.topics.deadletter):
                raise RuntimeError(
                    f"topic {self.topics.deadletter} does not exist: run `iocstream kafka init`"
                )
            tail.rebuild(self.stop)
            producer = self._producer()
            consumer = self._consumer()
            # the group's assignor needs the topic's partitions when it joins: without them
            # (a topic created a moment ago) it assigns nothing until the next metadata refresh
            self._await_topic(consumer, self.topics.inbound)
            consumer.subscribe([self.topics.inbound], listener=_Listener(self))
            log.info(
                "ingest consuming %s -> %s (dead letters: %s) as group %s",
                self.topics.inbound,
                self.topics.events,
                self.topics.deadletter,
                self.config.group_id,
            )
            self._loop(consumer, producer, tail)
        finally:
            if consumer is not None:
                consumer.close(autocommit=False)
            if producer is not None:
                producer.close(timeout=self.config.shutdown_grace_s)
            tail.consumer.close(autocommit=False)
            log.info("ingest stopped: %s", dict(self.stats))

    def _loop(self, consumer: KafkaConsumer, producer: KafkaProducer, tail: EventsTail) -> None:
        last_log = time.monotonic()
        while not self.stop.is_set():
            try:
                batches = consumer.poll(
                    timeout_ms=self.config.poll_ms, max_records=self.config.max_poll_records
                )
            except KafkaError as exc:
                log.warning("polling %s failed (%s); retrying", self.topics.inbound, exc)
                self.stop.wait(self.config.retry_backoff_s)
                continue
            if self._assigned:
                # Partitions may come from another replica: know all it published first.
                if self._catch_up(tail) is None:
                    break  # stopped; nothing of this poll was sent or committed
                self._assigned = False
            else:
                try:
                    tail.follow()
                except KafkaError as exc:
                    log.warning("following %s failed (%s)", self.topics.events, exc)
            if batches:
                self._process(batches, consumer, producer, tail)
            self.seen.expire(time.time())
            if time.monotonic() - last_log >= self.config.log_every_s:
                last_log = time.monotonic()
                log.info("ingest: %s; %d keys in memory", dict(self.stats), len(self.seen))

    def _process(
        self,
        batches: dict[TopicPartition, list[Any]],
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        tail: EventsTail,
    ) -> None:
        outgoing: list[_Out] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, records in batches.items():
            for record in records:
                outgoing.extend(self._handle(tp, record))
                offsets[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
        if not self._deliver(outgoing, producer, tail):
            log.warning("stopping with %d records unacknowledged; not committing", len(outgoing))
            return
        try:
            consumer.commit(offsets)
        except KafkaError as exc:
            # The records will be read again; the de-duplication memory drops the copies.
            log.warning("commit failed (%s); records will be re-read and de-duplicated", exc)

    def _handle(self, tp: TopicPartition, record: Any) -> list[_Out]:
        self.stats["records"] += 1
        result = parse_record(
            record.value,
            record.headers,
            origin=origin_of(tp.topic, tp.partition, record.offset),
            received_at=datetime.now(UTC),
            catalog=self.catalog,
            limits=self.config.limits,
        )
        if isinstance(result, Event):
            key = digest(result.source, result.id)
            if not self.seen.add_digest(key, time.time()):
                self.stats["duplicates"] += 1
                log.debug("duplicate %s from %s dropped", result.id, result.source)
                return []
            self.stats["events"] += 1
            return [_Out(self.topics.events, result.key, result.encode(), _EVENT_HEADERS, key)]
        self.stats["dead_letters"] += 1
        self.stats[f"dead_letter:{result.reason}"] += 1
        if self.metrics:
            self.metrics.dead_letters.labels("ingest", result.reason).inc()
        log.info("dead letter from %s: %s (%s)", result.source, result.reason, result.detail)
        headers = [(str(k), v or b"") for k, v in (record.headers or [])]
        key_ = result.source_id.encode() if result.source_id else None
        return [_Out(self.topics.deadletter, key_, result.encode(), headers)]

    # -- delivery -----------------------------------------------------------------------
    def _deliver(self, outgoing: list[_Out], producer: KafkaProducer, tail: EventsTail) -> bool:
        """Send until every record is acknowledged (True) or ``stop`` ends it (False)."""
        pending = outgoing
        while pending:
            futures: list[tuple[_Out, Any]] = []
            failed: list[_Out] = []
            for out in pending:
                try:
                    future = producer.send(
                        out.topic, value=out.value, key=out.key, headers=out.headers
                    )
                except KafkaError as exc:
                    log.warning("could not send to %s: %s", out.topic, exc)
                    failed.append(out)
                    continue
                futures.append((out, future))
            if not self._await(producer, futures):
                return False
            failed += [out for out, future in futures if future.failed()]
            if not failed:
                return True
            self.stats["retries"] += len(failed)
            log.warning(
                "Kafka refused %d records; retrying in %.1fs",
                len(failed),
                self.config.retry_backoff_s,
            )
            if self.stop.wait(self.config.retry_backoff_s):
                return False
            retry = self._not_landed(failed, tail)
            if retry is None:
                return False
            pending = retry
        return True

    def _await(self, producer: KafkaProducer, futures: list[tuple[_Out, Any]]) -> bool:
        """Wait for every future to complete; False if ``stop`` outlasted the grace time."""
        deadline: float | None = None
        while True:
            with contextlib.suppress(KafkaError):  # a timeout: check stop, keep waiting
                producer.flush(timeout=1.0)
            if all(future.is_done for _, future in futures):
                return True
            if self.stop.is_set():
                deadline = deadline or time.monotonic() + self.config.shutdown_grace_s
                if time.monotonic() > deadline:
                    return False

    def _not_landed(self, failed: list[_Out], tail: EventsTail) -> list[_Out] | None:
        """The failed records to send again (events found on ``ioc.events`` are left out);
        None if ``stop`` came first."""
        wanted = {out.digest for out in failed if out.digest is not None}
        if not wanted:
            return failed
        landed = self._catch_up(tail, wanted)
        if landed is None:
            return None
        if landed:
            log.info("%d refused events had landed after all; not sending them again", len(landed))
        return [out for out in failed if out.digest is None or out.digest not in landed]

    def _catch_up(self, tail: EventsTail, wanted: set[int] | None = None) -> set[int] | None:
        """``tail.catch_up``, retried with a backoff until it succeeds; None on ``stop``."""
        while not self.stop.is_set():
            try:
                found = tail.catch_up(self.stop, wanted)
            except (KafkaError, TailStalled) as exc:
                log.warning("reading %s back failed (%s); retrying", self.topics.events, exc)
                self.stop.wait(self.config.retry_backoff_s)
                continue
            return None if self.stop.is_set() else found
        return None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Notes an assignment; the main loop catches up on ``ioc.events`` before processing."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Nothing is pending here: a poll's records are delivered and committed before the
        # next poll, and revocation happens inside poll.
        del revoked

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned:
            log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned))
            self.ingest._assigned = True
