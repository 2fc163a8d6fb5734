"""Faust wiring of the district aggregates: ``ioc.indicators`` -> one partition -> back.

Two agents of the worker's app:

* **forward** reads ``ioc.indicators`` (the worker's own output) and copies, unchanged, the
  records whose key shows a district input — station VN_AQI (``vn_aqi_1h|device:``,
  ``vn_aqi_1d|device:``) and 1-minute device windows (``reading_stats_1m|``, only the first
  of a device's minute: its other metrics would repeat it) — onto the internal topic
  ``<app id>-district-inputs``, partition 0; other records are acknowledged without being
  decoded. It acknowledges a message once its copy is durable (a crash re-forwards; a
  repeated input changes nothing downstream; a skipped repeat is acknowledged at once:
  Faust commits no offset past the first unacknowledged one). The internal topic and the
  table have as many partitions as the readings topic (``iocstream kafka init`` checks that
  a worker's internal topics are co-partitioned with its input), but only partition 0 is
  used.
* **districts** applies each copy to :class:`~streams.district_partition.DistrictState`
  (pure) and sends the district VN_AQI and devices-reporting records (1 minute, the hopping
  windows of ``IOC_WORKER_HOPPING``, 1 hour) to ``ioc.indicators`` (their keys,
  ``...|district:...``, are not forwarded again). Inputs are one per device and minute plus
  a few per station and hour, so one partition carries a whole city; every district's
  windows close on its one watermark. Persistence, acknowledgements and idle ticks as in
  :class:`~streams.agents.stateful.StatefulAgent`.

The expected stations and devices per district come from the device registry
(``IOC_REGISTRY_PATH``) when the worker starts.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from connectors.metrics import Metrics
from connectors.settings import KafkaSettings, TopicSettings
from schemas.indicator_values import encode_value
from streams.agents.stateful import StatefulAgent, ack_when_durable, internal_topic, state_table
from streams.app import WorkerSettings
from streams.district_health import HealthFamily, health_families
from streams.district_partition import DistrictState, InputError, MinuteRepeats, encode_tick

log = logging.getLogger(__name__)

TABLE_NAME = "district-cells"
FORWARDED_PREFIXES: Final = (MinuteRepeats.PREFIX, b"vn_aqi_1h|device:", b"vn_aqi_1d|device:")
HEALTH_KEEP_S: Final = 86400.0
INPUT_KEY: Final = b"city"


def district_inputs_topic(app_id: str) -> str:
    """Name of the internal topic of district inputs (only its partition 0 is used)."""
    return f"{app_id}-district-inputs"


class DistrictAgent(StatefulAgent):
    """Forwards district inputs and aggregates them per district."""

    def __init__(
        self,
        app: Any,
        topics: TopicSettings,
        *,
        partitions: int,
        stations: Mapping[str, Collection[str]],
        health: Sequence[HealthFamily],
        grace_s: float = 300.0,
        health_keep_s: float = HEALTH_KEEP_S,
        checkpoint_interval_s: float = 2.0,
        idle_tick_s: float = 0.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.stations = stations
        self.health = health
        self.grace_ms = round(grace_s * 1000)
        self.health_keep_ms = round(health_keep_s * 1000)
        self._repeats = MinuteRepeats()
        self.indicators_topic_name = topics.indicators
        self.internal_name = district_inputs_topic(app.conf.id)
        inputs = internal_topic(app, self.internal_name, partitions)
        table = state_table(
            app,
            TABLE_NAME,
            partitions,
            "district windows: station AQI and reporting devices, emissions, watermark",
        )
        super().__init__(
            app,
            name="districts",
            source=inputs,
            table=table,
            deadletter=app.topic(topics.deadletter, key_type=bytes, value_type=bytes),
            checkpoint_interval_s=checkpoint_interval_s,
            idle_tick_s=idle_tick_s,
            metrics=metrics,
        )
        self.forwarded = self.emitted = self.late = 0
        indicators = app.topic(topics.indicators, key_type=bytes, value_type=bytes)
        app.agent(indicators, name="district-inputs-forward")(self.forward)

    async def forward(self, stream: Any) -> None:
        """Agent: copy district inputs to the internal topic; ack once the copy is durable."""
        producer = self.app.producer
        async for event in stream.noack().events():
            message = event.message
            await self.check_forward_gap(message)
            key: bytes = message.key or b""
            if not key.startswith(FORWARDED_PREFIXES) or self._repeats.repeated(key):
                event.ack()
                continue
            sent = await producer.send(self.internal_name, INPUT_KEY, message.value, 0, None, None)
            self.forwarded += 1
            ack_when_durable([event], [sent], self._crash)

    def restore_states(
        self, records: list[tuple[bytes, bytes]], owned: set[int]
    ) -> dict[int, DistrictState]:
        if 0 not in owned or not records:
            return {}
        state = self.new_state(0)
        state.restore(records)
        return {0: state}

    def new_state(self, partition: int) -> DistrictState:
        return DistrictState(
            self.stations,
            self.health,
            grace_ms=self.grace_ms,
            health_keep_ms=self.health_keep_ms,
        )

    def encode_tick(self, watermark_ms: int) -> bytes:
        return encode_tick(watermark_ms)

    async def apply(self, message: Any, state: DistrictState) -> None:
        value: bytes = message.value or b""
        try:
            outcome = state.apply(message.offset, value)
        except InputError as exc:
            await self.send_dead_letter("schema_violation", str(exc), message, value)
            return
        if outcome.late:
            self.late += 1
            log.info("district input at offset %d is older than the kept windows; dropped",
                     message.offset)  # fmt: skip
        for v in outcome.values:
            await self.send_output(self.indicators_topic_name, v.key.encode(), encode_value(v))
        self.emitted += len(outcome.values)


def start_districts(
    app: Any,
    settings: WorkerSettings,
    kafka: KafkaSettings,
    topics: TopicSettings,
    *,
    partitions: int,
    metrics: Metrics | None,
) -> None:
    """Register the district aggregate agents (``streams/agents/districts.py``) on ``app``,
    with the expected stations and devices of the device registry; creates their internal
    topic (``partitions`` like the readings topic). Raises ``ValueError`` (a bad registry, a
    wrong topic)."""
    from connectors.kafka.admin import TopicSpec, ensure_topics
    from connectors.registry import Registry

    registry = Registry.load_default()
    stations: dict[str, set[str]] = {}
    for device in registry:
        if device.kind == "air_quality":
            stations.setdefault(device.district, set()).add(device.id)
    health = health_families(
        ((d.id, d.district, d.expected_interval_s) for d in registry), settings.hopping
    )
    ensure_topics(
        kafka,
        [TopicSpec(district_inputs_topic(settings.app_id), partitions, topics.replication_factor)],
    )
    DistrictAgent(
        app,
        topics,
        partitions=partitions,
        stations=stations,
        health=health,
        grace_s=settings.district_grace_s,
        checkpoint_interval_s=settings.checkpoint_interval_s,
        idle_tick_s=settings.idle_tick_s,
        metrics=metrics,
    )
    log.info(
        "district aggregates: %s -> %s, %d districts, %d stations, devices reporting per "
        "%s, grace %.1f s",
        topics.indicators,
        topics.indicators,
        len(health[0].expected),
        sum(len(s) for s in stations.values()),
        ", ".join(f.name for f in health),
        settings.district_grace_s,
    )
