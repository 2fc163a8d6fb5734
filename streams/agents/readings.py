"""Faust wiring of the 1-minute reading windows: ``ioc.readings`` -> ``ioc.indicators``.

One agent consumes ``ioc.readings``. Each message is a batch of readings of devices hashing
to the message's partition; it is decoded once and applied to that partition's
:class:`~streams.agents.partition.PartitionState` (pure). Closed windows go to
``ioc.indicators``; late, malformed and misrouted readings (and undecodable messages, reason
``malformed_payload``) go to ``ioc.deadletter``. The state lives in a Faust table whose
changelog topic is partitioned like the input: for input message ``(p, o)`` the agent writes
each changed device record once, then the partition record, all to changelog partition ``p``.

Why no reading is lost and none is counted twice after a crash (SIGKILL included)
---------------------------------------------------------------------------------

Facts relied on:

F1. A device record holds the device's open windows *and* ``o``, the last input offset whose
    readings of that device are included. Both change in one record, so a restored record is
    always a consistent snapshot.
F2. Records of partition ``p`` are written in processing order to changelog partition ``p``:
    Faust's producer buffer is a FIFO drained by one task (``faust/transport/producer.py``,
    ``ProducerBuffer._handle_pending``) and aiokafka sends at most one batch per partition at a
    time, retries included (``aiokafka/producer/sender.py`` mutes the partition while a batch
    is in flight). So what survives a crash is a *prefix* of the writes, and the table
    restored from the changelog (last record per key) is the state after that prefix.
F3. An input message is acknowledged to Faust (``event.ack()``, the stream runs with
    ``noack()``) only when every record written for it has been acknowledged by Kafka; Faust
    commits an offset only when all messages before it are acknowledged. So a committed
    offset ``C`` means every record derived from messages ``< C`` is durable. (Faust's own
    flush before commit is not relied on; see the report in ``streams/worker.py``.)
F4. Before writing any record for message ``o``, the agent waits until the indicators of the
    windows ``o`` closes and the dead letters of ``o`` are acknowledged. So a durable record
    of ``o`` implies durable outputs of ``o``; in particular a window is never removed from
    the state before its indicator is durable.
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

Throughput: per message one decode, plain-dict aggregation, one record per changed device
and one partition record; no waiting on Kafka except when the message closes windows or has
dead letters (about once a minute per partition in normal operation).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from connectors.settings import TopicSettings
from schemas.deadletter import DeadLetter
from schemas.indicators import encode_indicator
from schemas.readings import ReadingFormatError, decode_batch_objects, format_time
from streams.agents.partition import BatchOutcome, PartitionState, partition_key
from streams.windows import TumblingWindows

log = logging.getLogger(__name__)

TABLE_NAME = "reading-windows-1m"


class Stats:
    """Counters of what the agent did since start (logged periodically)."""

    __slots__ = ("accepted", "batches", "closed", "late", "malformed", "rejected", "replayed")

    def __init__(self) -> None:
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
    ) -> None:
        self.app = app
        self.windows = windows
        self.partitions = partitions
        self.readings_topic_name = topics.readings
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
        self._next_offset: dict[int, int] = {}
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_rebalance_complete.connect(self._on_rebalance_complete)

    # --- rebalances ---------------------------------------------------------------------------

    async def _on_assigned(self, sender: Any, assigned: set[Any], **_: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == self.readings_topic_name)
        log.info("partitions of %s assigned: %s", self.readings_topic_name, mine or "none")
        self._states = None  # rebuilt from the (recovered) table at the next message
        self._next_offset.clear()

    async def _on_revoked(self, sender: Any, revoked: set[Any], **_: Any) -> None:
        mine = sorted(tp.partition for tp in revoked if tp.topic == self.readings_topic_name)
        if mine:
            log.info("partitions of %s revoked: %s", self.readings_topic_name, mine)
        self._states = None
        self._next_offset.clear()

    async def _on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        # See "Lost queue after recovery" above: keep the input out of the agent's queue
        # until Faust resumes flow control at the end of on_recovery_completed.
        self.app.flow_control.suspend()

    def _state(self, partition: int) -> PartitionState:
        if self._states is None:
            records = [(bytes(k), bytes(v)) for k, v in self.table.data.items() if v]
            self._states = PartitionState.restore(records, self.windows, self.partitions)
            for p, st in sorted(self._states.items()):
                log.info(
                    "partition %d state: offset %d, watermark %s, %d devices, %d open windows",
                    p,
                    st.offset,
                    st.watermark.value_ms,
                    len(st.devices),
                    st.open_windows,
                )
        state = self._states.get(partition)
        if state is None:
            state = self._states[partition] = PartitionState(
                partition, self.windows, self.partitions
            )
        return state

    # --- processing ---------------------------------------------------------------------------

    async def process(self, stream: Any) -> None:
        """The agent: one message at a time, acknowledged once its records are durable."""
        async for event in stream.noack().events():
            message = event.message
            expected = self._next_offset.get(message.partition)
            if expected is not None and message.offset > expected:
                exc = RuntimeError(
                    f"offsets {expected}..{message.offset - 1} of {message.tp} were dropped "
                    "by the consumer; stopping so that a restart processes them"
                )
                log.error("%s", exc)
                await self.app.crash(exc)
                raise exc
            self._next_offset[message.partition] = message.offset + 1
            try:
                pending = await self.handle(message)
            except Exception as exc:
                log.exception("processing %s failed; stopping the worker", message)
                await self.app.crash(exc)
                raise
            self._ack_when_durable(event, pending)

    async def handle(self, message: Any) -> list[Awaitable[Any]]:
        """Process one input message; returns the futures of its state records."""
        p: int = message.partition
        o: int = message.offset
        state = self._state(p)
        self.stats.batches += 1
        value: bytes = message.value or b""
        malformed: DeadLetter | None = None
        try:
            objs = decode_batch_objects(value)
        except ReadingFormatError as exc:
            objs = []
            malformed = self._dead_letter("malformed_payload", str(exc), message, "", value)
        outcome = state.apply(o, objs)
        if outcome.replayed:
            self.stats.replayed += 1
            return []
        await self._emit(outcome, message, malformed)
        table = self.table
        pending: list[Awaitable[Any]] = []
        for device_id in outcome.dirty:
            key = device_id.encode("utf-8")
            record = state.device_record(device_id)
            table.data[key] = record
            pending.append(table.send_changelog(p, key, record, "raw", "raw"))
        key = partition_key(p)
        record = state.partition_record()
        table.data[key] = record
        pending.append(table.send_changelog(p, key, record, "raw", "raw"))
        return pending

    async def _emit(
        self, outcome: BatchOutcome, message: Any, malformed: DeadLetter | None
    ) -> None:
        """Send the message's indicators and dead letters and wait until Kafka has them."""
        sends: list[Awaitable[Any]] = []
        for result in outcome.results:
            sends.append(
                await self.indicators.send(
                    key=result.key.encode("utf-8"), value=encode_indicator(result), force=True
                )
            )
        letters = [malformed] if malformed else []
        letters += [
            self._dead_letter(r.reason, r.detail, message, r.device_id, r.payload)
            for r in outcome.rejected
        ]
        for letter in letters:
            sends.append(
                await self.deadletter.send(
                    key=letter.source_id.encode("utf-8"), value=letter.encode(), force=True
                )
            )
        if sends:
            await asyncio.gather(*sends)
        late = outcome.late
        self.stats.accepted += outcome.accepted
        self.stats.closed += len(outcome.results)
        self.stats.late += late
        self.stats.rejected += len(outcome.rejected) - late
        self.stats.malformed += 1 if malformed else 0
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

    def _dead_letter(
        self, reason: Any, detail: str, message: Any, device_id: str, payload: bytes
    ) -> DeadLetter:
        key = message.key
        source_id = device_id or (key.decode("utf-8", "replace") if key else "")
        return DeadLetter(
            reason=reason,
            detail=detail,
            source=f"kafka:{message.topic}/{message.partition}/{message.offset}",
            source_id=source_id,
            received_at=datetime.now(UTC),
            payload=payload,
        )

    def _ack_when_durable(self, event: Any, pending: list[Awaitable[Any]]) -> None:
        if not pending:
            event.ack()
            return
        done: asyncio.Future[list[Any]] = asyncio.gather(*pending)
        done.add_done_callback(self._acker(event))

    def _acker(self, event: Any) -> Callable[[asyncio.Future[list[Any]]], None]:
        def ack(fut: asyncio.Future[list[Any]]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
                log.error("state records of %s not written: %r; stopping", event.message, exc)
                task = asyncio.ensure_future(self.app.crash(exc))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                return
            event.ack()

        return ack

    async def log_stats(self) -> None:
        """Log the counters (INFO) when they changed since the last time."""
        now = self.stats.as_dict()
        if now != self._last_stats:
            log.info("reading windows: %s", ", ".join(f"{k}={v}" for k, v in now.items()))
            self._last_stats = now
