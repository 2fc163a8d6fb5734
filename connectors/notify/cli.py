"""``iocstream notifier`` and ``iocstream silence add|list|expire``.

Notifier settings: ``IOC_KAFKA_*``, ``IOC_TOPIC_ALERTS``, ``IOC_NOTIFY_*``
(:class:`~connectors.notify.service.NotifierSettings`) and the secret variables the routing
file names. Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 for a bad routing file, a
missing secret or when it cannot start.

Silences are records on the silences topic (``IOC_NOTIFY_SILENCES_TOPIC``, default
``ioc.alert-silences``); see :mod:`connectors.notify.silences`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import UTC, datetime

from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.metrics import Metrics, serve
from connectors.notify.labels import parse_duration
from connectors.notify.silences import (
    Silence,
    decode_silence,
    encode_silence,
    silences_topic_spec,
)
from connectors.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


def _topics(settings: object) -> list[TopicSpec]:
    from connectors.notify.service import NotifierSettings

    assert isinstance(settings, NotifierSettings)
    return [
        silences_topic_spec(settings.silences_topic),
        TopicSpec(settings.log_topic, 1, TopicSettings().replication_factor),
    ]


def run(argv: list[str] | None = None) -> int:
    """``iocstream notifier``: run until SIGTERM/SIGINT (exit codes in the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="iocstream notifier",
        description="Send alert notifications from ioc.alerts: routing tree, grouping, "
        "repeat, escalation, silences, mute windows, inhibition, rate limits; receivers: "
        "webhook (Alertmanager format), e-mail (SMTP), Telegram, PagerDuty Events v2. "
        "Settings: IOC_KAFKA_*, IOC_TOPIC_ALERTS, IOC_NOTIFY_*.",
    )
    parser.add_argument("--routes", help="routing file (IOC_NOTIFY_ROUTES)")
    parser.add_argument("--check", action="store_true", help="validate the routing file, exit")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level="INFO",
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        for name in ("aiokafka", "kafka"):
            logging.getLogger(name).setLevel(logging.WARNING)
    from connectors.notify.config import DEFAULT_ROUTES_PATH, NotifyConfigError, load_config
    from connectors.notify.senders import MissingSecretError, Senders, load_secrets
    from connectors.notify.service import Notifier, NotifierSettings

    try:
        settings = NotifierSettings()
        config = load_config(args.routes or settings.routes or DEFAULT_ROUTES_PATH)
        secrets = load_secrets(config, os.environ)
    except (NotifyConfigError, MissingSecretError, ValueError) as exc:
        log.error("notifier cannot start: %s", exc)
        return 2
    if args.check:
        print(f"{config.source}: valid, {len(config.receivers)} receivers")
        return 0
    kafka = KafkaSettings()
    try:
        ensure_topics(kafka, _topics(settings))
    except Exception as exc:  # noqa: BLE001 - any Kafka problem means: cannot start
        log.error("notifier cannot start: %s", exc)
        return 2
    metrics = Metrics()
    try:
        serve(settings.metrics_port)
    except OSError as exc:
        log.error("notifier cannot serve /metrics on port %d: %s", settings.metrics_port, exc)
        return 2
    notifier = Notifier(
        config,
        settings,
        kafka,
        TopicSettings().alerts,
        lambda session: Senders(secrets, session),
        metrics=metrics,
    )
    log.info(
        "notifier starting: %s, %d receivers, alerts from %s, silences %s, log %s",
        config.source,
        len(config.receivers),
        TopicSettings().alerts,
        settings.silences_topic,
        settings.log_topic,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, notifier.stopping.set)
        await notifier.run()

    try:
        asyncio.run(main())
    except Exception:
        log.exception("notifier crashed")
        return 1
    log.info("notifier stopped")
    return 0


def _read_silences(kafka: KafkaSettings, topic: str) -> dict[str, Silence]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        found: dict[str, Silence] = {}
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for m in records:
                    try:
                        s = decode_silence(m.value)
                    except ValueError:
                        continue
                    if s.id not in found or s.updated_at >= found[s.id].updated_at:
                        found[s.id] = s
        return found
    finally:
        consumer.close()


def _write_silence(kafka: KafkaSettings, topic: str, s: Silence) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**kafka.client_options(), acks="all")
    try:
        producer.send(topic, encode_silence(s), key=s.id.encode()).get(timeout=30)
    finally:
        producer.close()


def run_silence(argv: list[str] | None = None) -> int:
    """``iocstream silence add|list|expire``; 0 on success, 2 for bad input."""
    parser = argparse.ArgumentParser(
        prog="iocstream silence",
        description="Mute notifications of alerts matching label matchers for a while. "
        "Matchers: name=value, name!=value, name=~regex, name!~regex (labels of the alert "
        "plus severity and state).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a silence; prints its id")
    add.add_argument("matchers", nargs="+", help='e.g. alertname=river_level_alarm district="x"')
    add.add_argument("--duration", default="2h", help="how long (default 2h)")
    add.add_argument("--author", required=True, help="who silences (kept with the silence)")
    add.add_argument("--comment", default="", help="why")
    lst = sub.add_parser("list", help="list silences (active and pending by default)")
    lst.add_argument("--all", action="store_true", help="include expired silences")
    exp = sub.add_parser("expire", help="end a silence now")
    exp.add_argument("id", help="silence id (from add or list)")
    exp.add_argument("--author", required=True, help="who ends it")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    from connectors.notify.service import NotifierSettings

    settings, kafka = NotifierSettings(), KafkaSettings()
    topic = settings.silences_topic
    now = datetime.now(UTC)
    ensure_topics(kafka, _topics(settings))
    if args.command == "add":
        try:
            silence = Silence.new(
                args.matchers, now, now + parse_duration(args.duration), args.author, args.comment
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        _write_silence(kafka, topic, silence)
        print(silence.id)
        return 0
    silences = _read_silences(kafka, topic)
    if args.command == "list":
        for s in sorted(silences.values(), key=lambda s: s.starts_at):
            if args.all or s.ends_at > now:
                state = (
                    "active" if s.active(now) else ("pending" if s.starts_at > now else "expired")
                )
                print(
                    f"{s.id}  {state:7}  until {s.ends_at.isoformat(timespec='seconds')}  "
                    f"by {s.created_by}  {' '.join(map(str, s.matchers))}  {s.comment}"
                )
        return 0
    found = silences.get(args.id)
    if found is None:
        print(f"error: no silence {args.id}", file=sys.stderr)
        return 2
    if found.ends_at <= now:
        print(f"{found.id} already expired")
        return 0
    _write_silence(kafka, topic, found.expired(args.author, now))
    print(f"{found.id} expired")
    return 0


if __name__ == "__main__":
    sys.exit(run())
