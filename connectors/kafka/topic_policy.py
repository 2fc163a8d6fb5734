"""The platform's topics as configuration: names, partitions, replication and topic configs.

Settings: :class:`connectors.settings.TopicSettings` (``IOC_TOPIC_*`` names, partitions,
replication factor) and :class:`TopicPolicy` (``IOC_TOPIC_*`` retention and
``min.insync.replicas``). Pure: builds :class:`~connectors.kafka.topic_plan.TopicSpec` and
:class:`~connectors.kafka.topic_plan.CoPartitionGroup` values, talks to nobody.

Topic configs chosen here:

* Event topics (readings, inbound, events, indicators, alerts, alert actions, dead letters,
  and Faust repartition-like internal topics) use ``cleanup.policy=delete`` with a time
  retention: Kafka is the replay buffer, ClickHouse the store. Dead letters are kept longer,
  because someone has to look at them.
* Faust table changelogs use ``cleanup.policy=compact``: the last record per key is the
  state, which must never expire (a worker recovers from it after a crash or rebalance).
* ``min.insync.replicas`` is 2 when the replication factor is at least 3 (one broker may be
  down and an ``acks=all`` write still lands on two), else 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.kafka.topic_plan import CoPartitionGroup, TopicSpec
from connectors.settings import TopicSettings

HOUR_MS = 3_600_000


class TopicPolicy(BaseSettings):
    """Topic configs of ``iocstream kafka init`` (``IOC_TOPIC_*``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_TOPIC_", extra="ignore")

    retention_hours: float = Field(
        168.0, gt=0, description="retention of event topics (default 7 days)"
    )
    deadletter_retention_hours: float = Field(
        720.0, gt=0, description="retention of the dead-letter topic (default 30 days)"
    )
    min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas (default 2 if replication >= 3, else 1)"
    )

    def min_isr(self, replication_factor: int) -> int:
        """``min.insync.replicas`` for a topic of ``replication_factor`` replicas."""
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return 2 if replication_factor >= 3 else 1

    def delete_config(self, replication_factor: int, hours: float) -> tuple[tuple[str, str], ...]:
        return (
            ("cleanup.policy", "delete"),
            ("retention.ms", str(round(hours * HOUR_MS))),
            ("min.insync.replicas", str(self.min_isr(replication_factor))),
        )

    def compact_config(self, replication_factor: int) -> tuple[tuple[str, str], ...]:
        return (
            ("cleanup.policy", "compact"),
            ("min.insync.replicas", str(self.min_isr(replication_factor))),
        )


@dataclass(frozen=True)
class FaustApp:
    """A Faust app's internal topics: ``<app_id>-<table>-changelog`` per table (compacted)
    and the named internal topics (``<app_id>-<name>``, delete policy), all with
    ``partitions`` partitions because they are partitioned like the app's input."""

    app_id: str
    tables: tuple[str, ...]
    partitions: int
    internal: tuple[str, ...] = ()

    def changelogs(self) -> list[str]:
        return [changelog_topic(self.app_id, t) for t in self.tables]

    def internal_topics(self) -> list[str]:
        return [f"{self.app_id}-{name}" for name in self.internal]


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name of a table's changelog topic (app version 1, the default)."""
    return f"{app_id}-{table}-changelog"


def platform_specs(topics: TopicSettings, policy: TopicPolicy) -> list[TopicSpec]:
    """DESIGN.md's topics with the configured partitions, replication and configs."""
    rf, n = topics.replication_factor, topics.partitions
    events = policy.delete_config(rf, policy.retention_hours)
    specs = [
        TopicSpec(name, n, rf, events)
        for name in (
            topics.readings,
            topics.inbound,
            topics.events,
            topics.indicators,
            topics.alerts,
            topics.alert_actions,
        )
    ]
    specs.append(
        TopicSpec(
            topics.deadletter, n, rf, policy.delete_config(rf, policy.deadletter_retention_hours)
        )
    )
    return specs


def faust_specs(app: FaustApp, rf: int, policy: TopicPolicy) -> list[TopicSpec]:
    """The internal topics of one Faust app, created ahead so their counts are checked."""
    compact = policy.compact_config(rf)
    events = policy.delete_config(rf, policy.retention_hours)
    return [TopicSpec(t, app.partitions, rf, compact) for t in app.changelogs()] + [
        TopicSpec(t, app.partitions, rf, events) for t in app.internal_topics()
    ]


def copartition_groups(
    topics: TopicSettings, worker: FaustApp, others: Sequence[FaustApp] = ()
) -> list[CoPartitionGroup]:
    """The groups whose topics must share a partition count.

    * the worker: ``ioc.readings`` with its table changelogs and repartition topics;
    * every other Faust app: its internal input topics with its changelogs;
    * the keyed inputs ``ioc.readings``, ``ioc.events`` and ``ioc.indicators`` (device or
      subject ids through one partitioner, DESIGN.md).
    """
    groups = [
        CoPartitionGroup(
            f"worker {worker.app_id}",
            (topics.readings, *worker.changelogs(), *worker.internal_topics()),
            "a Faust table's changelog partition p holds the state of input partition p",
            faust_app=worker.app_id,
        )
    ]
    groups += [
        CoPartitionGroup(
            f"app {app.app_id}",
            (*app.internal_topics(), *app.changelogs()),
            "a Faust table's changelog partition p holds the state of input partition p",
            faust_app=app.app_id,
        )
        for app in others
    ]
    groups.append(
        CoPartitionGroup(
            "keyed inputs",
            (topics.readings, topics.events, topics.indicators),
            "device and subject ids map to the same partition number on each (murmur2)",
        )
    )
    return groups
