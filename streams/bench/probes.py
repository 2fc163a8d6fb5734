"""Probes of a latency benchmark: published stamped, stamped again at each checkpoint.

A latency benchmark publishes probes (one per device) and notes when each reaches a
checkpoint downstream; the difference of the two wall-clock stamps (``time.time()`` on both
sides, all in this process) is the latency. This module gives:

* :class:`ProbeSender`: publishes one reading per call over MQTT (QoS 1) and stamps it just
  before ``publish``;
* the receivers, each on a daemon thread of its own: :class:`TopicWatch`, a kafka-python
  consumer assigned every partition of one topic from its start (no consumer group, no
  commits), whose ``match`` function turns each record value into the probe devices it
  carries, so the rest of the load is skipped cheaply; and :class:`Webhook`, an aiohttp
  receiver on loopback (a free port, given by ``port`` once started) that answers 200 to
  every POST and stamps each ``firing`` alert by its ``device_id`` label.

Each receiver stamps into an :class:`Arrivals`: the *first* arrival per device, and a count
of *every* arrival, so a benchmark can check that each probe arrived exactly once. A record
is stamped when its poll (or its request) returns, before it is decoded. ``start`` returns
only once the receiver is ready (assigned, or listening) and raises if it is not within a
bound; ``close``/``stop`` stops the thread and waits for it.

:func:`latencies_ms` and :func:`percentile` (nearest rank) turn the stamps into figures.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from connectors.settings import KafkaSettings, MqttSettings


class ProbeSender:
    """Publishes single readings from this process (QoS 1), stamping each just before
    ``publish``: one reading of ``metric`` = ``value`` per call, for an air-quality device of
    ``district``. ``published`` maps each device to its stamp (a later call overwrites it)."""

    def __init__(self, client_id: str, district: str, metric: str, value: float) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        settings = MqttSettings()
        self.district, self.metric, self.value = district, metric, value
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()
        self.published: dict[str, float] = {}

    def publish(self, device: str) -> None:
        values = {self.metric: self.value}
        payload = orjson.dumps({"ts": int(time.time() * 1000), "values": values})
        topic = f"ioc/{self.district}/air_quality/{device}/telemetry"
        self.published[device] = time.time()
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Arrivals:
    """Wall-clock arrival times per probe device at one checkpoint, and every count seen."""

    first: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, device: str, at: float) -> None:
        with self.lock:
            self.first.setdefault(device, at)
            self.counts[device] = self.counts.get(device, 0) + 1


class Webhook:
    """An aiohttp receiver on loopback in a thread; stamps each firing alert by device."""

    def __init__(self) -> None:
        self.arrivals = Arrivals()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-webhook", daemon=True)

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        at = time.time()
        for alert in orjson.loads(body).get("alerts", []):
            if alert.get("status") == "firing":
                self.arrivals.seen(alert["labels"].get("device_id", ""), at)
        return web.Response(status=200)

    def _run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the webhook receiver did not start")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class TopicWatch:
    """A kafka-python consumer in a thread reading a fresh topic from its start; ``match``
    turns a record value into the probe devices it carries (cheaply skipping the rest)."""

    def __init__(
        self, topic: str, partitions: int, name: str, match: Callable[[bytes], list[str]]
    ) -> None:
        self.topic, self.partitions, self.match = topic, partitions, match
        self.arrivals = Arrivals()
        self.stop = threading.Event()
        self.assigned = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            **KafkaSettings().client_options(),
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        try:
            parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            self.assigned.set()
            while not self.stop.is_set():
                for batch in consumer.poll(timeout_ms=100, max_records=5_000).values():
                    at = time.time()
                    for record in batch:
                        for device in self.match(record.value):
                            self.arrivals.seen(device, at)
        finally:
            consumer.close()

    def start(self) -> None:
        self._thread.start()
        if not self.assigned.wait(30):
            raise RuntimeError(f"the consumer of {self.topic} did not start")

    def close(self) -> None:
        self.stop.set()
        self._thread.join(30)


def latencies_ms(published: dict[str, float], arrivals: Arrivals) -> list[float]:
    """Milliseconds from each device's publish stamp to its first arrival (every device of
    ``published`` must have arrived)."""
    return [(arrivals.first[d] - t) * 1000 for d, t in published.items()]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def p50_p99(values: list[float]) -> str:
    """``"p50/p99"`` of ``values``, rounded to whole numbers, for a note."""
    return f"{percentile(values, 50):,.0f}/{percentile(values, 99):,.0f}"
