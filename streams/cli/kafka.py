"""``iocstream kafka init``: create the platform's topics and check their partition counts.

Wanted topics: DESIGN.md's topics (names ``IOC_TOPIC_*``), plus the Faust internal topics of
the worker (``IOC_WORKER_APP_ID``: its window table's changelog) and of the alerter
(``IOC_ALERTER_APP_ID``: its internal input topic and its state changelog), created ahead so
that their partition counts are checked with their inputs. Rules and configs are in
:mod:`connectors.kafka.topic_plan` and :mod:`connectors.kafka.topic_policy`.

Exit codes: 0 done (or nothing to do), 1 the plan has errors (nothing was changed),
2 Kafka unreachable or bad settings.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from kafka.errors import KafkaError
from pydantic import ValidationError

from connectors.kafka.admin import init_topics
from connectors.kafka.topic_plan import CoPartitionGroup, TopicPlan, TopicSpec
from connectors.kafka.topic_policy import (
    FaustApp,
    TopicPolicy,
    copartition_groups,
    faust_specs,
    platform_specs,
)
from connectors.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iocstream kafka",
        description="Create the platform's Kafka topics and the stream apps' changelog and "
        "internal topics with the configured partitions (IOC_TOPIC_PARTITIONS), replication "
        "(IOC_TOPIC_REPLICATION_FACTOR), retention (IOC_TOPIC_RETENTION_HOURS, "
        "IOC_TOPIC_DEADLETTER_RETENTION_HOURS) and min.insync.replicas "
        "(IOC_TOPIC_MIN_INSYNC_REPLICAS); check that co-partitioned topics have equal "
        "partition counts. Idempotent: existing topics are kept, differing managed configs "
        "are set again, partition counts are never changed. Exit 0 done, 1 plan errors "
        "(nothing changed), 2 Kafka unreachable or bad settings.",
    )
    parser.add_argument("action", choices=["init"], help="init: create and check the topics")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and the checks, change nothing"
    )
    return parser


def wanted_topics() -> tuple[list[TopicSpec], list[CoPartitionGroup]]:
    """The topics to create and the co-partition groups, from the environment's settings."""
    from streams.agents.districts import TABLE_NAME as DISTRICTS_TABLE
    from streams.agents.districts import district_inputs_topic
    from streams.agents.readings import TABLE_NAME as WINDOWS_TABLE
    from streams.agents.services import TABLE_NAME as SERVICES_TABLE
    from streams.agents.services import by_district_topic
    from streams.alerting.agents import TABLE_NAME as ALERT_TABLE
    from streams.alerting.agents import inputs_topic_name
    from streams.alerting.cli import AlerterSettings
    from streams.app import WorkerSettings

    topics, policy = TopicSettings(), TopicPolicy()
    alerter_settings = AlerterSettings()
    alerter_internal = inputs_topic_name(alerter_settings.app_id)
    prefix = f"{alerter_settings.app_id}-"
    worker_id = WorkerSettings().app_id
    worker = FaustApp(
        worker_id,
        (WINDOWS_TABLE, SERVICES_TABLE, DISTRICTS_TABLE),
        topics.partitions,
        tuple(
            name.removeprefix(f"{worker_id}-")
            for name in (by_district_topic(worker_id), district_inputs_topic(worker_id))
        ),
    )
    alerter = FaustApp(
        alerter_settings.app_id,
        (ALERT_TABLE,),
        alerter_settings.partitions or topics.partitions,
        (alerter_internal.removeprefix(prefix),),
    )
    rf = topics.replication_factor
    specs = platform_specs(topics, policy)
    specs += faust_specs(worker, rf, policy) + faust_specs(alerter, rf, policy)
    return specs, copartition_groups(topics, worker, [alerter])


def _config_text(spec: TopicSpec) -> str:
    return " ".join(f"{k}={v}" for k, v in spec.config)


def render(plan: TopicPlan, *, dry_run: bool) -> str:
    """The plan as the table ``iocstream kafka init`` prints."""
    verb = "would create" if dry_run else "created"
    lines = [f"{'topic':<48} {'partitions':>10} {'replicas':>8}  action"]
    for spec in plan.create:
        lines.append(
            f"{spec.name:<48} {spec.partitions:>10} {spec.replication_factor:>8}  "
            f"{verb} ({_config_text(spec)})"
        )
    for spec in plan.unchanged:
        lines.append(f"{spec.name:<48} {spec.partitions:>10} {spec.replication_factor:>8}  exists")
    verb = "would set" if dry_run else "set"
    for change in plan.configs:
        lines.append(
            f"{change.topic:<48} {'':>10} {'':>8}  {verb} {change.key}={change.wanted} "
            f"(was {change.current if change.current is not None else 'unset'})"
        )
    lines += [f"warning: {w}" for w in plan.warnings]
    if plan.ok and not plan.changes:
        lines.append("nothing to do: every topic exists as configured")
    return "\n".join(lines)


def reachable(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """Whether a TCP connection to one of the bootstrap servers succeeds (checked before the
    admin client is built: kafka-python leaks its sockets when no broker answers)."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        specs, groups = wanted_topics()
        kafka = KafkaSettings()
    except ValidationError as exc:
        print(f"iocstream kafka init: bad settings: {exc}", file=sys.stderr)
        return 2
    if not reachable(kafka.bootstrap):
        print(f"iocstream kafka init: cannot reach Kafka at {kafka.bootstrap}", file=sys.stderr)
        return 2
    try:
        plan = init_topics(kafka, specs, groups, dry_run=args.dry_run)
    except KafkaError as exc:
        print(f"iocstream kafka init: Kafka at {kafka.bootstrap}: {exc}", file=sys.stderr)
        return 2
    if not plan.ok:
        for error in plan.errors:
            print(f"iocstream kafka init: error: {error}", file=sys.stderr)
        print("iocstream kafka init: nothing was changed", file=sys.stderr)
        return 1
    print(render(plan, dry_run=args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
