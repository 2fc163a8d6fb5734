"""Faust wiring of the alerter: forwarders, the evaluator and the tick timer.

Thin around the pure parts (:mod:`streams.alerting.inputs`, :mod:`streams.alerting.partition`);
the design and the no-duplicate argument are in ``streams/alerting/__init__.py``.

* Forwarders (stage 1, stateless): ``ioc.readings``, ``ioc.indicators``, ``ioc.events`` and
  ``ioc.alert-actions`` → the internal topic, partitioned by fingerprint: the observations of
  the input messages of ``pack_linger_s`` are gathered (:mod:`~streams.alerting.packing`) and
  go as one ``pack`` per internal partition (sooner once :data:`PACK_MAX_OBSERVATIONS` wait,
  and at every rebalance); actions go one by one keyed by their fingerprint. An input message
  is acknowledged once Kafka has acknowledged every internal message made from it.
* Evaluator (stage 2): one internal message at a time; publishes the events on ``ioc.alerts``
  and waits for Kafka's acknowledgement, *then* updates the state records. Records are
  written to the table's changelog in rounds (every :data:`FLUSH_INTERVAL_S`, after
  :data:`FLUSH_MAX_INPUTS` inputs, and at every rebalance), each fingerprint once per round
  with its latest record, as Kafka Streams' record cache does; the messages of a round are
  acknowledged once its records are durable. So a device reporting every second costs one
  changelog record a round, not one per reading, and an alert's events are never delayed.
* Tick timer: every ``tick_interval_s``, a tick to each internal partition this worker owns,
  at the local clock held back while the inputs are being caught up
  (:mod:`streams.alerting.clock`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faust.types import TP

from connectors.metrics import Metrics
from connectors.registry import Registry
from connectors.settings import TopicSettings
from schemas.alerts import AlertFormatError, decode_action, encode_event
from schemas.events import Event, EventFormatError
from schemas.readings import ReadingFormatError, decode_batch_objects
from streams.agents.offsets import check_contiguous
from streams.alerting.clock import Progress, tick_time
from streams.alerting.inputs import (
    TICK_KEY,
    ActionInput,
    AlertInput,
    AlertInputError,
    ObservationBuilder,
    ObsInput,
    TickInput,
    decode_input,
    encode_input,
    group_observations,
    reading_observations,
)
from streams.alerting.lag import TopicPartitionKey, topic_lags
from streams.alerting.packing import PackBuffer
from streams.alerting.partition import AlertPartition
from streams.alerts.rules import RuleSet

log = logging.getLogger(__name__)

TABLE_NAME = "alert-state"
LAG_REPORT_S = 5.0  # how often the consumer-lag gauges are refreshed
FLUSH_INTERVAL_S = 1.0  # longest time a changed state record waits (offsets commit every 1 s)
FLUSH_MAX_INPUTS = 1_000  # inputs applied before their records are written whatever the time
PACK_KEY = b"\x00pack"  # key of a pack (sent to an explicit partition; keys are not used)
PACK_MAX_OBSERVATIONS = 5_000  # observations gathered before the packs go whatever the linger


def inputs_topic_name(app_id: str) -> str:
    """The internal topic keyed by fingerprint."""
    return f"{app_id}-alert-inputs"


@dataclass(slots=True)
class Stats:
    """Counters since start (logged periodically when they change)."""

    actions: int = 0
    events: int = 0
    forwarded: int = 0
    inputs: int = 0
    rejected: int = 0
    skipped: int = 0
    ticks: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class AlerterAgents:
    """Registers the alerter's agents, table and timers on a Faust app."""

    def __init__(
        self,
        app: Any,
        topics: TopicSettings,
        rules: RuleSet,
        *,
        partitions: int,
        registry: Registry | None = None,
        tick_interval_s: float = 5.0,
        tick_hold_s: float = 30.0,
        stats_interval_s: float = 30.0,
        metrics: Metrics | None = None,
        pack_linger_s: float = 0.02,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.rules = rules
        self.partitions = partitions
        self.builder = ObservationBuilder(registry)
        self.inputs_name = inputs_topic_name(app.conf.id)
        self.inputs = app.topic(
            self.inputs_name, internal=True, partitions=partitions, key_type=bytes, value_type=bytes
        )
        self.alerts = app.topic(topics.alerts, key_type=bytes, value_type=bytes)
        self.table = app.Table(
            TABLE_NAME,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            help="alert state per fingerprint and the last input offset applied to it",
        )
        self.stats = Stats()
        self._last_stats: dict[str, int] = {}
        self._parts: dict[int, AlertPartition] | None = None
        self._next_offset: dict[int, int] = {}  # internal topic: partition -> next offset
        self._next_input: dict[TopicPartitionKey, int] = {}  # input topics, for the lag
        self._background: set[asyncio.Future[Any]] = set()
        self._metrics_wanted = rules.metrics()
        self._unflushed: dict[tuple[int, bytes], bytes] = {}  # (partition, key) -> record
        self._unacked: list[Any] = []  # applied inputs whose records are not yet durable
        absence = (r.name for r in rules.rules if r.kind == "absence")
        self._packs = PackBuffer(partitions, absence)
        self._packed: list[Any] = []  # input messages whose observations are in _packs
        self._pack_linger_s = pack_linger_s
        self._pack_timer: asyncio.TimerHandle | None = None
        # plain loop timers, not Faust's: those end when the app starts stopping, while Faust
        # then waits for every input to be acknowledged
        self._flush_timer: asyncio.TimerHandle | None = None
        self._input_topics = {topics.readings, topics.indicators, topics.events}
        self._lag_topics = (*sorted(self._input_topics | {topics.alert_actions}), self.inputs_name)
        self._progress: dict[Any, Progress] = {}
        self._rebalanced = time.monotonic()
        self._tick_hold = timedelta(seconds=tick_hold_s)
        raw = {"key_type": bytes, "value_type": bytes}
        readings = app.topic(topics.readings, **raw)
        indicators = app.topic(topics.indicators, **raw)
        actions = app.topic(topics.alert_actions, **raw)
        events = app.topic(topics.events, **raw)
        app.agent(readings, name="alert-forward-readings")(self._forwarder(self._from_readings))
        app.agent(indicators, name="alert-forward-indicators")(
            self._forwarder(self._from_indicators)
        )
        app.agent(actions, name="alert-forward-actions")(self._forwarder(self._from_actions))
        app.agent(events, name="alert-forward-events")(self._forwarder(self._from_events))
        app.agent(self.inputs, name="alert-evaluate")(self.evaluate)
        app.timer(tick_interval_s, name="alert-ticks")(self.send_ticks)
        app.timer(stats_interval_s, name="alert-stats")(self.log_stats)
        if metrics is not None:
            app.timer(LAG_REPORT_S, name="alert-lag")(self.report_lag)
        app.on_partitions_assigned.connect(self._on_rebalance)
        app.on_partitions_revoked.connect(self._on_rebalance)
        app.on_rebalance_complete.connect(self._on_rebalance_complete)

    # --- rebalances ---------------------------------------------------------------------------

    async def _on_rebalance(self, sender: Any, *args: Any, **_: Any) -> None:
        await self.send_packs()  # gathered inputs go out before their partitions may move
        self.flush()  # records of partitions about to move must be on their changelog now
        self._parts = None  # rebuilt from the recovered table at the next internal message
        self._next_offset.clear()
        self._next_input.clear()
        self._progress.clear()
        self._rebalanced = time.monotonic()

    async def _on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        # faust-streaming 0.15.3 clears the agents' queues when it resumes flow control at
        # the end of recovery (see streams/agents/readings.py): keep input out until then.
        self.app.flow_control.suspend()

    def _part(self, partition: int) -> AlertPartition:
        if self._parts is None:
            records = [(bytes(k), bytes(v)) for k, v in self.table.data.items() if v]
            self._parts = AlertPartition.restore(records, self.rules)
            states = [s.state for part in self._parts.values() for s in part.states.values()]
            log.info(
                "alert states restored from the changelog: %d (%d open) in partitions %s",
                len(states),
                sum(1 for s in states if s.is_open),
                sorted(self._parts) or "none",
            )
        found = self._parts.get(partition)
        if found is None:
            found = self._parts[partition] = AlertPartition(partition, self.rules)
        return found

    # --- stage 1: forwarders ------------------------------------------------------------------

    def _from_readings(self, value: bytes) -> list[tuple[bytes, AlertInput]]:
        try:
            objs = decode_batch_objects(value)
        except ReadingFormatError:
            return []  # the stream worker dead-letters malformed batches
        now = datetime.now(UTC)
        obs = reading_observations(self.builder, objs, self._metrics_wanted)
        return [(i.fingerprint.encode(), i) for i in group_observations(self.rules, obs, now)]

    def _from_indicators(self, value: bytes) -> list[tuple[bytes, AlertInput]]:
        try:
            obs = self.builder.from_indicator_message(value)
        except ValueError as exc:
            log.debug("indicator record skipped: %s", exc)
            return []
        now = datetime.now(UTC)
        return [(i.fingerprint.encode(), i) for i in group_observations(self.rules, [obs], now)]

    def _from_events(self, value: bytes) -> list[tuple[bytes, AlertInput]]:
        try:
            obs = self.builder.from_event(Event.decode(value))
        except (EventFormatError, ValueError) as exc:
            log.debug("event skipped: %s", exc)
            return []
        if obs is None:
            return []
        now = datetime.now(UTC)
        return [(i.fingerprint.encode(), i) for i in group_observations(self.rules, [obs], now)]

    def _from_actions(self, value: bytes) -> list[tuple[bytes, AlertInput]]:
        try:
            action = decode_action(value)
        except AlertFormatError as exc:
            log.warning("malformed alert action skipped: %s", exc)
            self.stats.rejected += 1
            return []
        self.stats.actions += 1
        return [(action.fingerprint.encode(), ActionInput(action))]

    def _forwarder(
        self, convert: Callable[[bytes], list[tuple[bytes, AlertInput]]]
    ) -> Callable[[Any], Awaitable[None]]:
        async def forward(stream: Any) -> None:
            async for event in stream.noack().events():
                message = event.message
                items = convert(message.value or b"")
                lag = self.app.consumer.highwater(message.tp) - message.offset - 1
                stamp = datetime.fromtimestamp(message.timestamp, UTC)
                self._progress[message.tp] = Progress(max(lag, 0), stamp)
                self._next_input[(message.tp.topic, message.tp.partition)] = message.offset + 1
                self.stats.forwarded += len(items)
                observations = [i for _, i in items if isinstance(i, ObsInput)]
                if not observations:
                    sends = [
                        await self.inputs.send(key=key, value=encode_input(item), force=True)
                        for key, item in items
                    ]
                    self._ack_when_durable([event], sends)
                    continue
                self._packs.add(observations)
                self._packed.append(event)
                if self._packs.observations >= PACK_MAX_OBSERVATIONS:
                    await self.send_packs()
                elif self._pack_timer is None:
                    self._pack_timer = asyncio.get_running_loop().call_later(
                        self._pack_linger_s, self._send_packs_soon
                    )

        forward.__qualname__ = forward.__name__ = f"forward{convert.__name__}"
        return forward

    def _send_packs_soon(self) -> None:
        self._pack_timer = None
        task = asyncio.ensure_future(self.send_packs())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def send_packs(self) -> None:
        """Send the gathered observations, one pack per internal partition; their input
        messages are acknowledged once every pack is durable."""
        if self._pack_timer is not None:
            self._pack_timer.cancel()
            self._pack_timer = None
        if not self._packed:
            return
        packs, events = self._packs.take(), self._packed
        self._packed = []
        sends = [
            await self.inputs.send(key=PACK_KEY, value=encode_input(pack), partition=p, force=True)
            for p, pack in sorted(packs.items())
        ]
        self._ack_when_durable(events, sends)

    # --- stage 2: evaluator -------------------------------------------------------------------

    async def evaluate(self, stream: Any) -> None:
        """One internal message at a time; acknowledged once its records are durable."""
        async for event in stream.noack().events():
            message = event.message
            gap = check_contiguous(self._next_offset, message)
            if gap is not None:
                log.error("%s", gap)
                await self.app.crash(gap)
                raise gap
            try:
                await self.handle(message)
            except Exception as exc:
                log.exception("evaluating %s failed; stopping the alerter", message)
                await self.app.crash(exc)
                raise
            self._unacked.append(event)
            if self._flush_timer is None:
                self._flush_timer = asyncio.get_running_loop().call_later(
                    FLUSH_INTERVAL_S, self.flush
                )
            if len(self._unacked) >= FLUSH_MAX_INPUTS:
                self.flush()

    async def handle(self, message: Any) -> None:
        """Apply one internal message: its events are durable on return, its changed state
        records are in the table and wait for the next :meth:`flush`."""
        p: int = message.partition
        try:
            item = decode_input(message.value or b"")
        except AlertInputError as exc:
            log.warning("partition %d offset %d: %s", p, message.offset, exc)
            self.stats.rejected += 1
            return
        self.stats.inputs += 1
        if isinstance(item, TickInput):
            self.stats.ticks += 1
        part = self._part(p)
        outcome = part.apply(message.offset, item)
        if outcome.replayed:
            self.stats.skipped += 1
        if outcome.rejected:
            self.stats.rejected += 1
            log.warning(
                "partition %d offset %d: not applied: %s", p, message.offset, outcome.rejected
            )
        sends = [
            await self.alerts.send(key=e.fingerprint.encode(), value=encode_event(e), force=True)
            for e in outcome.events
        ]
        if self.metrics is not None:
            for e in outcome.events:
                self.metrics.alert_events.labels(e.kind).inc()
        if sends:
            await asyncio.gather(*sends)  # events durable before the state that follows them
        for e in outcome.events:
            log.info("alert %s %s (%s): %s", e.fingerprint, e.kind, e.rule, e.detail)
        self.stats.events += len(sends)
        for fp in outcome.dirty:
            key = fp.encode()
            record = part.record(fp)
            self.table.data[key] = record
            self._unflushed[(p, key)] = record

    def flush(self) -> None:
        """Write the changed state records (the latest of each) to the changelog and
        acknowledge the inputs applied so far once they are durable. Synchronous: nothing can
        be applied between taking the round and sending it."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._unacked and not self._unflushed:
            return
        records, self._unflushed = self._unflushed, {}
        inputs, self._unacked = self._unacked, []
        pending = [
            self.table.send_changelog(p, key, record, "raw", "raw")
            for (p, key), record in records.items()
        ]
        self._ack_when_durable(inputs, pending)

    # --- timers -------------------------------------------------------------------------------

    async def send_ticks(self) -> None:
        """A tick to every internal partition this worker owns, at the wall clock bounded by
        the inputs' progress (:func:`~streams.alerting.clock.tick_time`)."""
        mine = sorted(
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.inputs_name
        )
        if not mine:
            return
        assigned = [tp for tp in self.app.consumer.assignment() if tp.topic in self._input_topics]
        since = timedelta(seconds=time.monotonic() - self._rebalanced)
        now = tick_time(datetime.now(UTC), assigned, self._progress, since, self._tick_hold)
        if now is None:
            return  # an input partition may still have a backlog: see streams/alerting/clock.py
        value = encode_input(TickInput(now))
        for p in mine:
            await self.inputs.send(key=TICK_KEY, value=value, partition=p, force=True)

    async def report_lag(self) -> None:
        """Set ``iocstream_consumer_lag_records{component="alerter"}`` for every input topic
        and the internal topic (:mod:`streams.alerting.lag`). The end offsets are asked of the
        broker: the consumer's own high watermarks are as of its last fetch, which stops
        while a backlog fills Faust's buffers, exactly when the lag matters. If the broker
        does not answer within the report interval, the gauges keep their last values."""
        if self.metrics is None:
            return
        positions = dict(self._next_input)
        positions.update(((self.inputs_name, p), o) for p, o in self._next_offset.items())
        try:
            ends = await asyncio.wait_for(self._end_offsets(list(positions)), LAG_REPORT_S)
        except Exception as exc:  # noqa: BLE001 - consumer not started, rebalance, timeout
            log.debug("end offsets unavailable, consumer lag not updated: %r", exc)
            return
        for topic, records in topic_lags(positions, ends.get, self._lag_topics).items():
            self.metrics.consumer_lag.labels("alerter", topic).set(records)

    async def _end_offsets(self, keys: list[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
        if not keys:
            return {}
        found = await self.app.consumer.highwaters(*(TP(*k) for k in keys))
        return {(tp.topic, tp.partition): int(end) for tp, end in found.items()}

    async def log_stats(self) -> None:
        """Log the counters (INFO) when they changed since the last time."""
        now = self.stats.as_dict()
        if now != self._last_stats:
            log.info("alerter: %s", ", ".join(f"{k}={v}" for k, v in now.items()))
            self._last_stats = now

    # --- acknowledgements ---------------------------------------------------------------------

    def _ack_when_durable(self, events: list[Any], pending: list[Awaitable[Any]]) -> None:
        if not pending:
            for event in events:
                event.ack()
            return
        done: asyncio.Future[list[Any]] = asyncio.gather(*pending)
        done.add_done_callback(self._acker(events))

    def _acker(self, events: list[Any]) -> Callable[[asyncio.Future[list[Any]]], None]:
        def ack(fut: asyncio.Future[list[Any]]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
                first = events[0].message if events else None
                log.error(
                    "records of %d input(s) from %s not written: %r; stopping",
                    len(events),
                    first,
                    exc,
                )
                task = asyncio.ensure_future(self.app.crash(exc))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                return
            for event in events:
                event.ack()

        return ack
