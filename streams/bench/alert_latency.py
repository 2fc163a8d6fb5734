"""Alert latency: MQTT publish of a threshold-crossing reading -> ``ioc.alerts`` -> webhook.

What runs (the real pipeline, each its own process, on fresh uuid-named topics):

* ``iocstream bridge`` (MQTT -> ``ioc.readings``, batches per partition, default linger 20 ms);
* ``iocstream alerter`` with one rule, a pm25 threshold on raw readings of air-quality devices
  (``at: 300``, ``for: 0s``: fires on the first crossing reading, no pending time);
* ``iocstream notifier`` routing every alert to one webhook receiver, ``group_by:
  [device_id]``, ``group_wait: 0s``;
* in this process: an aiohttp webhook receiver and two Kafka consumers (``ioc.readings`` and
  ``ioc.alerts``) that stamp each record's arrival with the wall clock;
* a background publisher process: ``BG_DEVICES`` air-quality devices publishing pm25 and pm10
  readings that never cross (``BG_OBJECTS`` timestamped objects a message, ThingsBoard's list
  form, QoS 1), paced to ``BG_RATE`` readings/s (``IOC_BENCH_ALERT_RATE`` overrides it, to find
  the load a machine sustains). Every one of them is selected by the rule, so the alerter
  evaluates the whole load, not only the probes.

Probes: ``K`` readings of pm25 = 500 from ``K`` distinct devices (so one alert each),
published at QoS 1 from this process every ``PROBE_EVERY_S`` once the background load has run
for a warm-up, each stamped just before ``publish``; ``K/2`` more go first, before the
background starts, for the latency of the idle pipeline (printed as a note). For each probe
the bench records when its reading reached ``ioc.readings`` (the **baseline**: the bare MQTT ->
bridge -> Kafka round trip under the same load, same run), when its ``firing`` event reached
``ioc.alerts``, and when the webhook receiver got the notification. The background load goes
on after the last probe until every probe has reached ``ioc.readings`` or for ``LOAD_TAIL_S``
(what queues *ahead* of a probe is what delays it; on a machine that cannot sustain the load,
stopping then keeps the backlog, and the run, from growing without end).

What the alert latency consists of (the alerter evaluates every reading as it arrives; there
is no window close on this path): MQTT publish -> Mosquitto -> bridge (decode, validate, pack
per partition, linger up to 20 ms, produce acks=all) -> ``ioc.readings`` -> alerter forwarder
(re-key by fingerprint, Faust producer linger 5 ms) -> internal topic -> evaluator (state
machine, event produced and acknowledged before the state record) -> ``ioc.alerts``; for the
webhook add the notifier's fetch, dispatch and the HTTP POST.

Figures, latencies in milliseconds (lower is better): ``alert_latency_p99`` (publish ->
``ioc.alerts``, p99; baseline p99 of publish -> ``ioc.readings``), ``alert_latency_p50`` (same
at p50), ``alert_to_webhook_p99`` (publish -> webhook, p99; same baseline); and
``alert_latency_load``: the background readings/s the bridge actually delivered to Kafka
during the probes (its ``iocstream_bridge_readings_total``), against the rate asked (ratio
< 1: the machine did not sustain the load, and the latencies include the queue that built
up). Percentiles are
nearest-rank. Notes print the publisher's own rate, the idle-pipeline latencies, every
stage's p50/p99 and the alerter's consumer lag when the load stopped (the internal
topic's backlog shows whether evaluation keeps up).

Correctness (raises otherwise): every probe reached ``ioc.readings``, produced exactly one
``firing`` event on ``ioc.alerts`` and exactly one firing alert at the webhook; no background
device fired.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.settings import KafkaSettings, MqttSettings
from streams.bench import BenchContext, Benchmark, Figure

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 6
BG_RATE = 20_000  # readings/s asked of the background publisher
BG_DEVICES = 500
BG_OBJECTS = 5  # timestamped objects per MQTT message, 2 readings (pm25, pm10) each
PROBE_EVERY_S = 0.25
THRESHOLD = 300.0
PROBE_VALUE = 500.0
WAIT_S = 600  # bounds a broken (or hopelessly overloaded) run only
LOAD_TAIL_S = 5.0  # the load goes on this long after the last probe (or until all are bridged)
DISTRICT = "long-xuyen"

RULES = f"""
version: 1
rules:
  - name: bench_pm25
    type: threshold
    metric: pm25
    matchers: ['device_kind="air_quality"']
    subject: [device_id]
    carry: [district]
    ladder:
      - {{severity: major, at: {THRESHOLD}, clear: {THRESHOLD - 50}}}
    for: 0s
    annotations:
      summary: {{vi: "PM2.5 {{value}}", en: "PM2.5 {{value}}"}}
"""

ROUTES = """
version: 1
receivers:
  - {{name: bench-hook, type: webhook, url: "http://127.0.0.1:{port}/hook", max_attempts: 3}}
route:
  receiver: bench-hook
  group_by: [device_id]
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
"""


# --- the background publisher (its own process) ---------------------------------------------


def background_main() -> int:
    """Publish non-crossing readings at ``BENCH_RATE`` readings/s until SIGTERM; print the
    readings acknowledged by the broker and the seconds as one JSON line."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    rate, prefix = float(os.environ["BENCH_RATE"]), os.environ["BENCH_PREFIX"]
    devices, objects = int(os.environ["BENCH_DEVICES"]), int(os.environ["BENCH_OBJECTS"])
    settings = MqttSettings()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-publisher")
    client.max_inflight_messages_set(1_000)
    client.max_queued_messages_set(0)
    acked = [0]
    client.on_publish = lambda *_a: acked.__setitem__(0, acked[0] + 1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    client.connect(settings.host, settings.port)
    client.loop_start()
    per_message = objects * 2
    sent = 0
    started = time.monotonic()
    try:
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate / per_message)
            while sent < due and not stop.is_set():
                now_ms = int(time.time() * 1000)
                body = [
                    {
                        "ts": now_ms - (objects - 1 - j) * 50,
                        "values": {"pm25": float(20 + (sent + j) % 60), "pm10": 40.0 + j},
                    }
                    for j in range(objects)
                ]
                device = f"{prefix}-bg-{sent % devices:04d}"
                topic = f"ioc/{DISTRICT}/air_quality/{device}/telemetry"
                client.publish(topic, orjson.dumps(body), qos=1)
                sent += 1
            time.sleep(0.002)
        took = time.monotonic() - started
    finally:
        client.disconnect()
        client.loop_stop()
    print(orjson.dumps({"readings": acked[0] * per_message, "seconds": took}).decode())
    return 0


# --- this process: receivers of the three checkpoints ---------------------------------------


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
        import asyncio

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
        import asyncio

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

    def __init__(self, topic: str, name: str, match: Any) -> None:
        self.topic, self.match = topic, match
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
            parts = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
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


def _probe_readings(tag: bytes) -> Any:
    def match(value: bytes) -> list[str]:
        if tag not in value:
            return []
        found = orjson.loads(value)["readings"]
        return [r["device_id"] for r in found if tag.decode() in r["device_id"]]

    return match


def _firing_events(value: bytes) -> list[str]:
    event = orjson.loads(value)
    if event.get("kind") != "firing":
        return []
    return [str(event["state"]["labels"].get("device_id", ""))]


# --- processes ---------------------------------------------------------------------------------


class Proc:
    """A subprocess with its log file; stopped with SIGTERM (then SIGKILL) and waited for."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")

    def wait_for_log(self, text: str, timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log.read_text(errors="replace"):
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} never logged {text!r}:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int, sample: str) -> float:
    """The value of one sample (name with its labels, as exposed) on a /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def _registry(path: Path, prefix: str, probes: list[str]) -> None:
    ids = [f"{prefix}-bg-{i:04d}" for i in range(BG_DEVICES)] + probes
    doc = {
        "version": 1,
        "kinds": {
            "air_quality": {
                "expected_interval_s": 60,
                "metrics": {
                    "pm25": {"unit": "ug/m3", "min": 0, "max": 1000},
                    "pm10": {"unit": "ug/m3", "min": 0, "max": 1000},
                },
            }
        },
        "devices": [
            {"id": i, "kind": "air_quality", "district": DISTRICT,
             "location": {"lat": 10.38, "lon": 105.43}}
            for i in ids
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc))


def _p50_p99(values: list[float]) -> str:
    return f"{percentile(values, 50):,.0f}/{percentile(values, 99):,.0f}"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- the run -----------------------------------------------------------------------------------


class _Probes:
    """Publishes single crossing readings from this process (QoS 1), stamping each."""

    def __init__(self, client_id: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        settings = MqttSettings()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()
        self.published: dict[str, float] = {}

    def publish(self, device: str) -> None:
        payload = orjson.dumps({"ts": int(time.time() * 1000), "values": {"pm25": PROBE_VALUE}})
        topic = f"ioc/{DISTRICT}/air_quality/{device}/telemetry"
        self.published[device] = time.time()
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(what: str, done: Any, procs: list[Proc], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        for p in procs:
            p.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _publish_probes(sender: _Probes, devices: list[str], procs: list[Proc]) -> None:
    """Publish one crossing reading per device, ``PROBE_EVERY_S`` apart."""
    for device in devices:
        for p in procs:
            p.check()
        sender.publish(device)
        time.sleep(PROBE_EVERY_S)


def _all_seen(devices: list[str], at: Arrivals, where: str, procs: list[Proc]) -> None:
    _wait(f"{len(devices)} probes at {where}", lambda: all(d in at.first for d in devices), procs)


def _latencies(published: dict[str, float], arrivals: Arrivals) -> list[float]:
    return [(arrivals.first[d] - t) * 1000 for d, t in published.items()]


def _check(probes: list[str], readings: Arrivals, alerts: Arrivals, hook: Arrivals) -> None:
    problems = []
    for name, seen in (("ioc.alerts firing events", alerts), ("webhook firing alerts", hook)):
        wrong = {d: seen.counts.get(d, 0) for d in probes if seen.counts.get(d, 0) != 1}
        if wrong:
            problems.append(f"{name}: expected 1 per probe, got {wrong}")
        extra = sorted(set(seen.counts) - set(probes))
        if extra:
            problems.append(f"{name} for devices that never crossed: {extra[:10]}")
    missing = [d for d in probes if d not in readings.first]
    if missing:
        problems.append(f"probe readings never seen on ioc.readings: {missing}")
    if problems:
        raise RuntimeError("; ".join(problems))


def run(ctx: BenchContext) -> list[Figure]:
    k = 20 if ctx.quick else 100
    warmup_s = 5.0 if ctx.quick else 10.0
    rate = float(os.environ.get("IOC_BENCH_ALERT_RATE", BG_RATE))
    suffix = ctx.unique("a").split("-")[1]
    prefix = f"al{suffix}"
    probes = [f"{prefix}-probe-{i:03d}" for i in range(k)]
    idle = [f"{prefix}-probe-i{i:02d}" for i in range(k // 2)]
    warmups = [f"{prefix}-probe-w{i:02d}" for i in range(30)]
    registry = ctx.workdir / "devices.yaml"
    _registry(registry, prefix, probes + idle + warmups)
    (ctx.workdir / "rules.yaml").write_text(RULES)
    topics = {
        name: f"bench-{name.replace('_', '-')}-{suffix}"
        for name in ("readings", "indicators", "events", "alert_actions", "alerts", "deadletter")
    }
    ensure_topics(KafkaSettings(), [TopicSpec(t, PARTITIONS, 1) for t in topics.values()])
    hook = Webhook()
    hook.start()
    (ctx.workdir / "routes.yaml").write_text(ROUTES.format(port=hook.port))
    ports = {name: _free_port() for name in ("bridge", "alerter")}
    env = {
        **os.environ,
        **ctx.env,
        **{f"IOC_TOPIC_{name.upper()}": t for name, t in topics.items()},
        "IOC_TOPIC_PARTITIONS": str(PARTITIONS),
        "PYTHONPATH": str(REPO),
    }
    bridge_env = {
        **env,
        "IOC_MQTT_CLIENT_ID": f"bench-bridge-{suffix}",
        "IOC_BRIDGE_REGISTRY": str(registry),
        "IOC_BRIDGE_METRICS_PORT": str(ports["bridge"]),
        "IOC_BRIDGE_STATUS": "false",
        # aiokafka (the alerter's Faust client) reads lz4 only with cramjam installed, which
        # the stack does not pin: uncompressed records, whatever the bridge's default
        "IOC_BRIDGE_KAFKA_COMPRESSION": "none",
    }
    alerter_env = {
        **env,
        "IOC_ALERTER_APP_ID": f"bench-alerter-{suffix}",
        "IOC_ALERTER_RULES": str(ctx.workdir / "rules.yaml"),
        "IOC_ALERTER_REGISTRY": str(registry),
        "IOC_ALERTER_DATA_DIR": str(ctx.workdir / "alerter"),
        "IOC_ALERTER_METRICS_PORT": str(ports["alerter"]),
        "IOC_ALERTER_STATS_INTERVAL_S": "5",
    }
    notifier_env = {
        **env,
        "IOC_NOTIFY_ROUTES": str(ctx.workdir / "routes.yaml"),
        "IOC_NOTIFY_SILENCES_TOPIC": f"bench-silences-{suffix}",
        "IOC_NOTIFY_LOG_TOPIC": f"bench-notifications-{suffix}",
    }
    background_env = {
        **env,
        "BENCH_RATE": str(rate),
        "BENCH_PREFIX": prefix,
        "BENCH_DEVICES": str(BG_DEVICES),
        "BENCH_OBJECTS": str(BG_OBJECTS),
    }
    readings = TopicWatch(topics["readings"], "bench-readings", _probe_readings(prefix.encode()))
    alerts = TopicWatch(topics["alerts"], "bench-alerts", _firing_events)
    procs: list[Proc] = []
    background: Proc | None = None
    sender: _Probes | None = None
    try:
        sender = _Probes(f"bench-probes-{suffix}")
        readings.start()
        alerts.start()
        for name, penv in (
            ("bridge", bridge_env),
            ("alerter", alerter_env),
            ("notifier", notifier_env),
        ):  # as `iocstream <name>` runs them (logging configured by the CLI)
            procs.append(Proc(name, ["-m", "streams.cli.main", name], penv, ctx.workdir))
        procs[0].wait_for_log("MQTT subscriptions acknowledged")
        procs[2].wait_for_log("notifier caught up")
        # the alerter is ready when a crossing reading comes out at the webhook
        for device in warmups:
            sender.publish(device)
            deadline = time.monotonic() + 5
            while device not in hook.arrivals.first and time.monotonic() < deadline:
                for p in procs:
                    p.check()
                time.sleep(0.05)
            if device in hook.arrivals.first:
                break
        else:
            raise RuntimeError(
                "no warm-up alert reached the webhook:\n" + "\n".join(p.tail() for p in procs)
            )
        _publish_probes(sender, idle, procs)
        _all_seen(idle, hook.arrivals, "the webhook", procs)
        code = "import sys; from streams.bench.alert_latency import background_main as m; " + (
            "sys.exit(m())"
        )
        background = Proc("background", ["-c", code], background_env, ctx.workdir)
        time.sleep(warmup_s)
        background.check()
        bridged = "iocstream_bridge_readings_total"
        r0, t0 = _scrape(ports["bridge"], bridged), time.monotonic()
        _publish_probes(sender, probes, [*procs, background])
        deadline = time.monotonic() + LOAD_TAIL_S
        while not all(d in readings.arrivals.first for d in probes):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        r1, t1 = _scrape(ports["bridge"], bridged), time.monotonic()
        internal = f"bench-alerter-{suffix}-alert-inputs"
        lag = {
            topic: _scrape(
                ports["alerter"],
                f'iocstream_consumer_lag_records{{component="alerter",topic="{topic}"}}',
            )
            for topic in (topics["readings"], internal)
        }
        background.stop()
        summary = orjson.loads(background.log.read_text().strip().splitlines()[-1])
        _all_seen(probes, readings.arrivals, "ioc.readings", procs)
        _all_seen(probes, hook.arrivals, "the webhook", procs)
        time.sleep(3)  # a duplicate firing event or webhook would arrive by now
    finally:
        if background is not None:
            background.stop()
        for p in reversed(procs):
            p.stop()
        if sender is not None:
            sender.close()
        readings.close()
        alerts.close()
        hook.stop()
    for a in (readings.arrivals, alerts.arrivals, hook.arrivals):
        for d in warmups:
            a.first.pop(d, None)
            a.counts.pop(d, None)
    _check(probes + idle, readings.arrivals, alerts.arrivals, hook.arrivals)
    published = {d: sender.published[d] for d in probes}
    base = _latencies(published, readings.arrivals)
    to_alerts = _latencies(published, alerts.arrivals)
    to_hook = _latencies(published, hook.arrivals)
    delivered = (r1 - r0) / (t1 - t0)
    quiet = {d: sender.published[d] for d in idle}
    quiet_lat = [_latencies(quiet, a) for a in (readings.arrivals, alerts.arrivals, hook.arrivals)]
    ctx.notes += [
        f"without background load, {len(idle)} probes: p50/p99 ms publish -> ioc.readings "
        f"{_p50_p99(quiet_lat[0])}, -> ioc.alerts {_p50_p99(quiet_lat[1])}, -> webhook "
        f"{_p50_p99(quiet_lat[2])}",
        f"background load asked {rate:,.0f} readings/s; publisher acknowledged "
        f"{summary['readings'] / summary['seconds']:,.0f}/s; bridge delivered {delivered:,.0f} "
        f"readings/s to Kafka during the probes ({BG_DEVICES} devices, "
        f"{BG_OBJECTS * 2} readings a message)",
        f"under that load, {k} probes: p50/p99 ms publish -> ioc.readings {_p50_p99(base)}, "
        f"-> ioc.alerts {_p50_p99(to_alerts)}, -> webhook {_p50_p99(to_hook)}",
        "alerter consumer lag when the background load stopped (records): "
        + ", ".join(f"{t}={v:.0f}" for t, v in lag.items()),
    ]
    baseline = "p99 publish -> ioc.readings (bare MQTT-to-Kafka), ms"
    return [
        Figure("alert_latency_p99", percentile(to_alerts, 99), "ms", percentile(base, 99),
               baseline, higher_is_better=False),
        Figure("alert_latency_p50", percentile(to_alerts, 50), "ms", percentile(base, 50),
               "p50 publish -> ioc.readings, ms", higher_is_better=False),
        Figure("alert_to_webhook_p99", percentile(to_hook, 99), "ms", percentile(base, 99),
               baseline, higher_is_better=False),
        Figure("alert_latency_load", delivered, "readings/s", rate,
               "background readings/s asked of the publisher"),
    ]  # fmt: skip


BENCHMARK = Benchmark(
    "alert_latency",
    "ms from an MQTT publish crossing a threshold to ioc.alerts and the webhook, under "
    f"{BG_RATE:,} readings/s of background load (IOC_BENCH_ALERT_RATE), vs the bare "
    "MQTT-to-Kafka round trip",
    run,
)
