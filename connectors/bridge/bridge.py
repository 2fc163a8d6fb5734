"""The MQTT -> Kafka bridge (paho-mqtt -> kafka-python).

Delivery guarantees:

* QoS 1 subscriptions on a persistent session (MQTT 5 clean start off with a session
  expiry, or MQTT 3.1.1 clean session off) and a stable client id, with manual
  acknowledgement: a PUBLISH is acknowledged only after every Kafka record made from it
  (reading batches and dead letters) was acknowledged by Kafka (acks=all, idempotent
  producer). A crash before that leaves the message with the broker, which redelivers it:
  at-least-once, duplicates possible, nothing lost.
* Readings are packed per Kafka partition (``Packer``), so every reading in a batch belongs
  to a device whose id hashes to that partition; per-device order is kept.
* A record Kafka refuses is sent again after a backoff, never dropped; while Kafka is away
  nothing is acknowledged, and memory stays bounded: the inbox is a bounded queue and the
  broker never has more than ``receive_maximum`` unacknowledged messages in flight to us.
* Invalid input becomes a dead letter on ``ioc.deadletter`` with a reason; it never stops
  valid traffic behind it.
"""

from __future__ import annotations

import logging
import queue
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Event
from typing import Any

import paho.mqtt.client as mqtt
from kafka import KafkaProducer
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.bridge.packer import AckTracker, Batch, Packer
from connectors.metrics import Metrics
from connectors.mqtt.validate import Limits, decode_message
from connectors.registry import Registry
from connectors.settings import KafkaSettings, MqttSettings, TopicSettings

log = logging.getLogger(__name__)


@dataclass
class BridgeConfig:
    share_group: str | None = None
    mqtt_version: int = 5
    session_expiry_s: int = 86_400
    receive_maximum: int = 1_000
    inbox_size: int = 2_000
    max_batch_readings: int = 500
    linger_s: float = 0.02
    retry_backoff_s: float = 1.0


@dataclass
class _Record:
    topic: str
    partition: int | None
    key: bytes | None
    value: bytes
    message_ids: set[int] = field(default_factory=set)
    sent_at: float = 0.0


class Bridge:
    """Move telemetry from MQTT to Kafka until ``stop`` is set."""

    def __init__(
        self,
        mqtt_settings: MqttSettings,
        kafka_settings: KafkaSettings,
        topics: TopicSettings,
        registry: Registry,
        limits: Limits,
        config: BridgeConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.mqtt_settings = mqtt_settings
        self.topics = topics
        self.registry = registry
        self.limits = limits
        self.config = config or BridgeConfig()
        self.clock = clock
        self.stop = Event()
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue(self.config.inbox_size)
        self.results: queue.SimpleQueue[tuple[_Record, Exception | None]] = queue.SimpleQueue()
        self.tracker = AckTracker()
        self.messages: dict[int, mqtt.MQTTMessage] = {}
        self.retry: list[tuple[float, _Record]] = []
        self._seq = 0
        self.stats = {"messages": 0, "readings": 0, "dead_letters": 0, "acked": 0}
        self.producer = KafkaProducer(
            **kafka_settings.client_options(),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_in_flight_requests_per_connection=5,
            client_id=f"{mqtt_settings.client_id}-producer",
        )
        partitions = self.producer.partitions_for(topics.readings)
        if not partitions:
            raise RuntimeError(
                f"topic {topics.readings} does not exist: run `iocstream kafka init`"
            )
        self.packer = Packer(
            len(partitions), self.config.max_batch_readings, linger_s=self.config.linger_s
        )
        self.client = self._make_client()

    # -- MQTT side ----------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s, c = self.mqtt_settings, self.config
        v5 = c.mqtt_version == 5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if s.username:
            client.username_pw_set(
                s.username, s.password.get_secret_value() if s.password else None
            )
        if s.tls:
            client.tls_set(ca_certs=s.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    @property
    def subscription(self) -> str:
        base = "ioc/+/+/+/telemetry"
        group = self.config.share_group
        return f"$share/{group}/{base}" if group else base

    def _on_connect(
        self, client: mqtt.Client, _ud: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused: %s", reason)
            return
        if self.metrics:
            self.metrics.bridge_connected.set(1)
            self.metrics.bridge_reconnects.labels("mqtt").inc()
        log.info(
            "MQTT connected to %s:%d (session present: %s); subscribing %s",
            self.mqtt_settings.host,
            self.mqtt_settings.port,
            getattr(flags, "session_present", "?"),
            self.subscription,
        )
        client.subscribe(self.subscription, qos=1)

    def _on_disconnect(
        self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if self.metrics:
            self.metrics.bridge_connected.set(0)
        if not self.stop.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects with backoff", reason)

    def _on_message(self, _c: mqtt.Client, _ud: Any, message: mqtt.MQTTMessage) -> None:
        # Blocks paho's network thread when the inbox is full: that is the backpressure.
        self.inbox.put(message)

    def connect(self) -> None:
        s, c = self.mqtt_settings, self.config
        if c.mqtt_version == 5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = c.session_expiry_s
            props.ReceiveMaximum = c.receive_maximum
            self.client.connect(
                s.host, s.port, keepalive=s.keepalive, clean_start=False, properties=props
            )
        else:
            self.client.connect(s.host, s.port, keepalive=s.keepalive)
        self.client.loop_start()

    # -- Kafka side ---------------------------------------------------------------------
    def _send(self, record: _Record) -> None:
        record.sent_at = self.clock()
        future = self.producer.send(
            record.topic, value=record.value, key=record.key, partition=record.partition
        )
        future.add_callback(lambda _meta: self.results.put((record, None)))
        future.add_errback(lambda exc: self.results.put((record, exc)))

    def _send_batch(self, batch: Batch) -> None:
        self._send(
            _Record(
                self.topics.readings, batch.partition, None, batch.encode(), set(batch.message_ids)
            )
        )
        self.stats["readings"] += len(batch.objects)
        if self.metrics:
            self.metrics.bridge_readings.inc(len(batch.objects))
            self.metrics.bridge_batch_size.observe(len(batch.objects))

    # -- main loop ----------------------------------------------------------------------
    def _handle(self, message: mqtt.MQTTMessage) -> None:
        self._seq += 1
        seq = self._seq
        self.messages[seq] = message
        self.tracker.open(seq)
        self.stats["messages"] += 1
        if self.metrics:
            self.metrics.bridge_messages.inc()
        decoded = decode_message(
            message.topic, message.payload, datetime.now(UTC), self.registry, self.limits
        )
        for partition in self.packer.add(seq, decoded.readings, self.clock()):
            del partition
            self.tracker.expect(seq)
        for dead in decoded.rejections:
            self.tracker.expect(seq)
            self.stats["dead_letters"] += 1
            if self.metrics:
                self.metrics.dead_letters.labels("bridge", dead.reason).inc()
            log.info("dead letter from %s: %s (%s)", message.topic, dead.reason, dead.detail)
            self._send(
                _Record(self.topics.deadletter, None, dead.source_id.encode(), dead.encode(), {seq})
            )
        self.tracker.seal(seq)

    def _settle(self) -> None:
        while True:
            try:
                record, exc = self.results.get_nowait()
            except queue.Empty:
                break
            if exc is not None:
                log.warning(
                    "Kafka refused a record for %s (%s); retrying in %.1fs",
                    record.topic,
                    exc,
                    self.config.retry_backoff_s,
                )
                self.retry.append((self.clock() + self.config.retry_backoff_s, record))
                continue
            if self.metrics:
                self.metrics.bridge_produce_latency.observe(self.clock() - record.sent_at)
            for seq in record.message_ids:
                self.tracker.done(seq)
        due = [r for t, r in self.retry if t <= self.clock()]
        self.retry = [(t, r) for t, r in self.retry if t > self.clock()]
        for record in due:
            self._send(record)
        for seq in self.tracker.releasable():
            message = self.messages.pop(seq)
            self.client.ack(message.mid, message.qos)
            self.stats["acked"] += 1
        if self.metrics:
            self.metrics.bridge_inflight.set(len(self.tracker) + self.inbox.qsize())

    def run(self) -> None:
        self.connect()
        last_log = self.clock()
        try:
            while not self.stop.is_set():
                try:
                    message = self.inbox.get(timeout=self.config.linger_s / 2)
                    self._handle(message)
                    while True:
                        self._handle(self.inbox.get_nowait())
                except queue.Empty:
                    pass
                for batch in self.packer.ready(self.clock()):
                    self._send_batch(batch)
                self._settle()
                if self.clock() - last_log >= 10:
                    last_log = self.clock()
                    log.info("bridge: %s, unacknowledged %d", self.stats, len(self.tracker))
            self._shutdown()
        finally:
            self.client.loop_stop()
            self.producer.close(timeout=10)

    def _shutdown(self) -> None:
        """Finish what is in hand and ack what Kafka acknowledged.

        The subscription is kept (the session is persistent, so the broker queues new
        messages for the next start); messages still in the inbox are not acknowledged and
        the broker redelivers them.
        """
        for batch in self.packer.drain():
            self._send_batch(batch)
        self.producer.flush(timeout=10)
        deadline = self.clock() + 10
        while len(self.tracker) and self.clock() < deadline:
            self._settle()
            time.sleep(0.01)
        self.client.disconnect()
        log.info(
            "bridge stopped: %s; %d messages left unacknowledged for redelivery",
            self.stats,
            len(self.tracker) + self.inbox.qsize(),
        )
