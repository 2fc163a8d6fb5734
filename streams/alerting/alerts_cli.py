"""``iocstream alerts list|tail|ack|unack|assign|resolve|silence|unsilence``: operators' CLI.

* ``list`` reads ``ioc.alerts`` from the beginning and prints the latest state of every alert
  that is open (``--all``: every fingerprint seen), most severe first.
* ``tail`` prints state changes as they arrive (``--from-beginning`` to replay history).
* The actions publish one ``ioc.alert-actions/v1`` record (key: fingerprint) that the alerter
  applies; the change then appears on ``ioc.alerts``. ``--alert-id`` pins the action to one
  alert (stale actions are rejected by the alerter rather than landing on a newer alert).

Settings: ``IOC_KAFKA_*``, ``IOC_TOPIC_ALERTS``, ``IOC_TOPIC_ALERT_ACTIONS``. Exit codes: 0 on
success, 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from connectors.settings import KafkaSettings, TopicSettings
from schemas.alerts import (
    ActionKind,
    AlertAction,
    AlertEvent,
    AlertFormatError,
    AlertState,
    decode_event,
    encode_action,
    severity_rank,
)
from streams.alerts.durations import parse_duration


def _events(kafka: KafkaSettings, topic: str, *, follow: bool, start: bool) -> Iterator[AlertEvent]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        if start:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        end = consumer.end_offsets(tps)
        while follow or any(consumer.position(tp) < end[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for m in records:
                    try:
                        yield decode_event(m.value)
                    except AlertFormatError:
                        continue
    finally:
        consumer.close()


def _line(s: AlertState) -> str:
    ack = f" ack={s.acknowledged_by}" if s.acknowledged_by else ""
    who = f" assignee={s.assignee}" if s.assignee else ""
    summary = s.annotations.get("summary_vi") or s.annotations.get("summary_en") or ""
    since = s.fired_at.isoformat(timespec="seconds") if s.fired_at else "-"
    return (
        f"{s.fingerprint}  {s.state:8} {(s.severity or '-'):8} {s.rule}  since {since}"
        f"{ack}{who}  {summary}"
    )


def _send(kafka: KafkaSettings, topic: str, action: AlertAction) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**kafka.client_options(), acks="all")
    try:
        producer.send(topic, encode_action(action), key=action.fingerprint.encode()).get(30)
    finally:
        producer.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iocstream alerts",
        description="List and follow alerts (ioc.alerts); acknowledge, assign, resolve and "
        "silence them (ioc.alert-actions, applied by iocstream alerter).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="latest state of open alerts")
    lst.add_argument("--all", action="store_true", help="every fingerprint, not only open")
    tail = sub.add_parser("tail", help="follow state changes (Ctrl-C to stop)")
    tail.add_argument("--from-beginning", action="store_true", help="replay history first")
    for name, help_ in (
        ("ack", "acknowledge an alert"),
        ("unack", "withdraw an acknowledgement"),
        ("assign", "assign an alert to someone ('' removes)"),
        ("resolve", "resolve an alert by hand"),
        ("silence", "mute an alert's notifications for a while"),
        ("unsilence", "lift an alert's silence"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("fingerprint", help="alert fingerprint (from list)")
        p.add_argument("--actor", required=True, help="who does it (kept in the history)")
        p.add_argument("--comment", default="", help="why")
        p.add_argument("--alert-id", help="apply only if this alert is still the current one")
        if name == "assign":
            p.add_argument("assignee", help="user id")
        if name == "silence":
            p.add_argument("--duration", default="2h", help="how long (default 2h)")
    return parser


ACTIONS: dict[str, ActionKind] = {
    "ack": "acknowledge",
    "unack": "unacknowledge",
    "assign": "assign",
    "resolve": "resolve",
    "silence": "silence",
    "unsilence": "unsilence",
}


def run(argv: list[str] | None = None) -> int:
    """Run one subcommand (module docstring); returns the exit code."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    kafka, topics = KafkaSettings(), TopicSettings()
    if args.command == "list":
        latest: dict[str, AlertState] = {}
        for e in _events(kafka, topics.alerts, follow=False, start=True):
            held = latest.get(e.fingerprint)
            if held is None or e.revision > held.revision:
                latest[e.fingerprint] = e.state
        shown = [s for s in latest.values() if args.all or s.is_open]
        shown.sort(key=lambda s: (-severity_rank(s.severity) if s.severity else 1, s.fingerprint))
        for s in shown:
            print(_line(s))
        print(f"{len(shown)} alert(s)", file=sys.stderr)
        return 0
    if args.command == "tail":
        try:
            for e in _events(kafka, topics.alerts, follow=True, start=args.from_beginning):
                print(
                    f"{e.at.isoformat(timespec='seconds')}  {e.kind:13} by {e.actor}: "
                    f"{_line(e.state)}",
                    flush=True,
                )
        except KeyboardInterrupt:
            return 0
        return 0
    now = datetime.now(UTC)
    until = None
    try:
        if args.command == "silence":
            until = now + parse_duration(args.duration)
            if until - now <= timedelta(0):
                raise ValueError("duration must be positive")
        action = AlertAction(
            ACTIONS[args.command],
            args.fingerprint,
            args.actor,
            now,
            alert_id=args.alert_id,
            assignee=getattr(args, "assignee", None),
            until=until,
            comment=args.comment,
            action_id=uuid.uuid4().hex,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _send(kafka, topics.alert_actions, action)
    print(f"{action.action} of {action.fingerprint} sent ({action.action_id})")
    return 0


if __name__ == "__main__":
    sys.exit(run())
