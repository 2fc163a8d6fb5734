"""The MQTT -> Kafka bridge (paho-mqtt -> kafka-python).

Subscriptions (QoS 1): ``ioc/+/+/+/telemetry`` and, unless turned off, ``ioc/+/+/+/status``;
both as ``$share/<group>/...`` with a share group, so replicas split the load.

Delivery guarantees:

* Persistent session (MQTT 5 clean start off with a session expiry, or MQTT 3.1.1 clean
  session off) under a stable client id, with manual acknowledgement: a PUBLISH is
  acknowledged only after every Kafka record made from it (reading batches, dead letters,
  status events, quarantined readings) was acknowledged by Kafka (acks=all, idempotent
  producer). A crash before that leaves the message with the broker, which redelivers it:
  at-least-once, duplicates possible, nothing lost. PUBACKs go out in arrival order.
* A message received on an earlier connection is never acknowledged on a later one: after a
  reconnect the broker redelivers it (same packet id) and the redelivered copy is the one
  acknowledged, so an acknowledgement can never hit a different message.
* Readings are packed per Kafka partition (``Packer``), so every reading in a batch belongs
  to a device whose id hashes to that partition; per-device order is kept (the idempotent
  producer retries in order). Only a record that failed for good (kafka-python's delivery
  timeout, 2 minutes) and is sent again by the bridge can land after later records of its
  partition; consumers already tolerate duplicates, and windows are by event time.
* A record Kafka refuses (or cannot take: buffer full, broker away) is sent again after a
  backoff, never dropped. While Kafka is away nothing is acknowledged, so the broker keeps the
  messages, and memory stays bounded: the broker sends at most ``receive_maximum`` (MQTT 5;
  the broker's own in-flight limit for 3.1.1) unacknowledged messages, and the bridge holds
  nothing else.
* Invalid input becomes a dead letter on ``ioc.deadletter`` with a reason; it never stops
  valid traffic behind it. Status changes become ``vn.longxuyen.device.status`` events on
  ``ioc.events`` (:mod:`connectors.bridge.status_events`); an empty retained status (a
  cleared one) is acknowledged and ignored. Readings of unknown devices under the
  ``quarantine`` policy go, besides their dead letter, to ``quarantine_topic`` if one is set.
* Retained status messages: MQTT 5 subscribes with retain handling 1, so the broker's retained
  states arrive once, when the session's subscription is created (events marked
  ``retained: true``), not again on every reconnect; 3.1.1 subscribes to status topics only
  when the broker has no session for us.
* With a share group, status is shared like telemetry: each live status message (a will
  included) reaches one replica and becomes exactly one event; a repeated state is not
  suppressed there (a replica sees only part of a device's messages, so ``a: offline,
  b: online, a: offline`` must still give three events). Retained snapshots are ignored
  (acknowledged, counted in ``stats["snapshots_ignored"]``): MQTT 5 (4.8.2) sends none to
  a shared subscription, but some brokers do, to *every* member (Mosquitto 2.0.11 here),
  which would report each state once per replica. So with a share group the states
  already on the broker when the group first subscribes are not reported, only changes
  from then on (stale devices still show as missing telemetry). A message is a snapshot
  iff its retain flag is set: brokers clear it on live deliveries (MQTT 3.1.1 3.3.1.3;
  MQTT 5 unless "retain as published", which the bridge does not ask for). Two replicas
  may produce one device's events out of MQTT order; the events' ``time`` orders them.
  Tested in ``tests/integration/test_bridge_shared_status.py``.

Threads: the caller's thread runs MQTT network I/O (paho's external-loop API on a buffered
socket, :mod:`connectors.bridge.buffered`; no paho thread), decoding, packing and
acknowledgements; kafka-python's sender thread does Kafka I/O and hands results back through
a queue. Reconnection to MQTT uses exponential backoff from 1 s to 30 s;
kafka-python reconnects by itself (0.1 s growing to 10 s).
"""

from __future__ import annotations

import logging
import queue
import select
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Event
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from kafka.errors import KafkaError
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.bridge.clients import connect_options, make_mqtt_client, make_producer
from connectors.bridge.packer import AckTracker, Batch, Packer
from connectors.bridge.settings import BridgeConfig
from connectors.bridge.status_events import StatusChanges, status_event
from connectors.metrics import Metrics
from connectors.mqtt.status import DeviceStatus, decode_status
from connectors.mqtt.topics import subscription_filter
from connectors.mqtt.validate import Limits, decode_message
from connectors.registry import Registry
from connectors.settings import KafkaSettings, MqttSettings, TopicSettings
from schemas.deadletter import DeadLetter
from schemas.events import STRUCTURED_CONTENT_TYPE
from schemas.readings import SCHEMA

log = logging.getLogger(__name__)

_READ_BURST = 200
_EVENT_HEADERS = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


@dataclass
class _Record:
    topic: str
    partition: int | None
    key: bytes | None
    value: bytes
    message_ids: set[int] = field(default_factory=set)
    headers: list[tuple[str, bytes]] | None = None
    sent_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Inbound:
    """What the bridge keeps of a received PUBLISH.

    Not paho's ``MQTTMessage``: that drags an MQTT 5 ``Properties`` object of some sixty
    garbage-collected containers along, and a thousand of them held until Kafka acknowledges
    made Python's cyclic GC take half of the bridge's CPU time.
    """

    topic: str
    payload: bytes
    retain: bool
    mid: int
    qos: int
    connection: int


class Bridge:
    """Move telemetry and status from MQTT to Kafka until ``stop`` is set."""

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
        if metrics:
            # every registered district starts at 0, so "no readings from a district" can fire
            for district in {d.district for d in registry}:
                metrics.district_readings.labels(district).inc(0)
        self.config = config or BridgeConfig()
        self.clock = clock
        self.stop = Event()
        self.subscribed = Event()
        """Set once the broker acknowledged the subscriptions of the current connection."""
        self._subscribe_mid: int | None = None
        self.inbox: queue.SimpleQueue[_Inbound] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[tuple[_Record, Exception | None]] = queue.SimpleQueue()
        self.tracker = AckTracker()
        self.held: dict[int, _Inbound] = {}
        self.retry: list[tuple[float, _Record]] = []
        self.status_changes = StatusChanges()
        self._seq = 0
        self._connection = 0
        self._kafka_failing = False
        self._mqtt_down = True
        self._reconnect_at = 0.0
        self._backoff_s = 1.0
        self.stats = {
            "messages": 0,
            "readings": 0,
            "dead_letters": 0,
            "status_events": 0,
            "snapshots_ignored": 0,
            "acked": 0,
        }
        self.producer = make_producer(
            kafka_settings, f"{mqtt_settings.client_id}-producer", self.config.kafka_compression
        )
        self.packer = Packer(
            self._partitions(),
            self.config.max_batch_readings,
            max_bytes=self.config.max_batch_bytes,
            linger_s=self.config.linger_s,
        )
        self.client = make_mqtt_client(mqtt_settings, self.config)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _partitions(self) -> int:
        partitions = self.producer.partitions_for(self.topics.readings)
        if not partitions:
            self.producer.close(timeout=5)
            raise RuntimeError(
                f"topic {self.topics.readings} does not exist: run `iocstream kafka init`"
            )
        return len(partitions)

    # -- MQTT side ----------------------------------------------------------------------
    @property
    def subscriptions(self) -> list[str]:
        """The topic filters the bridge subscribes to."""
        group = self.config.share_group
        out = [subscription_filter("telemetry", share_group=group)]
        if self.config.status:
            out.append(subscription_filter("status", share_group=group))
        return out

    def _on_connect(
        self, client: mqtt.Client, _ud: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused: %s", reason)
            return
        self._connection += 1
        self._backoff_s = 1.0
        session_present = bool(getattr(flags, "session_present", False))
        if self.metrics:
            self.metrics.bridge_connected.set(1)
            if self._connection > 1:
                self.metrics.bridge_reconnects.labels("mqtt").inc()
        log.info(
            "MQTT connected to %s:%d as %s (session present: %s); subscribing %s",
            self.mqtt_settings.host,
            self.mqtt_settings.port,
            self.mqtt_settings.client_id,
            session_present,
            ", ".join(self.subscriptions),
        )
        self.subscribed.clear()
        v5 = self.config.mqtt_version == 5
        wanted: list[tuple[str, Any]] = []
        for topic in self.subscriptions:
            if v5:
                # Retained states are sent only when the subscription is new (MQTT 5 retain
                # handling 1), i.e. on the first start of a session, not on every reconnect.
                wanted.append((topic, SubscribeOptions(qos=1, retainHandling=1)))
            elif not topic.endswith("/status") or not session_present:
                wanted.append((topic, 1))  # 3.1.1 would resend every retained state
        _result, self._subscribe_mid = client.subscribe(wanted)

    def _on_subscribe(
        self, _c: mqtt.Client, _ud: Any, mid: int, reasons: list[Any], _props: Any
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("MQTT subscription refused: %s", ", ".join(failed))
        elif mid == self._subscribe_mid:
            log.info("MQTT subscriptions acknowledged; bridging")
            self.subscribed.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if self.metrics:
            self.metrics.bridge_connected.set(0)
        if not self.stop.is_set():
            log.warning("MQTT disconnected (%s)", reason)

    def _on_message(self, _c: mqtt.Client, _ud: Any, message: mqtt.MQTTMessage) -> None:
        # The broker's flow control (receive maximum) bounds the inbox.
        self.inbox.put(
            _Inbound(
                message.topic,
                bytes(message.payload),
                bool(message.retain),
                message.mid,
                message.qos,
                self._connection,
            )
        )

    def connect(self) -> None:
        """Prepare the MQTT connection; :meth:`_pump` connects (and reconnects) with backoff."""
        s = self.mqtt_settings
        self.client.connect_async(
            s.host, s.port, keepalive=s.keepalive, **connect_options(self.config)
        )
        self._mqtt_down, self._reconnect_at = True, self.clock()

    def _pump(self, timeout: float) -> None:
        """Do the MQTT network work in this thread (read, write, keepalive), or reconnect.

        One thread does MQTT I/O, decoding and acknowledgements, so there is no queue hand-off
        and thread switch per message. It drives paho through its external-loop API
        (``loop_read``, ``loop_write``, ``loop_misc``) on a
        :class:`~connectors.bridge.buffered.BufferedSocket`: one ``select`` and one ``recv``
        bring many packets, which are then read from memory (up to ``_READ_BURST`` per turn,
        so acknowledgements and Kafka keep up). The loop never blocks long (Kafka ``send``
        waits at most 5 s), so keepalives keep going.
        """
        if self._mqtt_down:
            if self.clock() < self._reconnect_at:
                time.sleep(timeout)
                return
            try:
                self.client.reconnect()
                self._mqtt_down = False
            except OSError as exc:
                self._schedule_reconnect(f"cannot connect: {exc}")
            self._flush()
            return
        sock = self.client.buffered_socket()
        if sock is None:  # paho closed it (keepalive timeout, protocol error)
            if not self.stop.is_set():
                self._schedule_reconnect("connection closed")
            return
        rc = mqtt.MQTT_ERR_SUCCESS
        readable = sock.pending() > 0
        if not readable:
            try:
                ready, writable, _ = select.select(
                    [sock], [sock] if sock.want_flush else [], [], timeout
                )
            except (OSError, ValueError) as exc:
                self._schedule_reconnect(f"socket error: {exc}")
                return
            readable = bool(ready)
            if writable:
                sock.flush()
        if readable:
            for _ in range(_READ_BURST):
                rc = self.client.loop_read()
                if rc != mqtt.MQTT_ERR_SUCCESS or not sock.pending():
                    break
        if rc == mqtt.MQTT_ERR_SUCCESS:
            rc = self.client.loop_misc()  # keepalive
        if rc == mqtt.MQTT_ERR_SUCCESS and self.client.want_write():
            rc = self.client.loop_write()  # packets paho queued inside a callback
        self._flush()
        if rc != mqtt.MQTT_ERR_SUCCESS and not self.stop.is_set():
            self._schedule_reconnect(mqtt.error_string(rc))

    def _flush(self) -> None:
        """Send what paho wrote (acknowledgements, pings) to the broker now."""
        sock = self.client.buffered_socket()
        if sock is not None:
            sock.flush()

    def _schedule_reconnect(self, why: str) -> None:
        self._mqtt_down = True
        self._reconnect_at = self.clock() + self._backoff_s
        log.warning(
            "MQTT %s:%d: %s; reconnecting in %.0fs",
            self.mqtt_settings.host,
            self.mqtt_settings.port,
            why,
            self._backoff_s,
        )
        self._backoff_s = min(self._backoff_s * 2, 30.0)

    # -- Kafka side ---------------------------------------------------------------------
    def _send(self, record: _Record) -> None:
        record.sent_at = self.clock()
        try:
            future = self.producer.send(
                record.topic,
                value=record.value,
                key=record.key,
                partition=record.partition,
                headers=record.headers,
            )
        except KafkaError as exc:  # buffer full or metadata unavailable: Kafka is away
            self._failed(record, exc)
            return
        future.add_callback(lambda _meta: self.results.put((record, None)))
        future.add_errback(lambda exc: self.results.put((record, exc)))

    def _failed(self, record: _Record, exc: BaseException) -> None:
        if not self._kafka_failing:
            log.warning(
                "Kafka did not take a record for %s (%s); retrying every %.1fs, "
                "MQTT acknowledgements wait",
                record.topic,
                exc,
                self.config.retry_backoff_s,
            )
        self._kafka_failing = True
        if self.metrics:
            self.metrics.bridge_produce_errors.inc()
        self.retry.append((self.clock() + self.config.retry_backoff_s, record))

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
            per_district = Counter(str(o.get("district", "")) for o in batch.objects)
            for district, n in per_district.items():
                self.metrics.district_readings.labels(district).inc(n)

    def _dead_letter(self, seq: int, dead: DeadLetter, topic: str) -> None:
        self.tracker.expect(seq)
        self.stats["dead_letters"] += 1
        if self.metrics:
            self.metrics.dead_letters.labels("bridge", dead.reason).inc()
        log.info("dead letter from %s: %s (%s)", topic[:256], dead.reason, dead.detail)
        self._send(
            _Record(self.topics.deadletter, None, dead.source_id.encode(), dead.encode(), {seq})
        )

    # -- one message --------------------------------------------------------------------
    def _handle(self, message: _Inbound) -> None:
        self._seq += 1
        seq = self._seq
        self.held[seq] = message
        self.tracker.open(seq)
        self.stats["messages"] += 1
        if self.metrics:
            self.metrics.bridge_messages.inc()
        now = datetime.now(UTC)
        if message.topic.endswith("/status"):
            self._handle_status(seq, message, now)
        else:
            self._handle_telemetry(seq, message, now)
        self.tracker.seal(seq)

    def _handle_telemetry(self, seq: int, message: _Inbound, now: datetime) -> None:
        decoded = decode_message(message.topic, message.payload, now, self.registry, self.limits)
        for _partition in self.packer.add(seq, decoded.readings, self.clock()):
            self.tracker.expect(seq)
        for dead in decoded.rejections:
            self._dead_letter(seq, dead, message.topic)
        quarantine = self.config.quarantine_topic
        if decoded.quarantined and quarantine:
            readings = [r.to_dict() for r in decoded.quarantined]
            self.tracker.expect(seq)
            if self.metrics:
                self.metrics.bridge_quarantined.inc(len(readings))
            key = decoded.quarantined[0].device_id.encode()
            value = _encode_readings(readings)
            self._send(_Record(quarantine, None, key, value, {seq}))

    def _handle_status(self, seq: int, message: _Inbound, now: datetime) -> None:
        if not message.payload.strip():
            return  # a retained status being cleared: nothing to report
        if message.retain and self.config.share_group is not None:
            # A snapshot sent on subscribing (live messages arrive with retain 0): with a share
            # group, brokers that send one send it to every replica; see the module docstring.
            self.stats["snapshots_ignored"] += 1
            log.debug("ignoring the retained status on %s (share group)", message.topic[:256])
            return
        decoded = decode_status(message.topic, message.payload, now, self.registry)
        if isinstance(decoded, DeadLetter):
            self._dead_letter(seq, decoded, message.topic)
            return
        # A replica of a share group sees only some of a device's messages, so its memory of
        # the last state is not the device's: every status message becomes an event there.
        if self.config.share_group is None and not self.status_changes.is_change(decoded):
            return
        self._send_status(seq, decoded, now, message.retain)

    def _send_status(self, seq: int, status: DeviceStatus, now: datetime, retained: bool) -> None:
        event = status_event(status, self.registry.device(status.device_id), now, retained)
        self.tracker.expect(seq)
        self.status_changes.published(status)
        self.stats["status_events"] += 1
        if self.metrics:
            self.metrics.bridge_status_events.labels(status.status).inc()
        log.info(
            "device %s is %s since %s%s",
            status.device_id,
            status.status,
            status.time.isoformat(),
            " (retained)" if retained else "",
        )
        self._send(
            _Record(self.topics.events, None, event.key, event.encode(), {seq}, _EVENT_HEADERS)
        )

    # -- acknowledgements ---------------------------------------------------------------
    def _settle(self) -> None:
        while True:
            try:
                record, exc = self.results.get_nowait()
            except queue.Empty:
                break
            if exc is not None:
                self._failed(record, exc)
                continue
            if self._kafka_failing:
                self._kafka_failing = False
                log.info("Kafka takes records again; resending what waited")
                if self.metrics:
                    self.metrics.bridge_reconnects.labels("kafka").inc()
            if self.metrics:
                self.metrics.bridge_produce_latency.observe(self.clock() - record.sent_at)
            for seq in record.message_ids:
                self.tracker.done(seq)
        now = self.clock()
        due = [r for t, r in self.retry if t <= now]
        self.retry = [(t, r) for t, r in self.retry if t > now]
        for record in due:
            self._send(record)
        for seq in self.tracker.releasable():
            held = self.held.pop(seq)
            if held.connection == self._connection:
                self.client.ack(held.mid, held.qos)
                self.stats["acked"] += 1
        if self.metrics:
            self.metrics.bridge_inflight.set(len(self.tracker) + self.inbox.qsize())

    @property
    def unacknowledged(self) -> int:
        """MQTT messages received and not yet acknowledged (decoded or still in the inbox)."""
        return len(self.tracker) + self.inbox.qsize()

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> None:
        """Connect, move messages until ``stop`` is set, then shut down cleanly."""
        self.connect()
        last_log = self.clock()
        idle_wait = min(max(self.config.linger_s / 2, 0.001), 0.005)
        busy = False
        try:
            while not self.stop.is_set():
                self._pump(0.0 if busy else idle_wait)
                busy = not self.inbox.empty()
                while not self.inbox.empty():
                    self._handle(self.inbox.get_nowait())
                for batch in self.packer.ready(self.clock()):
                    self._send_batch(batch)
                self._settle()
                self._flush()
                if self.clock() - last_log >= 10:
                    last_log = self.clock()
                    log.info("bridge: %s, unacknowledged %d", self.stats, self.unacknowledged)
            self._shutdown()
        finally:
            self.producer.close(timeout=10)

    def _shutdown(self) -> None:
        """Finish what is in hand and ack what Kafka acknowledged (10 s at most).

        The subscription is kept (the session is persistent, so the broker queues new
        messages for the next start); messages not acknowledged by then are redelivered.
        """
        for batch in self.packer.drain():
            self._send_batch(batch)
        self.producer.flush(timeout=10)
        deadline = self.clock() + 10
        while len(self.tracker) and not self.retry and self.clock() < deadline:
            self._settle()
            self._flush()
            time.sleep(0.01)
        if not self._mqtt_down:
            self.client.disconnect()
        log.info(
            "bridge stopped: %s; %d messages left unacknowledged for redelivery",
            self.stats,
            self.unacknowledged,
        )


def _encode_readings(readings: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"schema": SCHEMA, "readings": readings})
