"""Faust wiring of the reading windows: ``ioc.readings`` -> ``ioc.indicators``.

Windows: 1-minute panes per device and metric, and the derived windows merged from them
(1 h, hopping 5/15 min, local calendar days; ``streams/window_specs.py``), all closed by the
partition's watermark, which idle-partition ticks (``streams/agents/ticks.py``) advance when
a partition goes quiet.

One agent consumes ``ioc.readings``. Each message is a batch of readings of devices hashing
to the message's partition; it is decoded once and applied to that partition's
:class:`~streams.agents.partition.PartitionState` (pure). Closed windows go to
``ioc.indicators``; late, malformed and misrouted readings (and undecodable messages, reason
``malformed_payload``) go to ``ioc.deadletter``. The state lives in a Faust table whose
changelog topic is partitioned like the input. Every ``checkpoint_interval_s`` the agent
writes each device record changed since the last checkpoint once, then the partition record,
all to changelog partition ``p`` (batching the table updates: a device sending every second
costs one record per checkpoint, not one per message).

Why no reading is lost and none is counted twice after a crash (SIGKILL included)
---------------------------------------------------------------------------------

Facts relied on:

F1. A device record holds the device's open windows *and* ``o``, the last input offset whose
    readings of that device are included. Both change in one record, so a restored record is
    always a consistent snapshot.
F2. Records of partition ``p`` are written in processing order to changelog partition ``p``:
    a checkpoint hands them to aiokafka's producer one ``send`` at a time, in order (not
    through Faust's ``send_changelog`` buffer), aiokafka appends them to the partition's
    batch in that order and sends at most one batch per partition at a time, retries
    included (``aiokafka/producer/sender.py`` mutes the partition while a batch is in
    flight). So what survives a crash is a *prefix* of the writes, and the table restored
    from the changelog (last record per key) is the state after that prefix.
F3. An input message is acknowledged to Faust (``event.ack()``, the stream runs with
    ``noack()``) only when every record of the first checkpoint after it has been
    acknowledged by Kafka; Faust
    commits an offset only when all messages before it are acknowledged. So a committed
    offset ``C`` means every record derived from messages ``< C`` is durable. (Faust's own
    flush before commit is not relied on; see the report in ``streams/worker.py``.)
F4. Before a checkpoint writes any record including message ``o``, the indicators of the
    windows ``o`` closes and the dead letters of ``o`` are acknowledged: processing hands
    every output to the producer and keeps its future; the checkpoint (under the processing
    lock, so no message is half-done) first awaits all of them. So a durable record of ``o``
    implies durable outputs of ``o``; in particular a window is never removed from the state
    before its indicator is durable. Processing itself never waits for Kafka.
F5. Lateness and closing depend only on the order of readings (``streams/windows.py``).

After a restart the partition record says ``o_w`` (all records up to and including those of
message ``o_w`` are durable, by F2, since it is written last for ``o_w``) and consumption
resumes at the committed ``C <= o_w + 1`` (F3). Messages ``C..o_w`` are skipped entirely:
their readings are in the device records (F1, F2) and their outputs are durable (F4).
Messages after ``o_w`` are processed from the exact watermark of ``o_w``; a device whose
record already includes a message (``o >= offset``, a partial prefix of ``o_w + 1``) has its
readings of that message skipped but still advances the watermark, so every later reading is
judged late or not exactly as in the uninterrupted run (F5). Hence every reading is counted
exactly once, each window closes after the same message as in an uninterrupted run and with
the same contents; a window whose closing was interrupted may be emitted twice, with
identical values and revision, which consumers deduplicate by key.

Two faust-streaming 0.15.3 races this module guards against
---------------------------------------------------------

* Lost queue after recovery. ``Recovery.on_recovery_completed``
  (``faust/tables/recovery.py``) resumes the input partitions and awaits ``perform_seek()``
  while flow control is already active (it was resumed for the changelog restore), so the
  fetcher delivers input messages into the agent's queue; it then calls
  ``app.flow_control.resume()``, which *clears* every ``clear_on_resume`` queue
  (``mode/utils/queues.py``, ``FlowControlEvent.resume``). The messages in the queue at that
  moment are never processed and never acknowledged, and the following ones are: the windows
  then close without them. Seen here on a restart with a backlog, about every other time.
  Workaround: on ``app.on_rebalance_complete`` (sent first thing in ``on_recovery_completed``)
  the agent suspends flow control, so nothing is queued until Faust resumes it.
* Defence in depth: the agent checks that each partition's offsets arrive without gaps
  within an assignment. A gap means Faust dropped messages; processing on would emit wrong
  windows, so the worker stops instead (the missing messages were never acknowledged, so the
  committed offset stays before them and a restart processes them).

Emission: a window is emitted once, when it closes (end + grace); a reading within grace
updates it before that, so records carry ``revision`` 0 and there are no update records. A
closed window is final: later readings are dead-lettered as ``late``.

Throughput: per message one decode, whole-batch validation and plain-dict aggregation into
one pane per reading (``PartitionState.apply``); derived windows are merged from panes once a
minute; per checkpoint one record per changed device and one partition record, sent straight
to aiokafka; processing never waits for Kafka (the checkpoint does, once for many messages,
awaiting the outputs' futures one by one rather than through ``gather``, whose callback per
future cost more than the wait). Outputs go straight to the producer with their partition
computed by ``connectors/kafka/partitioning.py`` (aiokafka's default partitioner, faster).
Measured by ``iocstream bench worker_throughput``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from faust.types import TP

from connectors.kafka.partitioning import key_partition
from connectors.metrics import Metrics
from connectors.settings import TopicSettings
from schemas.deadletter import DeadLetter
from schemas.indicator_values import encode_value
from schemas.indicators import encode_indicator
from schemas.readings import ReadingFormatError, format_time
from streams.agents.offsets import check_contiguous
from streams.agents.partition import BatchOutcome, PartitionState
from streams.agents.stateful import ack_when_durable, dead_letter
from streams.agents.ticks import IdleTracker, decode_message, encode_tick
from streams.gauge_levels import GaugeConfig
from streams.window_specs import WindowSpec
from streams.windows import TumblingWindows

log = logging.getLogger(__name__)

LAG_REPORT_S = 5.0  # how often the consumer-lag gauge is refreshed

TABLE_NAME = "reading-windows-1m"
IDLE_CHECKPOINT_S = 1.0  # an idle input is checkpointed this soon after the last checkpoint


class Stats:
    """Counters of what the agent did since start (logged periodically)."""

    __slots__ = ("accepted", "batches", "checkpoints", "closed", "derived", "late", "malformed",
                 "rejected", "replayed")  # fmt: skip

    def __init__(self) -> None:
        self.checkpoints = 0
        self.derived = 0
        self.batches = 0
        self.accepted = 0
        self.late = 0
        self.rejected = 0
        self.malformed = 0
        self.closed = 0
        self.replayed = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class ReadingWindowsAgent:
    """Holds the partition states and processes ``ioc.readings`` messages for one app."""

    def __init__(
        self,
        app: Any,
        topics: TopicSettings,
        windows: TumblingWindows,
        *,
        partitions: int,
        stats_interval_s: float = 30.0,
        specs: Sequence[WindowSpec] = (),
        checkpoint_interval_s: float = 2.0,
        idle_tick_s: float = 0.0,
        gauges: GaugeConfig | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.windows = windows
        self.specs = tuple(specs)
        self.gauges = gauges
        self.partitions = partitions
        self.checkpoint_interval_s = checkpoint_interval_s
        self._lock = asyncio.Lock()
        self._unacked: dict[int, list[Any]] = {}
        self._outputs: list[Awaitable[Any]] = []  # sent, not yet known durable
        self._deferred: asyncio.TimerHandle | None = None
        self._last_checkpoint = time.monotonic()
        self._idle = IdleTracker(idle_tick_s)
        self.readings_topic_name = topics.readings
        self.indicators_topic_name = topics.indicators
        self.readings = app.topic(topics.readings, key_type=bytes, value_type=bytes)
        self.indicators = app.topic(topics.indicators, key_type=bytes, value_type=bytes)
        self.deadletter = app.topic(topics.deadletter, key_type=bytes, value_type=bytes)
        self.table = app.Table(
            TABLE_NAME,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            help="open 1-minute windows per device, last applied offsets, watermarks",
        )
        self.stats = Stats()
        self._last_stats: dict[str, int] = {}
        self._states: dict[int, PartitionState] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        app.agent(self.readings, name="reading-windows")(self.process)
        app.timer(stats_interval_s, name="reading-windows-stats")(self.log_stats)
        app.timer(checkpoint_interval_s, name="reading-windows-checkpoint")(self.checkpoint)
        if metrics is not None:
            app.timer(LAG_REPORT_S, name="reading-windows-lag")(self.report_lag)
        if idle_tick_s > 0:
            app.timer(max(idle_tick_s / 4, 0.25), name="reading-windows-ticks")(self.send_ticks)
        self._next_offset: dict[int, int] = {}
        self._owned: set[int] = set()  # partitions of the readings topic assigned to us
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_rebalance_complete.connect(self._on_rebalance_complete)

    # --- rebalances ---------------------------------------------------------------------------

    async def _on_assigned(self, sender: Any, assigned: set[Any], **_: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == self.readings_topic_name)
        log.info("partitions of %s assigned: %s", self.readings_topic_name, mine or "none")
        self._owned = set(mine)  # Faust passes the whole new assignment
        self._states = None  # rebuilt from the (recovered) table at the next message
        self._next_offset.clear()
        self._unacked.clear()  # redelivered from the committed offset
        self._idle.forget()

    async def _on_revoked(self, sender: Any, revoked: set[Any], **_: Any) -> None:
        mine = sorted(tp.partition for tp in revoked if tp.topic == self.readings_topic_name)
        if mine:
            log.info("partitions of %s revoked: %s", self.readings_topic_name, mine)
        self._owned -= set(mine)
        self._states = None
        self._next_offset.clear()
        self._unacked.clear()
        self._idle.forget()

    async def _on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        # See "Lost queue after recovery" above: keep the input out of the agent's queue
        # until Faust resumes flow control at the end of on_recovery_completed.
        self.app.flow_control.suspend()

    def _load_states(self) -> dict[int, PartitionState]:
        """Rebuild the states of the owned partitions from the (recovered) table.

        Only owned partitions: the in-memory table keeps the records of partitions this
        worker owned before a rebalance, and a stale state must never send ticks or records
        to a partition another worker now owns. Each restored partition's next expected
        offset is its record's offset + 1: a first message after it would mean messages
        neither in the state nor processed (checked by ``check_contiguous``).
        """
        owned = self._owned
        records = [(bytes(k), bytes(v)) for k, v in self.table.data.items() if v]
        states = PartitionState.restore(
            records, self.windows, self.partitions, self.specs, self.gauges, owned=owned
        )
        for p, st in sorted(states.items()):
            if st.dropped_partials:
                log.warning(
                    "partition %d: dropped %d stored windows of window specs no longer configured",
                    p,
                    st.dropped_partials,
                )
            log.info(
                "partition %d state: offset %d, watermark %s, %d devices, %d open windows",
                p,
                st.offset,
                st.watermark.value_ms,
                len(st.devices),
                st.open_windows,
            )
            if st.offset >= 0:
                self._next_offset.setdefault(p, st.offset + 1)
        return states

    async def _expect_first(self, message: Any) -> None:
        """Seed the expected offset of a partition that has no state yet: its log start.

        No state means nothing of the partition was ever acknowledged (acknowledgements
        follow durable state records), so consumption must begin at the first offset the
        log still holds; a later first message means the consumer skipped messages.
        """
        p: int = message.partition
        try:
            starts = await self.app.consumer.earliest_offsets(message.tp)
        except Exception as exc:  # noqa: BLE001 - the check is a defence, not a dependency
            log.warning("partition %d: log start unknown (%r); first offset not checked", p, exc)
            return
        start = starts.get(message.tp)
        if start is not None:
            self._next_offset.setdefault(p, int(start))
        log.info(
            "partition %d: first message at offset %d (no state; log starts at %s)",
            p,
            message.offset,
            start,
        )

    def _state(self, partition: int) -> PartitionState:
        if self._states is None:
            self._states = self._load_states()
        state = self._states.get(partition)
        if state is None:
            state = self._states[partition] = PartitionState(
                partition, self.windows, self.partitions, self.specs, gauges=self.gauges
            )
        return state

    # --- processing ---------------------------------------------------------------------------

    async def process(self, stream: Any) -> None:
        """The agent: one message at a time, acknowledged once its records are durable."""
        async for event in stream.noack().events():
            message = event.message
            if self._states is None:
                self._states = self._load_states()  # seeds the expected offsets
            if message.partition not in self._next_offset:
                await self._expect_first(message)
            gap = check_contiguous(self._next_offset, message)
            if gap is not None:
                log.error("%s", gap)
                await self.app.crash(gap)
                raise gap
            try:
                async with self._lock:
                    await self.handle(message)
                    self._unacked.setdefault(message.partition, []).append(event)
            except Exception as exc:
                log.exception("processing %s failed; stopping the worker", message)
                await self.app.crash(exc)
                raise
            # checkpoint when the interval has passed, and soon after the input is drained
            # (so a stop, which waits for every taken message to be acknowledged, never waits
            # long on us; a plain loop callback, since Faust stops its timers first)
            since = time.monotonic() - self._last_checkpoint
            if since >= self.checkpoint_interval_s:
                await self.checkpoint()
            elif stream.channel.empty() and self._deferred is None:
                delay = max(0.0, IDLE_CHECKPOINT_S - since)
                self._deferred = asyncio.get_running_loop().call_later(
                    delay, self._deferred_checkpoint
                )

    async def handle(self, message: Any) -> None:
        """Process one input message: apply it and hand its outputs to the producer. Their
        durability is awaited, and state records are written, by :meth:`checkpoint`."""
        p: int = message.partition
        o: int = message.offset
        state = self._state(p)
        self.stats.batches += 1
        value: bytes = message.value or b""
        malformed: DeadLetter | None = None
        tick: int | None = None
        try:
            objs, tick = decode_message(value)
        except ReadingFormatError as exc:
            objs = []
            malformed = dead_letter("malformed_payload", str(exc), message, value)
        outcome = state.apply(o, objs, tick)
        if outcome.replayed:
            self.stats.replayed += 1
            return
        await self._emit(outcome, message, malformed)

    async def checkpoint(self) -> None:
        """Write every changed state record (F1-F2 below hold per record) and acknowledge the
        messages they cover once Kafka has the records.

        Runs under the processing lock, so it never sees a message whose outputs are not yet
        durable (F4). Called after a message when the interval has passed, 1 s after the
        input queue was found empty (so under full load records are batched, and an idle
        worker acknowledges promptly), and by a timer as a fallback.
        """
        async with self._lock:
            self._last_checkpoint = time.monotonic()
            self.stats.checkpoints += 1
            if self._outputs:
                outputs, self._outputs = self._outputs, []
                try:
                    # one by one: nearly all are done by now, and awaiting a done future
                    # costs far less than gather's callback per future
                    for output in outputs:
                        await output
                except Exception as exc:
                    log.error("indicators or dead letters not written: %r; stopping", exc)
                    await self.app.crash(exc)
                    raise
            if self._states is None:
                return
            data = self.table.data
            producer = self.app.producer
            changelog = self.table.changelog_topic.get_topic_name()
            for p, state in self._states.items():
                events = self._unacked.pop(p, [])
                pending: list[Awaitable[Any]] = []
                for key, record in state.checkpoint():
                    data[key] = record
                    # straight to aiokafka (ordered per partition, see F2) rather than through
                    # Faust's send_changelog buffer, which costs ~100 us a record
                    pending.append(await producer.send(changelog, key, record, p, None, None))
                if events:
                    ack_when_durable(events, pending, self._crash)

    def _deferred_checkpoint(self) -> None:
        self._deferred = None
        task = asyncio.ensure_future(self.checkpoint())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def send_ticks(self) -> None:
        """Append a watermark tick to every owned partition that has been idle long enough
        (see ``streams/agents/ticks.py``)."""
        if self._states is None:
            return
        now = time.monotonic()
        for p, state in sorted(self._states.items()):
            due = self._idle.due(p, state.watermark.value_ms, now)
            if due is not None:
                await self.readings.send(value=encode_tick(due), partition=p, force=True)
                log.info("partition %d idle: watermark tick to %s", p, due)

    async def _emit(
        self, outcome: BatchOutcome, message: Any, malformed: DeadLetter | None
    ) -> None:
        """Hand the message's indicators and dead letters to the producer (not awaited)."""
        sends: list[Awaitable[Any]] = []
        # straight to the producer: Faust's per-message Topic.send bookkeeping costs more
        # than the encoding; partitioned by key as aiokafka's default partitioner would, with
        # the faster murmur2 of connectors/kafka/partitioning.py (aiokafka's is the costliest step)
        producer = self.app.producer
        topic = self.indicators_topic_name
        count = self._partition_count(topic) if outcome.results or outcome.values else None
        for result in outcome.results:
            key = result.key.encode("utf-8")
            p = None if count is None else key_partition(key, count)
            sends.append(await producer.send(topic, key, encode_indicator(result), p, None, None))
        for derived in outcome.values:
            key = derived.key.encode("utf-8")
            p = None if count is None else key_partition(key, count)
            sends.append(await producer.send(topic, key, encode_value(derived), p, None, None))
        letters = [malformed] if malformed else []
        letters += [
            dead_letter(r.reason, r.detail, message, r.payload, source_id=r.device_id)
            for r in outcome.rejected
        ]
        for letter in letters:
            sends.append(
                await self.deadletter.send(
                    key=letter.source_id.encode("utf-8"), value=letter.encode(), force=True
                )
            )
        self._outputs += sends  # awaited by the next checkpoint, before any state record (F4)
        late = outcome.late
        self.stats.accepted += outcome.accepted
        self.stats.closed += len(outcome.results)
        self.stats.derived += len(outcome.values)
        self.stats.late += late
        self.stats.rejected += len(outcome.rejected) - late
        self.stats.malformed += 1 if malformed else 0
        if self.metrics is not None:
            self.metrics.worker_readings.inc(outcome.accepted)
            self.metrics.worker_windows_closed.inc(len(outcome.results))
            self.metrics.worker_late.inc(late)
            for letter in letters:
                self.metrics.dead_letters.labels("worker", letter.reason).inc()
        if outcome.results:
            log.debug(
                "partition %d offset %d: closed %d windows ending up to %s",
                message.partition,
                message.offset,
                len(outcome.results),
                format_time(max(r.window_end for r in outcome.results)),
            )
        if late:
            log.info("partition %d offset %d: %d late readings dead-lettered",
                     message.partition, message.offset, late)  # fmt: skip
        if malformed:
            log.warning(
                "partition %d offset %d: malformed batch dead-lettered: %s",
                message.partition,
                message.offset,
                malformed.detail,
            )

    def _partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic`` in the producer's metadata; ``None`` while unknown (the
        producer then waits for the metadata and partitions by key itself)."""
        try:
            cluster = self.app.producer._ensure_producer().client.cluster
            found = cluster.partitions_for_topic(topic)
        except Exception:  # noqa: BLE001 - an optimisation only: aiokafka partitions then
            return None
        return len(found) if found else None

    def _crash(self, exc: BaseException) -> None:
        task = asyncio.ensure_future(self.app.crash(exc))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def report_lag(self) -> None:
        """Set ``iocstream_consumer_lag_records{component="worker"}`` for the readings topic:
        the broker's end offset (as of the last fetch) minus the next offset to process,
        summed over the partitions read since the last rebalance. Never blocks."""
        if self.metrics is None:
            return
        total = 0
        for partition, next_offset in list(self._next_offset.items()):
            try:
                end = self.app.consumer.highwater(TP(self.readings_topic_name, partition))
            except Exception as exc:  # noqa: BLE001 - no fetch yet, or a rebalance began
                log.debug("no end offset for partition %d yet: %r", partition, exc)
                continue
            if end is not None:
                total += max(0, int(end) - next_offset)
        self.metrics.consumer_lag.labels("worker", self.readings_topic_name).set(total)

    async def log_stats(self) -> None:
        """Log the counters (INFO) when they changed since the last time."""
        now = self.stats.as_dict()
        if now != self._last_stats:
            log.info("reading windows: %s", ", ".join(f"{k}={v}" for k, v in now.items()))
            self._last_stats = now
