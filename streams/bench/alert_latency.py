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

Probes: ``K`` readings of pm25 = 500 from ``K`` distinct devices (so one alert each), published
at QoS 1 from this process every ``PROBE_EVERY_S`` once the background load has run for
``WARMUP_S`` (the figures are for a sustained load: on a 2-core machine the bridge and the
alerter need 10-20 s to absorb the start of the load, 500 devices first seen at once; at 10,000
readings/s, probes after a 10 s warm-up measured that catch-up, p99 1-2.4 s, where the steady
state is 0.1-0.4 s; a load above what the machine sustains never settles, and the figures show
the growing backlog), each stamped just before ``publish``; ``K/2`` more go first, before the
background starts, for the latency of the idle pipeline (printed as a note). For each probe the
bench records when its reading reached ``ioc.readings`` (the **baseline**: the bare MQTT ->
bridge -> Kafka round trip under the same load, same run), when its ``firing`` event reached
``ioc.alerts``, and when the webhook receiver got the notification. The background load goes on
after the last probe until every probe has reached ``ioc.readings`` or for ``LOAD_TAIL_S`` (what
queues *ahead* of a probe is what delays it; on a machine that cannot sustain the load, stopping
then keeps the backlog, and the run, from growing without end).

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

import os
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import yaml

from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.settings import KafkaSettings
from streams.bench import BenchContext, Benchmark, Figure
from streams.bench.pipeline_procs import Proc, free_port, scrape, start_background, wait_until
from streams.bench.probes import (
    Arrivals,
    ProbeSender,
    TopicWatch,
    Webhook,
    latencies_ms,
    p50_p99,
    percentile,
)

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 6
BG_RATE = 20_000  # readings/s asked of the background publisher
BG_DEVICES = 500
BG_OBJECTS = 5  # timestamped objects per MQTT message, 2 readings (pm25, pm10) each
PROBE_EVERY_S = 0.25
THRESHOLD = 300.0
PROBE_VALUE = 500.0
WARMUP_S = 30.0  # background load before the probes (IOC_BENCH_ALERT_WARMUP_S overrides it)
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


def _probe_readings(tag: bytes) -> Callable[[bytes], list[str]]:
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


# --- the run -----------------------------------------------------------------------------------


def _publish_probes(sender: ProbeSender, devices: list[str], procs: list[Proc]) -> None:
    """Publish one crossing reading per device, ``PROBE_EVERY_S`` apart."""
    for device in devices:
        for p in procs:
            p.check()
        sender.publish(device)
        time.sleep(PROBE_EVERY_S)


def _all_seen(devices: list[str], at: Arrivals, where: str, procs: list[Proc]) -> None:
    wait_until(
        f"{len(devices)} probes at {where}", lambda: all(d in at.first for d in devices), procs
    )


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
    warmup_s = float(os.environ.get("IOC_BENCH_ALERT_WARMUP_S", 5.0 if ctx.quick else WARMUP_S))
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
    ports = {name: free_port() for name in ("bridge", "alerter")}
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
        "BENCH_DISTRICT": DISTRICT,
    }
    readings = TopicWatch(
        topics["readings"], PARTITIONS, "bench-readings", _probe_readings(prefix.encode())
    )
    alerts = TopicWatch(topics["alerts"], PARTITIONS, "bench-alerts", _firing_events)
    procs: list[Proc] = []
    background: Proc | None = None
    sender: ProbeSender | None = None
    try:
        sender = ProbeSender(f"bench-probes-{suffix}", DISTRICT, "pm25", PROBE_VALUE)
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
        background = start_background(background_env, ctx.workdir)
        time.sleep(warmup_s)
        background.check()
        bridged = "iocstream_bridge_readings_total"
        r0, t0 = scrape(ports["bridge"], bridged), time.monotonic()
        _publish_probes(sender, probes, [*procs, background])
        deadline = time.monotonic() + LOAD_TAIL_S
        while not all(d in readings.arrivals.first for d in probes):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        r1, t1 = scrape(ports["bridge"], bridged), time.monotonic()
        internal = f"bench-alerter-{suffix}-alert-inputs"
        lag = {
            topic: scrape(
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
    base = latencies_ms(published, readings.arrivals)
    to_alerts = latencies_ms(published, alerts.arrivals)
    to_hook = latencies_ms(published, hook.arrivals)
    delivered = (r1 - r0) / (t1 - t0)
    quiet = {d: sender.published[d] for d in idle}
    quiet_lat = [
        latencies_ms(quiet, a) for a in (readings.arrivals, alerts.arrivals, hook.arrivals)
    ]
    ctx.notes += [
        f"without background load, {len(idle)} probes: p50/p99 ms publish -> ioc.readings "
        f"{p50_p99(quiet_lat[0])}, -> ioc.alerts {p50_p99(quiet_lat[1])}, -> webhook "
        f"{p50_p99(quiet_lat[2])}",
        f"background load asked {rate:,.0f} readings/s, probes after {warmup_s:.0f} s of it; "
        f"publisher acknowledged "
        f"{summary['readings'] / summary['seconds']:,.0f}/s; bridge delivered {delivered:,.0f} "
        f"readings/s to Kafka during the probes ({BG_DEVICES} devices, "
        f"{BG_OBJECTS * 2} readings a message)",
        f"under that load, {k} probes: p50/p99 ms publish -> ioc.readings {p50_p99(base)}, "
        f"-> ioc.alerts {p50_p99(to_alerts)}, -> webhook {p50_p99(to_hook)}",
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
