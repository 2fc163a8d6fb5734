"""``iocstream alerter``: evaluate the alert rules on the live streams (its own Faust app).

Settings: ``IOC_KAFKA_*``, ``IOC_TOPIC_*`` and ``IOC_ALERTER_*`` (:class:`AlerterSettings`);
command-line options override the latter. Exit codes: 0 after a clean stop, 1 if it crashed,
2 for bad options, a bad rule file, or when it cannot start (Kafka unreachable, topic missing).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


class AlerterSettings(BaseSettings):
    """Alerter settings (``IOC_ALERTER_*``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_ALERTER_", extra="ignore")

    app_id: str = Field("iocstream-alerter", description="Faust app id = consumer group")
    rules: Path | None = Field(None, description="rule file (default deploy/alerts/rules.yaml)")
    registry: Path | None = Field(
        None, description="device registry for labels and intervals (default: the platform's)"
    )
    partitions: int | None = Field(
        None, ge=1, description="partitions of the internal topic (default IOC_TOPIC_PARTITIONS)"
    )
    tick_interval_s: float = Field(5.0, gt=0, description="clock tick interval, seconds")
    pack_linger_s: float = Field(
        0.02,
        ge=0,
        le=1,
        description="how long forwarders gather observations into one pack per internal "
        "partition before sending (fewer, larger internal messages; adds at most this latency)",
    )
    tick_hold_s: float = Field(
        30.0,
        ge=0,
        description="after a rebalance, no tick until every input partition has "
        "forwarded a message or this many seconds have passed (see streams/alerting/clock.py)",
    )
    data_dir: Path | None = Field(None, description="Faust's directory (<IOC_DATA_DIR>/alerter)")
    web_port: int = Field(0, ge=0, le=65535, description="Faust web port; 0 = off")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics port (9405 in deployments); 0 = off"
    )
    commit_interval_s: float = Field(1.0, gt=0)
    fetch_max_wait_ms: int = Field(
        25,
        ge=0,
        le=1500,
        description="longest the broker holds a fetch of idle partitions (Faust fixes 1,500 "
        "ms, which stalls every stage of a busy alerter: see streams/faust_patches.py); "
        "lower than the worker's since alerts are the latency-bound output",
    )
    session_timeout_s: float = Field(30.0, ge=6)
    stats_interval_s: float = Field(30.0, gt=0)
    gil_switch_ms: float = Field(
        1.0,  # streams.app.GIL_SWITCH_MS (not imported here: it would load Faust for --help)
        ge=0.1,
        le=100,
        description="how long a Python thread may hold the GIL while another waits for it "
        "(CPython's 5 ms starves Faust's consumer thread: see streams/app.py)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iocstream alerter",
        description="Alert rules on ioc.readings and ioc.indicators, operator actions from "
        "ioc.alert-actions; every alert state change to ioc.alerts (key: fingerprint). "
        "Settings: IOC_KAFKA_*, IOC_TOPIC_*, IOC_ALERTER_* (options override the latter).",
    )
    parser.add_argument(
        "--loglevel",
        "--log-level",
        type=str.upper,
        default=None,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level",
    )
    parser.add_argument("--app-id", help="Faust app id = consumer group (IOC_ALERTER_APP_ID)")
    parser.add_argument("--rules", type=Path, help="rule file (IOC_ALERTER_RULES)")
    parser.add_argument(
        "--tick-interval", type=float, help="clock tick interval in s (IOC_ALERTER_TICK_INTERVAL_S)"
    )
    parser.add_argument("--data-dir", type=Path, help="Faust directory (IOC_ALERTER_DATA_DIR)")
    parser.add_argument(
        "--check", action="store_true", help="validate the rule file and exit (0 if valid)"
    )
    return parser


def _configure_logging(level: str | None) -> None:
    """Log like ``iocstream`` (configure the root logger unless the CLI already did);
    Faust, aiokafka and kafka-python only from WARNING unless ``DEBUG``."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=level or "INFO",
            stream=sys.stderr,
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        )
    elif level:
        root.setLevel(level)
    if level != "DEBUG":
        for name in ("faust", "mode", "aiokafka", "kafka"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)


def run(argv: list[str] | None = None) -> int:
    """Run the alerter until SIGTERM/SIGINT; returns the exit code (module docstring)."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    from streams.worker import WorkerStartError, input_partitions

    _configure_logging(args.loglevel)
    overrides = {
        name: value
        for name, value in (
            ("app_id", args.app_id),
            ("rules", args.rules),
            ("tick_interval_s", args.tick_interval),
            ("data_dir", args.data_dir),
        )
        if value is not None
    }
    from streams.alerts import RuleConfigError, load_rules

    try:
        settings = AlerterSettings(**overrides)
        rules = load_rules(settings.rules) if settings.rules else load_rules()
    except (RuleConfigError, ValueError, OSError) as exc:
        log.error("alerter cannot start: %s", exc)
        return 2
    if args.check:
        print(f"{len(rules.rules)} rules valid in {rules.source}")
        return 0
    from connectors.registry import Registry

    try:
        kafka, topics = KafkaSettings(), TopicSettings()
        for name in (
            topics.readings,
            topics.indicators,
            topics.events,
            topics.alert_actions,
            topics.alerts,
        ):
            input_partitions(kafka, name)
        registry = (
            Registry.load(settings.registry) if settings.registry else (Registry.load_default())
        )
    except (WorkerStartError, ValueError, OSError) as exc:
        log.error("alerter cannot start: %s", exc)
        return 2
    return _run_app(settings, kafka, topics, rules, registry)


def _run_app(
    settings: AlerterSettings,
    kafka: KafkaSettings,
    topics: TopicSettings,
    rules: object,
    registry: object,
) -> int:
    import faust
    from kafka.errors import KafkaError

    from connectors.kafka.admin import TopicSpec, ensure_topics
    from connectors.registry import Registry
    from streams.alerting.agents import TABLE_NAME, AlerterAgents, inputs_topic_name
    from streams.alerts.rules import RuleSet
    from streams.app import WorkerSettings, create_app
    from streams.stack.settings import StackSettings

    assert isinstance(rules, RuleSet)
    assert isinstance(registry, Registry)
    partitions = settings.partitions or topics.partitions
    worker_settings = WorkerSettings(
        app_id=settings.app_id,
        data_dir=settings.data_dir or StackSettings().data_dir / "alerter",
        web_port=settings.web_port,
        commit_interval_s=settings.commit_interval_s,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_s=settings.session_timeout_s,
        stats_interval_s=settings.stats_interval_s,
        gil_switch_ms=settings.gil_switch_ms,
    )
    # Faust would create these itself, but a consumer group that joins before the new
    # topic's metadata is visible gets no partitions of it (faust's assignor "Ignoring
    # missing topic") and evaluates nothing until the next rebalance: create them first.
    replicas = topics.replication_factor
    specs = [
        TopicSpec(inputs_topic_name(settings.app_id), partitions, replicas),
        TopicSpec(
            f"{settings.app_id}-{TABLE_NAME}-changelog",
            partitions,
            replicas,
            (("cleanup.policy", "compact"),),
        ),
    ]
    try:
        ensure_topics(kafka, specs)
    except (ValueError, KafkaError) as exc:
        log.error("alerter cannot start: %s", exc)
        return 2
    from connectors.metrics import Metrics, serve

    metrics = Metrics()
    try:
        serve(settings.metrics_port)
    except OSError as exc:
        log.error("alerter cannot serve /metrics on port %d: %s", settings.metrics_port, exc)
        return 2
    app = create_app(
        worker_settings, kafka, partitions=partitions, replicas=topics.replication_factor
    )
    AlerterAgents(
        app,
        topics,
        rules,
        partitions=partitions,
        registry=registry,
        metrics=metrics,
        tick_interval_s=settings.tick_interval_s,
        tick_hold_s=settings.tick_hold_s,
        stats_interval_s=settings.stats_interval_s,
        pack_linger_s=settings.pack_linger_s,
    )
    log.info(
        "alerter %s starting: %d rules from %s; %s, %s, %s, %s -> %s (%d partitions) -> %s; "
        "tick every %.1f s; Kafka %s",
        settings.app_id,
        len(rules.rules),
        rules.source,
        topics.readings,
        topics.indicators,
        topics.events,
        topics.alert_actions,
        inputs_topic_name(settings.app_id),
        partitions,
        topics.alerts,
        settings.tick_interval_s,
        kafka.bootstrap,
    )
    worker = faust.Worker(
        app,
        loglevel=logging.getLevelName(logging.getLogger().level),
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(run())
