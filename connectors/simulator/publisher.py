"""Publish simulated telemetry to an MQTT broker: status, paced readings, drain, status.

One MQTT client (``MqttSession``) speaks for every simulated device. Guarantees:

* Every message is published with QoS 1 and counted as acked only when the broker's PUBACK
  arrives. ``run`` returns only after every published message was acked or failed, or the
  drain timeout passed (those left are reported as ``unacked``). A dropped connection is
  re-established and unacknowledged messages are resent: at-least-once, duplicates possible.
* Pacing: a token bucket at ``rate`` messages/s (0 = as fast as the broker acknowledges); in
  ``realtime`` mode a reading is also never published before its event time (a reading
  whose event time has passed goes out at ``rate``).
* Device status: the simulator is one connection for many devices, so an MQTT will cannot
  speak for each device. Instead it publishes ``online`` (retained, QoS 1) on every device's
  ``.../status`` topic before the first reading and ``offline`` (retained) after the last,
  also after Ctrl-C. A crash (kill -9) leaves them ``online``; a stale-sensor alert, not the
  status topic, is what catches that.
* ``stop`` (a ``threading.Event`` or, in a worker process, a ``multiprocessing`` one; the
  CLI sets it on SIGINT/SIGTERM) ends the run cleanly:
  no new readings, a short wait (``interrupt_drain_s``) for in-flight acks, ``offline``
  statuses, disconnect. Nothing is retried after that: a message still unacknowledged is
  reported, not lost silently.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from connectors.settings import MqttSettings
from connectors.simulator.encoding import STATUS_OFFLINE, STATUS_ONLINE, status_topic
from connectors.simulator.model import SimDevice
from connectors.simulator.pacing import TokenBucket
from connectors.simulator.plan import Outgoing
from connectors.simulator.progress import NullReporter, Reporter, Snapshot
from connectors.simulator.session import MqttSession, StopFlag

log = logging.getLogger(__name__)

_REPORT_EVERY_S = 0.25
_POLL_S = 0.2
_MIN_WAIT_S = 0.0005


@dataclass(frozen=True)
class PublisherConfig:
    """How to publish; see the module docstring for what each setting guarantees.

    Raises ``ValueError`` for a negative rate, a window outside 1..65000 (MQTT packet ids
    are 16 bits), a non-positive duration or an MQTT version other than 5 or 4 (3.1.1).
    """

    client_id: str
    mqtt_version: Literal[5, 4] = 5
    rate: float = 100.0
    max_inflight: int = 1000
    realtime: bool = False
    duration_s: float | None = None
    status: bool = True
    connect_timeout_s: float = 30.0
    drain_timeout_s: float = 30.0
    interrupt_drain_s: float = 5.0

    def __post_init__(self) -> None:
        if not (self.rate >= 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a finite number >= 0 (0 = unlimited), got {self.rate}")
        if not 1 <= self.max_inflight <= 65_000:
            raise ValueError(f"max_inflight must be within 1..65000, got {self.max_inflight}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration must be > 0 s, got {self.duration_s}")
        if self.mqtt_version not in (4, 5):
            raise ValueError(f"mqtt_version must be 5 or 4 (3.1.1), got {self.mqtt_version}")


@dataclass
class PublishSummary:
    """What a run did. ``published`` counts telemetry (``malformed`` included), not status."""

    published: int = 0
    acked: int = 0
    failed: int = 0
    malformed: int = 0
    status_published: int = 0
    status_acked: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    error: str | None = None

    @property
    def unacked(self) -> int:
        return self.published - self.acked - self.failed

    @property
    def rate(self) -> float:
        """Telemetry messages per second, from the first publish to the last PUBACK."""
        return self.published / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """No error, and every message (status included) was acknowledged without failure."""
        return (
            self.error is None
            and self.failed == 0
            and self.unacked == 0
            and self.status_acked == self.status_published
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unacked": self.unacked, "rate": round(self.rate, 1)}


class Publisher:
    """Publishes a stream of ``Outgoing`` messages for ``devices`` (``run``, once)."""

    def __init__(
        self,
        settings: MqttSettings,
        config: PublisherConfig,
        devices: Sequence[SimDevice],
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        stop: StopFlag | None = None,
    ) -> None:
        self.config = config
        self.devices = list(devices)
        self.reporter: Reporter = reporter or NullReporter()
        self.stop: StopFlag = stop or threading.Event()
        self._clock = clock
        self._wall = wall
        self.session = MqttSession(
            settings,
            config.client_id,
            config.mqtt_version,
            config.max_inflight,
            config.connect_timeout_s,
            self.stop,
            clock,
        )

    def run(self, messages: Iterable[Outgoing], total: int | None = None) -> PublishSummary:
        """Connect, publish ``messages`` (``total`` of them if known), drain, disconnect.

        Never raises for broker trouble: the summary's ``error`` says what went wrong.
        """
        cfg, session, summary = self.config, self.session, PublishSummary()
        log.info(
            "publishing for %d devices to %s (MQTT %s), rate %s msg/s%s",
            len(self.devices),
            session.url,
            "5" if cfg.mqtt_version == 5 else "3.1.1",
            f"{cfg.rate:g}" if cfg.rate else "unlimited",
            ", realtime" if cfg.realtime else "",
        )
        try:
            session.open()
            if cfg.status:
                summary.status_published += len(self.devices)
                summary.status_acked += self._status(STATUS_ONLINE, cfg.drain_timeout_s)
            self._telemetry(messages, total, summary)
            if cfg.status:
                summary.status_published += len(self.devices)
                summary.status_acked += self._status(STATUS_OFFLINE, cfg.interrupt_drain_s)
        except ConnectionError as exc:
            summary.error = str(exc)
            log.error("simulator: %s", exc)
        finally:
            session.close()
        return summary

    def _status(self, payload: bytes, timeout_s: float) -> int:
        """Retained ``payload`` on every device's status topic; returns how many were acked."""
        session = self.session
        sent0, acked0 = session.sent, session.acked
        for device in self.devices:
            session.publish(status_topic(device), payload, retain=True)
        session.drain(timeout_s)
        return min(session.acked - acked0, session.sent - sent0)

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` while servicing the network (returns early on traffic/stop)."""
        if not self.stop.is_set():
            self.session.service(seconds)

    def _telemetry(
        self, messages: Iterable[Outgoing], total: int | None, summary: PublishSummary
    ) -> None:
        cfg, session = self.config, self.session
        sent0, acked0, failed0 = session.sent, session.acked, session.failed
        bucket = TokenBucket(cfg.rate, clock=self._clock) if cfg.rate > 0 else None
        start = self._clock()
        deadline = None if cfg.duration_s is None else start + cfg.duration_s
        next_report = start + _REPORT_EVERY_S

        def snapshot() -> Snapshot:
            return Snapshot(
                session.sent - sent0,
                session.acked - acked0,
                session.failed - failed0,
                self._clock() - start,
                total,
            )

        def should_end() -> bool:
            return self.stop.is_set() or (deadline is not None and self._clock() >= deadline)

        for msg in messages:
            if cfg.realtime:
                while not should_end():
                    ahead = (msg.event_time - self._wall()).total_seconds()
                    if ahead <= 0:
                        break
                    self.reporter.update(snapshot())
                    self._wait(min(ahead, _POLL_S))
            if bucket is not None:
                while not should_end():
                    wait = bucket.try_take()
                    if wait <= 0:
                        break
                    self._wait(max(wait, _MIN_WAIT_S))
            if should_end():
                break
            session.publish(msg.topic, msg.payload)
            summary.malformed += msg.malformed
            now = self._clock()
            if now >= next_report:
                next_report = now + _REPORT_EVERY_S
                self.reporter.update(snapshot())
        summary.interrupted = self.stop.is_set()
        session.drain(cfg.interrupt_drain_s if summary.interrupted else cfg.drain_timeout_s)
        final = snapshot()
        summary.published, summary.acked, summary.failed = (
            final.published,
            final.acked,
            final.failed,
        )
        summary.elapsed_s = final.elapsed_s
        self.reporter.close(final)
