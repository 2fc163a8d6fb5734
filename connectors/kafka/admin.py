"""Create the platform's topics (kafka-python admin) and check co-partitioning.

Guarantees: ``ensure_topics`` is idempotent; an existing topic is left as it is, and if its
partition count differs from the one asked for it is reported (never silently changed),
because topics whose keys meet in one Faust table must have equal partition counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from connectors.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: tuple[tuple[str, str], ...] = ()


def platform_topics(topics: TopicSettings) -> list[TopicSpec]:
    """The topics of DESIGN.md with the configured partition count and replication."""
    names = [
        topics.readings,
        topics.inbound,
        topics.events,
        topics.indicators,
        topics.alerts,
        topics.alert_actions,
        topics.deadletter,
    ]
    return [TopicSpec(n, topics.partitions, topics.replication_factor) for n in names]


def ensure_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec]) -> dict[str, int]:
    """Create missing topics; return every topic's actual partition count.

    Raises ``ValueError`` naming the topics whose partition count differs from the spec.
    """
    specs = list(specs)
    admin = KafkaAdminClient(**kafka.client_options(), client_id="iocstream-admin")
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new = [
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config))
                for s in missing
            ]
            try:
                admin.create_topics(new, validate_only=False)
            except TopicAlreadyExistsError:
                log.debug("a topic was created concurrently; continuing")
            for s in missing:
                log.info("created topic %s (%d partitions)", s.name, s.partitions)
        described = admin.describe_topics([s.name for s in specs])
    finally:
        admin.close()
    counts = {d["name"]: len(d["partitions"]) for d in described}
    wrong = [
        f"{s.name} has {counts.get(s.name)} (want {s.partitions})"
        for s in specs
        if counts.get(s.name) != s.partitions
    ]
    if wrong:
        raise ValueError("topic partition counts disagree: " + "; ".join(wrong))
    return counts
