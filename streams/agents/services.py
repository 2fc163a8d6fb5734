"""Faust wiring of the city-service KPIs: ``ioc.events`` -> by district -> ``ioc.indicators``.

Two agents of the worker's app:

* **forward** (``ioc.events``, keyed by subject) re-keys every service event (the types of
  :data:`streams.service_kpis.KIND_OF_TYPE`; others, such as device status events, are
  skipped) by its ``data.district`` onto the internal topic ``<app id>-service-events-by-
  district``, unchanged. It acknowledges an input message once Kafka acknowledged its copy,
  so a crash re-forwards (at-least-once); the copies are recognised downstream by their
  CloudEvents ``source`` and ``id``. Each subject is on one input partition and each district
  on one internal partition, so the events of an item stay in order. A value that is not
  JSON or has no district goes to ``ioc.deadletter`` (``malformed_payload``).
* **service-kpis** (the internal topic) applies each message to its partition's
  :class:`~streams.service_partition.ServicePartition` (pure) and sends the KPI records it
  emits — one per KPI that changed, per closed minute, plus the hourly heartbeat — to
  ``ioc.indicators``. An event that names no agency, or that is not a canonical event, goes to
  ``ioc.deadletter`` (``schema_violation`` / ``invalid_event``).

State and restarts follow ``streams/agents/readings.py`` (its facts F1–F5) through
:class:`~streams.agents.stateful.StatefulAgent`: the state lives in a changelog-backed table
partitioned like the internal topic; every ``checkpoint_interval_s`` the agent first awaits
every output handed to the producer, then writes the changed records (item, KPI, then
partition record; tombstones for forgotten items) straight to changelog partition ``p`` in
order, and acknowledges the input messages once Kafka has them. After a SIGKILL the restored
state is exactly the state after the partition record's offset (``ServicePartition.restore``
drops facts and emissions after it), and the messages after it are replayed: every KPI
record of an uninterrupted run is emitted, none with a different value; one may be emitted
twice, identically.

Idle partitions: like the readings agent, the owner of a by-district partition whose
watermark has not moved for ``idle_tick_s`` appends a tick to it, so overdue items and
windows that roll over are reported during quiet hours, deterministically on replay.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from connectors.metrics import Metrics
from connectors.settings import KafkaSettings, TopicSettings
from schemas.events import EventFormatError
from schemas.indicator_values import encode_value
from streams.agents.stateful import (
    StatefulAgent,
    ack_when_durable,
    dead_letter,
    internal_topic,
    state_table,
)
from streams.app import WorkerSettings
from streams.service_kpis import KIND_OF_TYPE
from streams.service_partition import ServicePartition, decode_message, encode_tick
from streams.window_specs import CITY_TZ, HOUR_MS

log = logging.getLogger(__name__)

TABLE_NAME = "service-kpis"
STAT_NAMES = ("forwarded", "skipped", "events", "duplicates", "late", "rejected", "ticks",
              "values", "replayed")  # fmt: skip


def by_district_topic(app_id: str) -> str:
    """Name of the internal topic of service events keyed by district."""
    return f"{app_id}-service-events-by-district"


class ServiceKpiAgent(StatefulAgent):
    """Forwards service events by district and computes the KPIs of each partition."""

    def __init__(
        self,
        app: Any,
        topics: TopicSettings,
        *,
        partitions: int,
        grace_s: float = 60.0,
        heartbeat_s: float = HOUR_MS / 1000,
        timezone: str = CITY_TZ,
        checkpoint_interval_s: float = 2.0,
        idle_tick_s: float = 0.0,
        stats_interval_s: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.grace_ms = round(grace_s * 1000)
        self.heartbeat_ms = round(heartbeat_s * 1000)
        self.timezone = timezone
        self.new_state(0)  # validates the settings
        self.indicators_topic_name = topics.indicators
        self.internal_name = by_district_topic(app.conf.id)
        self.events = app.topic(topics.events, key_type=bytes, value_type=bytes)
        by_district = internal_topic(app, self.internal_name, partitions)
        table = state_table(
            app,
            TABLE_NAME,
            partitions,
            "service items, KPI emissions and watermarks per by-district partition",
        )
        super().__init__(
            app,
            name="service-kpis",
            source=by_district,
            table=table,
            deadletter=app.topic(topics.deadletter, key_type=bytes, value_type=bytes),
            checkpoint_interval_s=checkpoint_interval_s,
            idle_tick_s=idle_tick_s,
            metrics=metrics,
        )
        self.stats = dict.fromkeys(STAT_NAMES, 0)
        self._last_stats: dict[str, int] = {}
        app.agent(self.events, name="service-events-forward")(self.forward)
        app.timer(stats_interval_s, name="service-kpis-stats")(self.log_stats)

    # --- forwarding ----------------------------------------------------------------------------

    async def forward(self, stream: Any) -> None:
        """Agent: re-key each service event by district; ack once the copy is durable."""
        producer = self.app.producer
        async for event in stream.noack().events():
            message = event.message
            await self.check_forward_gap(message)
            value: bytes = message.value or b""
            try:
                obj = orjson.loads(value)
                kind = KIND_OF_TYPE.get(str(obj.get("type"))) if isinstance(obj, dict) else None
                district = obj["data"]["district"] if kind else None
                if kind and (not isinstance(district, str) or not district):
                    raise TypeError("data.district must be a non-empty string")
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                letter = dead_letter("malformed_payload", str(exc), message, value)
                sent = await self.deadletter.send(
                    key=letter.source_id.encode(), value=letter.encode(), force=True
                )
                log.warning("service event dead-lettered: %s", exc)
                if self.metrics is not None:
                    self.metrics.dead_letters.labels("worker", letter.reason).inc()
                ack_when_durable([event], [sent], self._crash)
                continue
            if not kind:
                self.stats["skipped"] += 1
                event.ack()
                continue
            assert isinstance(district, str)
            sent = await producer.send(
                self.internal_name, district.encode(), value, None, None, None
            )
            self.stats["forwarded"] += 1
            ack_when_durable([event], [sent], self._crash)

    # --- KPIs ----------------------------------------------------------------------------------

    def restore_states(
        self, records: list[tuple[bytes, bytes]], owned: set[int]
    ) -> dict[int, ServicePartition]:
        return ServicePartition.restore(
            records,
            grace_ms=self.grace_ms,
            heartbeat_ms=self.heartbeat_ms,
            tz=self.timezone,
            owned=owned,
        )

    def new_state(self, partition: int) -> ServicePartition:
        return ServicePartition(
            partition, grace_ms=self.grace_ms, heartbeat_ms=self.heartbeat_ms, tz=self.timezone
        )

    def encode_tick(self, watermark_ms: int) -> bytes:
        return encode_tick(watermark_ms)

    async def apply(self, message: Any, state: ServicePartition) -> None:
        """Apply one message and hand its KPI records and dead letter to the producer."""
        value: bytes = message.value or b""
        try:
            event, tick = decode_message(value)
        except EventFormatError as exc:
            event, tick = None, None
            await self.send_dead_letter("invalid_event", str(exc), message, value)
        outcome = state.apply(message.offset, event, tick)
        s = self.stats
        if outcome.replayed:
            s["replayed"] += 1
            return
        s["events"] += event is not None
        s["ticks"] += tick is not None
        s["duplicates"] += outcome.duplicate
        s["late"] += outcome.late
        s["rejected"] += bool(outcome.rejected)
        s["values"] += len(outcome.values)
        if outcome.rejected:
            await self.send_dead_letter("schema_violation", outcome.rejected, message, value)
        for v in outcome.values:
            await self.send_output(self.indicators_topic_name, v.key.encode(), encode_value(v))
        if outcome.late:
            log.debug("partition %d offset %d: late service event (applied)",
                      message.partition, message.offset)  # fmt: skip

    async def log_stats(self) -> None:
        """Log the counters (INFO) when they changed since the last time."""
        if self.stats != self._last_stats:
            log.info("service KPIs: %s", ", ".join(f"{k}={v}" for k, v in self.stats.items()))
            self._last_stats = dict(self.stats)


def start_services(
    app: Any,
    settings: WorkerSettings,
    kafka: KafkaSettings,
    topics: TopicSettings,
    *,
    partitions: int,
    metrics: Metrics | None,
) -> bool:
    """Register the city-service KPI agents (``streams/agents/services.py``) on ``app``;
    returns False (and logs a warning) when the events topic does not exist.

    Creates the internal by-district topic (``partitions`` like the readings topic) before
    Faust starts: a topic Faust declares itself may appear after the first partition
    assignment and then stay unassigned. Raises ``ValueError`` when it exists with another
    partition count.
    """
    from connectors.kafka.admin import TopicSpec, ensure_topics
    from streams.worker import WorkerStartError, input_partitions

    try:
        input_partitions(kafka, topics.events)
    except WorkerStartError as exc:
        log.warning("service KPIs off: %s", exc)
        return False
    internal = TopicSpec(by_district_topic(settings.app_id), partitions, topics.replication_factor)
    ensure_topics(kafka, [internal])
    ServiceKpiAgent(
        app,
        topics,
        partitions=partitions,
        grace_s=settings.service_grace_s,
        heartbeat_s=settings.service_heartbeat_s,
        timezone=settings.timezone,
        checkpoint_interval_s=settings.checkpoint_interval_s,
        idle_tick_s=settings.idle_tick_s,
        stats_interval_s=settings.stats_interval_s,
        metrics=metrics,
    )
    log.info(
        "service KPIs: %s -> by district -> %s, grace %.1f s, heartbeat %s",
        topics.events,
        topics.indicators,
        settings.service_grace_s,
        f"{settings.service_heartbeat_s:g} s" if settings.service_heartbeat_s else "off",
    )
    return True
