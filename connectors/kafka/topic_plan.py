"""What ``iocstream kafka init`` must do to a cluster: a pure plan, no Kafka in it.

:func:`plan_topics` compares the wanted topics (:class:`TopicSpec`) with what the cluster has
(:class:`TopicState`) and returns a :class:`TopicPlan`: topics to create, managed configs to
set, and errors that stop everything. :func:`check_copartitioning` checks that the topics of
each :class:`CoPartitionGroup` have one partition count.

Rules (why they are errors and not silently "fixed"):

* A topic's partition count is never changed. Adding partitions moves keys to other
  partitions (murmur2 modulo the count), which breaks per-device order and separates a
  device's records from its Faust table state; removing partitions is impossible. A topic
  whose count differs from the configured one is an error naming both numbers.
* Co-partitioned topics must agree: a Faust table's changelog (and any repartition topic) is
  read partition by partition next to its input, so changelog partition ``p`` must hold the
  state of input partition ``p``. The readings, events and indicators topics are keyed by
  device or subject id with the same partitioner, so they share one count too (DESIGN.md).
* Replication above the broker count, or ``min.insync.replicas`` above the replication
  factor, would make every ``acks=all`` write fail: errors.
* A differing replication factor of an existing topic is reported as a warning (changing it
  is a partition reassignment, an operator's decision). Differing *managed* configs
  (``cleanup.policy``, ``retention.ms``, ``min.insync.replicas``) are set again: that is
  safe, idempotent and what "configuration" means.

A plan with errors is never applied (:attr:`TopicPlan.ok`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the platform wants it; ``config`` holds the topic configs it manages."""

    name: str
    partitions: int
    replication_factor: int
    config: tuple[tuple[str, str], ...] = ()

    @property
    def config_dict(self) -> dict[str, str]:
        return dict(self.config)


@dataclass(frozen=True)
class TopicState:
    """An existing topic: partition count, replication factor and its non-default configs."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CoPartitionGroup:
    """Topics that must have one partition count, with the reason shown in errors.

    With ``faust_app``, every topic named ``<faust_app>-...-changelog`` or
    ``<faust_app>-...-repartition`` (Faust's internal topics of that app) belongs to the group
    too, whether it is listed or was found on the cluster.
    """

    name: str
    topics: tuple[str, ...]
    reason: str
    faust_app: str | None = None

    def members(self, names: Iterable[str]) -> list[str]:
        """The group's topics among ``names`` (listed ones first, in order)."""
        names = list(names)
        listed = [t for t in self.topics if t in names]
        if self.faust_app is None:
            return listed
        prefix = f"{self.faust_app}-"
        internal = sorted(
            n
            for n in names
            if n.startswith(prefix)
            and n.endswith(("-changelog", "-repartition"))
            and n not in listed
        )
        return listed + internal


@dataclass(frozen=True)
class ConfigChange:
    """Set ``key`` of ``topic`` from ``current`` (``None``: broker default) to ``wanted``."""

    topic: str
    key: str
    current: str | None
    wanted: str


@dataclass
class TopicPlan:
    """The actions for one cluster; apply only when :attr:`ok`."""

    create: list[TopicSpec] = field(default_factory=list)
    unchanged: list[TopicSpec] = field(default_factory=list)
    configs: list[ConfigChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def changes(self) -> bool:
        """Whether applying the plan would change anything."""
        return bool(self.create or self.configs)


def partition_counts(
    specs: Iterable[TopicSpec], existing: Mapping[str, TopicState]
) -> dict[str, int]:
    """Partition count of every topic after the plan: existing count, else the wanted one."""
    counts = {s.name: s.partitions for s in specs}
    counts.update({name: state.partitions for name, state in existing.items()})
    return counts


def check_copartitioning(
    groups: Iterable[CoPartitionGroup], counts: Mapping[str, int]
) -> list[str]:
    """One error per group whose topics (those in ``counts``) have different counts.

    Topics of a group that are neither wanted nor existing (a repartition topic Faust has not
    made yet) are left out: they will be created with the group's count by their owner.
    """
    errors = []
    for group in groups:
        present = [(t, counts[t]) for t in group.members(counts)]
        if len({n for _, n in present}) > 1:
            listing = ", ".join(f"{t} has {n}" for t, n in present)
            errors.append(
                f"co-partitioned topics of {group.name!r} disagree: {listing} "
                f"partitions ({group.reason})"
            )
    return errors


def plan_topics(
    specs: Sequence[TopicSpec],
    existing: Mapping[str, TopicState],
    *,
    brokers: int,
    groups: Iterable[CoPartitionGroup] = (),
) -> TopicPlan:
    """Compare wanted and existing topics; see the module docstring for the rules."""
    plan = TopicPlan()
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            plan.errors.append(
                f"topic {spec.name} is configured twice (two IOC_TOPIC_* names are equal)"
            )
            continue
        seen.add(spec.name)
        plan.errors += _spec_errors(spec, brokers)
        state = existing.get(spec.name)
        if state is None:
            plan.create.append(spec)
            continue
        plan.unchanged.append(spec)
        if state.partitions != spec.partitions:
            plan.errors.append(
                f"topic {spec.name} has {state.partitions} partitions but {spec.partitions} "
                "are configured (IOC_TOPIC_PARTITIONS); partition counts are never changed "
                "because keys would move: configure the existing count, or recreate the topic"
            )
        if state.replication_factor != spec.replication_factor:
            plan.warnings.append(
                f"topic {spec.name} has replication factor {state.replication_factor}, "
                f"configured {spec.replication_factor}: left as it is (reassign partitions "
                "with kafka-reassign-partitions.sh to change it)"
            )
        for key, wanted in spec.config:
            current = state.config.get(key)
            if current != wanted:
                plan.configs.append(ConfigChange(spec.name, key, current, wanted))
    plan.errors += check_copartitioning(groups, partition_counts(specs, existing))
    return plan


def _spec_errors(spec: TopicSpec, brokers: int) -> list[str]:
    errors = []
    if spec.partitions < 1:
        errors.append(f"topic {spec.name}: partitions must be >= 1, not {spec.partitions}")
    if brokers and spec.replication_factor > brokers:
        errors.append(
            f"topic {spec.name}: replication factor {spec.replication_factor} exceeds the "
            f"{brokers} broker(s) of the cluster (IOC_TOPIC_REPLICATION_FACTOR)"
        )
    min_isr = spec.config_dict.get("min.insync.replicas")
    if min_isr is not None and int(min_isr) > spec.replication_factor:
        errors.append(
            f"topic {spec.name}: min.insync.replicas {min_isr} exceeds replication factor "
            f"{spec.replication_factor}, so no acks=all write could succeed "
            "(IOC_TOPIC_MIN_INSYNC_REPLICAS)"
        )
    return errors
