"""``iocstream ingest``: run city-system event ingest until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
from datetime import timedelta
from typing import Any

from kafka.errors import KafkaError

from connectors.ingest.parse import Limits
from connectors.ingest.service import Ingest, IngestConfig
from connectors.metrics import Metrics, serve
from connectors.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


def _positive(kind: type[int] | type[float]) -> Any:
    def check(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return check


def parser() -> argparse.ArgumentParser:
    """The ``iocstream ingest`` argument parser."""
    defaults, limits = IngestConfig(), Limits()
    p = argparse.ArgumentParser(
        prog="iocstream ingest",
        description="Read CloudEvents 1.0 (structured or binary Kafka mode) from the inbound "
        "topic (IOC_TOPIC_INBOUND, default ioc.inbound), validate them against "
        "schemas/json, drop copies by source + id, publish canonical events to "
        "IOC_TOPIC_EVENTS keyed by subject and invalid input to IOC_TOPIC_DEADLETTER with a "
        "reason. Offsets are committed only after Kafka acknowledged what was produced; "
        "see connectors/ingest/service.py for the guarantees.",
    )
    p.add_argument("--group", default=defaults.group_id, help="Kafka consumer group")
    p.add_argument(
        "--dedup-window-hours",
        type=_positive(float),
        default=defaults.dedup_window_s / 3600,
        help="how long after an event's first copy a repeat is still dropped "
        "(ioc.events must retain at least this long)",
    )
    p.add_argument(
        "--dedup-max-keys",
        type=_positive(int),
        default=defaults.dedup_max_keys,
        help="bound of the de-duplication memory (about 100 bytes per key)",
    )
    p.add_argument(
        "--max-bytes",
        type=_positive(int),
        default=limits.max_bytes,
        help="largest accepted record value (and headers) in bytes",
    )
    p.add_argument(
        "--max-future-minutes",
        type=float,
        default=limits.max_future.total_seconds() / 60,
        help="event times further ahead of receipt are dead letters (timestamp_in_future)",
    )
    p.add_argument(
        "--max-age-days",
        type=float,
        default=limits.max_past.total_seconds() / 86400,
        help="event times further back are dead letters (timestamp_too_old)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=9404,
        help="serve Prometheus /metrics on this port (0: off)",
    )
    return p


def run(argv: list[str]) -> int:
    """Run ingest; 0 after a clean stop, 1 if Kafka or its topics are not usable."""
    args = parser().parse_args(argv)
    try:
        limits = Limits(
            max_bytes=args.max_bytes,
            max_future=timedelta(minutes=args.max_future_minutes),
            max_past=timedelta(days=args.max_age_days),
        )
    except ValueError as exc:
        parser().error(str(exc))
    config = IngestConfig(
        group_id=args.group,
        dedup_window_s=args.dedup_window_hours * 3600,
        dedup_max_keys=args.dedup_max_keys,
        limits=limits,
    )
    kafka, topics = KafkaSettings(), TopicSettings()
    metrics = Metrics()
    serve(args.metrics_port)
    ingest = Ingest(kafka, topics, config, metrics=metrics)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the records in hand and stopping", signum)
        ingest.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "ingest starting: kafka %s, de-duplication window %.1f h / %d keys",
        kafka.bootstrap,
        args.dedup_window_hours,
        args.dedup_max_keys,
    )
    try:
        ingest.run()
    except (RuntimeError, KafkaError) as exc:  # TailStalled is a RuntimeError
        log.error("ingest cannot run: %s", exc)
        return 1
    return 0
