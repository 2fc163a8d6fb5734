"""Shared wiring of the worker's table-backed agents (service KPIs, district aggregates).

A :class:`StatefulAgent` consumes one internal topic, keeps one pure state object per owned
partition (``ServicePartition``, ``DistrictState``), and persists it exactly as
``streams/agents/readings.py`` does (its facts F1-F5):

* outputs of a message are handed to the producer while it is processed, never awaited there;
* every ``checkpoint_interval_s`` (and soon after the input runs dry) :meth:`checkpoint`
  awaits every output, then writes the state's changed records (``state.checkpoint()``: a
  list of ``(key, value or None)``, partition record last) straight to changelog partition
  ``p`` in order, and acknowledges the messages they cover once Kafka has them;
* on an assignment the states are rebuilt from the recovered table (``restore_states``); a
  gap in a partition's offsets within an assignment stops the worker (``check_contiguous``).

Subclasses implement :meth:`restore_states`, :meth:`new_state` and :meth:`apply`, and may
send idle ticks (:meth:`send_ticks` with ``encode_tick``) so that quiet partitions close their
windows deterministically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from connectors.metrics import Metrics
from schemas.deadletter import DeadLetter, Reason
from streams.agents.offsets import check_contiguous
from streams.agents.ticks import IdleTracker

log = logging.getLogger(__name__)

IDLE_CHECKPOINT_S = 1.0


class StatefulAgent:
    """Processing, checkpoints and acknowledgements of one table-backed agent."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        source: Any,
        table: Any,
        deadletter: Any,
        checkpoint_interval_s: float,
        idle_tick_s: float = 0.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.name = name
        self.source = source
        self.source_name: str = source.get_topic_name()
        self.table = table
        self.deadletter = deadletter
        self.metrics = metrics
        self.checkpoint_interval_s = checkpoint_interval_s
        self._lock = asyncio.Lock()
        self._states: dict[int, Any] | None = None
        self._owned: set[int] = set()
        self._next_offset: dict[int, int] = {}
        self._forward_next: dict[int, int] = {}  # the forwarding agent's offset continuity
        self._unacked: dict[int, list[Any]] = {}
        self._outputs: list[Awaitable[Any]] = []
        self._deferred: asyncio.TimerHandle | None = None
        self._last_checkpoint = time.monotonic()
        self._idle = IdleTracker(idle_tick_s)
        self._background: set[asyncio.Future[Any]] = set()
        app.agent(source, name=name)(self.process)
        app.timer(checkpoint_interval_s, name=f"{name}-checkpoint")(self.checkpoint)
        if idle_tick_s > 0:
            app.timer(max(idle_tick_s / 4, 0.25), name=f"{name}-ticks")(self.send_ticks)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_partitions_revoked.connect(self._on_revoked)

    # --- hooks ---------------------------------------------------------------------------------

    def restore_states(self, records: list[tuple[bytes, bytes]], owned: set[int]) -> dict[int, Any]:
        raise NotImplementedError

    def new_state(self, partition: int) -> Any:
        raise NotImplementedError

    async def apply(self, message: Any, state: Any) -> None:
        """Apply one message to ``state`` and hand its outputs to :meth:`send_output`."""
        raise NotImplementedError

    def encode_tick(self, watermark_ms: int) -> bytes:
        raise NotImplementedError

    # --- rebalances ----------------------------------------------------------------------------

    async def _on_assigned(self, sender: Any, assigned: set[Any], **_: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == self.source_name)
        log.info("partitions of %s assigned: %s", self.source_name, mine or "none")
        self._owned = set(mine)
        self._forget()

    async def _on_revoked(self, sender: Any, revoked: set[Any], **_: Any) -> None:
        self._owned -= {tp.partition for tp in revoked if tp.topic == self.source_name}
        self._forget()

    def _forget(self) -> None:
        self._states = None  # rebuilt from the (recovered) table at the next message
        self._next_offset.clear()
        self._forward_next.clear()
        self._unacked.clear()  # redelivered from the committed offset
        self._idle.forget()

    def _load_states(self) -> dict[int, Any]:
        records = [(bytes(k), bytes(v)) for k, v in self.table.data.items() if v]
        states = self.restore_states(records, set(self._owned))
        for p, st in sorted(states.items()):
            log.info("%s partition %d state: offset %d, watermark %s",
                     self.name, p, st.offset, st.watermark)  # fmt: skip
            if st.offset >= 0:
                self._next_offset.setdefault(p, st.offset + 1)
        return states

    def _state(self, partition: int) -> Any:
        if self._states is None:
            self._states = self._load_states()
        state = self._states.get(partition)
        if state is None:
            state = self._states[partition] = self.new_state(partition)
        return state

    # --- processing ----------------------------------------------------------------------------

    async def process(self, stream: Any) -> None:
        """The agent: one message at a time, acknowledged once its records are durable."""
        async for event in stream.noack().events():
            message = event.message
            if self._states is None:
                self._states = self._load_states()
            gap = check_contiguous(self._next_offset, message)
            if gap is not None:
                log.error("%s", gap)
                await self.app.crash(gap)
                raise gap
            try:
                async with self._lock:
                    await self.apply(message, self._state(message.partition))
                    self._unacked.setdefault(message.partition, []).append(event)
            except Exception as exc:
                log.exception("processing %s failed; stopping the worker", message)
                await self.app.crash(exc)
                raise
            since = time.monotonic() - self._last_checkpoint
            if since >= self.checkpoint_interval_s:
                await self.checkpoint()
            elif stream.channel.empty() and self._deferred is None:
                delay = max(0.0, IDLE_CHECKPOINT_S - since)
                self._deferred = asyncio.get_running_loop().call_later(
                    delay, self._deferred_checkpoint
                )

    async def check_forward_gap(self, message: Any) -> None:
        """For a forwarding agent: stop the worker if its input skipped offsets (see
        :func:`~streams.agents.offsets.check_contiguous`), so a restart forwards them."""
        gap = check_contiguous(self._forward_next, message)
        if gap is not None:
            log.error("%s", gap)
            await self.app.crash(gap)
            raise gap

    async def send_output(self, topic: str, key: bytes, value: bytes) -> None:
        """Hand one output record to the producer; the next checkpoint awaits it."""
        self._outputs.append(await self.app.producer.send(topic, key, value, None, None, None))

    async def send_dead_letter(
        self, reason: Reason, detail: str, message: Any, payload: bytes
    ) -> None:
        """Dead-letter an input (awaited by the next checkpoint like any output)."""
        letter = dead_letter(reason, detail, message, payload)
        sent = await self.deadletter.send(
            key=letter.source_id.encode(), value=letter.encode(), force=True
        )
        self._outputs.append(sent)
        log.warning("%s: input dead-lettered (%s): %s", self.name, reason, detail)
        if self.metrics is not None:
            self.metrics.dead_letters.labels("worker", reason).inc()

    async def checkpoint(self) -> None:
        """Await every output, then write the changed state records in order and acknowledge
        the messages they cover once Kafka has them."""
        async with self._lock:
            self._last_checkpoint = time.monotonic()
            if self._outputs:
                outputs, self._outputs = self._outputs, []
                try:
                    await asyncio.gather(*outputs)
                except Exception as exc:
                    log.error("%s: outputs not written: %r; stopping", self.name, exc)
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
                    if record is None:
                        data.pop(key, None)
                    else:
                        data[key] = record
                    pending.append(await producer.send(changelog, key, record, p, None, None))
                if events:
                    ack_when_durable(events, pending, self._crash)

    def _deferred_checkpoint(self) -> None:
        self._deferred = None
        self._spawn(self.checkpoint())

    async def send_ticks(self) -> None:
        """Append a watermark tick to every owned partition idle for ``idle_tick_s``."""
        if self._states is None:
            return
        now = time.monotonic()
        for p, state in sorted(self._states.items()):
            due = self._idle.due(p, state.watermark, now)
            if due is not None:
                await self.source.send(value=self.encode_tick(due), partition=p, force=True)
                log.debug("%s partition %d idle: watermark tick to %s", self.name, p, due)

    def _crash(self, exc: BaseException) -> None:
        self._spawn(self.app.crash(exc))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def internal_topic(app: Any, name: str, partitions: int) -> Any:
    """The app's internal topic ``name`` (bytes in and out, ``partitions`` partitions)."""
    return app.topic(name, key_type=bytes, value_type=bytes, partitions=partitions, internal=True)


def state_table(app: Any, name: str, partitions: int, help_text: str) -> Any:
    """A changelog-backed table of bytes records partitioned like the agent's input."""
    return app.Table(
        name,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        help=help_text,
    )


def dead_letter(
    reason: Reason, detail: str, message: Any, payload: bytes, *, source_id: str = ""
) -> DeadLetter:
    """A dead letter for ``message`` (source id: ``source_id``, else the message's key)."""
    key = message.key
    return DeadLetter(
        reason=reason,
        detail=detail,
        source=f"kafka:{message.topic}/{message.partition}/{message.offset}",
        source_id=source_id or (key.decode("utf-8", "replace") if key else ""),
        received_at=datetime.now(UTC),
        payload=payload,
    )


def ack_when_durable(
    events: list[Any], pending: list[Awaitable[Any]], crash: Callable[[BaseException], None]
) -> None:
    """Acknowledge ``events`` once every future of ``pending`` succeeded; on a failure call
    ``crash`` (the messages stay unacknowledged, so a restart processes them again)."""
    if not pending:
        for event in events:
            event.ack()
        return

    def done(fut: asyncio.Future[list[Any]]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
            assert exc is not None
            log.error("records up to %s not written: %r; stopping", events[-1].message, exc)
            crash(exc)
            return
        for event in events:
            event.ack()

    gathered: asyncio.Future[list[Any]] = asyncio.gather(*pending)
    gathered.add_done_callback(done)
