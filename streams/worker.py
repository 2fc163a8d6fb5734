"""``iocstream worker``: the stream worker computing windowed reading statistics.

Consumes ``ioc.readings`` (batches of readings), keeps per device and metric event-time
windows — tumbling 1 minute (``streams/windows.py``) and, merged from those, tumbling 1 hour,
hopping 5/15 minutes and local calendar days (``streams/window_specs.py``) — in a
changelog-backed Faust table,
and sends each closed window to ``ioc.indicators`` (``schemas/indicators.py``); late and bad
input goes to ``ioc.deadletter`` with its reason. Several workers with the same app id share
the partitions (one consumer group).

Delivery: at-least-once output, exactly-once counting. A crash (even SIGKILL) and restart
gives the indicators of an uninterrupted run; a window may be emitted twice with identical
values. The argument is in ``streams/agents/readings.py``.

Offsets vs producer flush in faust-streaming 0.15.3: before committing, Faust publishes the
messages attached to the offsets and awaits them (``faust/transport/consumer.py``,
``Consumer._commit_tps``/``_handle_attached``) and then calls ``await
self.app.producer.flush()`` (``_commit_offsets``). That flush drains Faust's producer buffer
(used by table changelog writes) with ``ProducerBuffer.flush_atmost`` in
``faust/transport/producer.py``, which *returns* when a single message takes longer than
0.1 s to leave the buffer, and does not count the message being handed to aiokafka at that
moment; aiokafka's ``flush()`` then only covers what reached its accumulator. So the commit
flush is not a guarantee, and this worker does not rely on it: it acknowledges each message
itself once Kafka has acknowledged every record derived from it.

Settings: ``IOC_KAFKA_*`` (connection), ``IOC_TOPIC_*`` (topic names), ``IOC_WORKER_*``
(:class:`streams.app.WorkerSettings`); command-line options override the latter.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from connectors.metrics import Metrics, serve
from connectors.settings import KafkaSettings, TopicSettings
from streams.app import WorkerSettings, create_app
from streams.gauge_levels import GaugeConfig, thresholds_by_device
from streams.window_specs import default_specs
from streams.windows import MINUTE_MS, TumblingWindows

log = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class WorkerStartError(RuntimeError):
    """The worker cannot start (Kafka unreachable, input topic missing, bad settings)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iocstream worker",
        description="Stream worker: event-time windows (1 min, 1 h, hopping, local days) per "
        "device and metric from ioc.readings to ioc.indicators; late and bad input to "
        "ioc.deadletter. Settings come from IOC_KAFKA_*, IOC_TOPIC_* and IOC_WORKER_* "
        "(options below override the latter).",
    )
    parser.add_argument(
        "--loglevel",
        "--log-level",
        choices=LOG_LEVELS,
        type=str.upper,
        default=None,
        help="log level (default: as configured, else INFO)",
    )
    parser.add_argument("--app-id", help="Faust app id = consumer group (IOC_WORKER_APP_ID)")
    parser.add_argument("--grace", type=float, help="grace period in seconds (IOC_WORKER_GRACE_S)")
    parser.add_argument(
        "--web-port",
        type=int,
        help="serve Faust's web interface on 127.0.0.1:PORT; 0 = off (IOC_WORKER_WEB_PORT)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on IOC_METRICS_HOST:PORT; 0 = off "
        "(IOC_WORKER_METRICS_PORT, default 0; deployments use 9403)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="Faust's local directory (IOC_WORKER_DATA_DIR, default <IOC_DATA_DIR>/worker)",
    )
    return parser


def input_partitions(kafka: KafkaSettings, topic: str) -> int:
    """Partition count of ``topic``; raises ``WorkerStartError`` if unknown or unreachable."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            **kafka.client_options(), client_id="iocstream-worker-probe", enable_auto_commit=False
        )
    except KafkaError as exc:
        raise WorkerStartError(f"cannot reach Kafka at {kafka.bootstrap}: {exc}") from exc
    try:
        parts = consumer.partitions_for_topic(topic)
    except KafkaError as exc:
        raise WorkerStartError(f"cannot read metadata of {topic!r}: {exc}") from exc
    finally:
        consumer.close()
    if not parts:
        raise WorkerStartError(
            f"input topic {topic!r} does not exist on {kafka.bootstrap}; "
            "create the platform's topics first (iocstream kafka)"
        )
    return len(parts)


def gauge_config(settings: WorkerSettings) -> GaugeConfig:
    """Flood thresholds by gauge device id, from the device registry (``IOC_REGISTRY_PATH``)
    and the flood levels file; raises ``ValueError`` (a bad file) naming the problem."""
    from connectors.registry import Registry
    from streams.flood import DEFAULT_FLOOD_LEVELS_PATH, load_flood_levels

    stations = load_flood_levels(settings.flood_levels or DEFAULT_FLOOD_LEVELS_PATH)
    registry = Registry.load_default()
    gauges = {d.id: dict(d.labels) for d in registry if d.kind == "river_gauge"}
    return GaugeConfig(thresholds_by_device(gauges, stations), settings.rise_span_h)


def _configure_logging(level: str | None) -> None:
    """Log like ``iocstream``: configure the root logger unless the CLI already did."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=level or "INFO",
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        if (level or "INFO") != "DEBUG":
            for name in ("faust", "mode", "aiokafka", "kafka"):
                logging.getLogger(name).setLevel(logging.WARNING)
    elif level:
        root.setLevel(level)
    if level != "DEBUG":  # Faust warns on every producer-buffer flush while catching up
        logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    if level == "DEBUG":  # our DEBUG lines, not every Kafka request
        for name in ("faust", "mode", "aiokafka"):
            logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger("kafka").setLevel(logging.WARNING)


def run_worker(argv: list[str] | None = None) -> int:
    """Run the worker until SIGTERM/SIGINT; returns the process exit code.

    Exit codes: 0 after a clean stop, 1 if it crashed, 2 for bad options or settings or
    when it cannot start (Kafka unreachable, input topic missing).
    """
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help, or a usage error (argparse printed it)
        return exc.code if isinstance(exc.code, int) else 2
    _configure_logging(args.loglevel)
    overrides = {
        name: value
        for name, value in (
            ("app_id", args.app_id),
            ("grace_s", args.grace),
            ("web_port", args.web_port),
            ("metrics_port", args.metrics_port),
            ("data_dir", args.data_dir),
        )
        if value is not None
    }
    try:
        settings = WorkerSettings(**overrides)
        specs = default_specs(settings.hopping, settings.timezone)
        gauges = gauge_config(settings)
        kafka, topics = KafkaSettings(), TopicSettings()
        partitions = input_partitions(kafka, topics.readings)
    except (WorkerStartError, ValueError) as exc:
        log.error("worker cannot start: %s", exc)
        return 2
    import faust

    from streams.agents.readings import ReadingWindowsAgent

    metrics = Metrics()
    try:
        serve(settings.metrics_port)
    except OSError as exc:
        log.error("worker cannot serve /metrics on port %d: %s", settings.metrics_port, exc)
        return 2
    windows = TumblingWindows(MINUTE_MS, round(settings.grace_s * 1000))
    app = create_app(settings, kafka, partitions=partitions, replicas=topics.replication_factor)
    ReadingWindowsAgent(
        app,
        topics,
        windows,
        partitions=partitions,
        stats_interval_s=settings.stats_interval_s,
        specs=specs,
        checkpoint_interval_s=settings.checkpoint_interval_s,
        idle_tick_s=settings.idle_tick_s,
        gauges=gauges,
        metrics=metrics,
    )
    if settings.services:
        from streams.agents.services import start_services

        try:
            start_services(app, settings, kafka, topics, partitions=partitions, metrics=metrics)
        except ValueError as exc:
            log.error("worker cannot start: %s", exc)
            return 2
    if settings.districts:
        from streams.agents.districts import start_districts

        try:
            start_districts(app, settings, kafka, topics, partitions=partitions, metrics=metrics)
        except ValueError as exc:
            log.error("worker cannot start: %s", exc)
            return 2
    log.info(
        "worker %s starting: %s (%d partitions) -> %s, dead letters -> %s, grace %.1f s, "
        "windows 1m + %s, idle tick %s, %d gauges with flood levels, Kafka %s, data dir %s, "
        "web %s",
        settings.app_id,
        topics.readings,
        partitions,
        topics.indicators,
        topics.deadletter,
        settings.grace_s,
        ", ".join(s.name for s in specs),
        f"{settings.idle_tick_s:g} s" if settings.idle_tick_s else "off",
        len(gauges.thresholds),
        kafka.bootstrap,
        settings.resolved_data_dir(),
        f"127.0.0.1:{settings.web_port}" if settings.web_port else "off",
    )
    worker = faust.Worker(
        app,
        loglevel=logging.getLevelName(logging.getLogger().level),
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,  # keep the iocstream log format set up above
    )
    worker.spinner = None  # no terminal progress spinner: output is a log, often a file
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0  # pragma: no cover - execute_from_commandline always raises SystemExit


if __name__ == "__main__":
    sys.exit(run_worker())
