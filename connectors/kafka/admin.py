"""Create the platform's topics (kafka-python admin) and check co-partitioning.

Two entry points:

* :func:`ensure_topics` (used by the local stack and tests): create what is missing and
  raise ``ValueError`` if an existing topic's partition count differs from the spec.
  Idempotent; existing topics are never changed.
* :func:`init_topics` (``iocstream kafka init``): read the cluster, build a
  :class:`~connectors.kafka.topic_plan.TopicPlan` (pure rules in
  :mod:`connectors.kafka.topic_plan`), and apply it only if it has no errors: create the
  missing topics and set managed configs that differ. Idempotent: a second run finds nothing
  to do. A partition count is never changed (keys would move to other partitions).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import TopicAlreadyExistsError

from connectors.kafka.topic_plan import (
    ConfigChange,
    CoPartitionGroup,
    TopicPlan,
    TopicSpec,
    TopicState,
    plan_topics,
)
from connectors.kafka.topic_policy import TopicPolicy, platform_specs
from connectors.settings import KafkaSettings, TopicSettings

__all__ = ["TopicSpec", "ensure_topics", "init_topics", "platform_topics", "read_topics"]

log = logging.getLogger(__name__)


def platform_topics(topics: TopicSettings, policy: TopicPolicy | None = None) -> list[TopicSpec]:
    """The topics of DESIGN.md with the configured partitions, replication and configs."""
    return platform_specs(topics, policy or TopicPolicy())


def _admin(kafka: KafkaSettings) -> KafkaAdminClient:
    return KafkaAdminClient(**kafka.client_options(), client_id="iocstream-admin")


def _create(admin: KafkaAdminClient, specs: Sequence[TopicSpec]) -> None:
    if not specs:
        return
    request = {
        s.name: {
            "num_partitions": s.partitions,
            "replication_factor": s.replication_factor,
            "configs": s.config_dict,
        }
        for s in specs
    }
    try:
        admin.create_topics(request, wait_for_metadata=True)
    except TopicAlreadyExistsError:
        log.info("a topic was created concurrently by another process; continuing")
    for s in specs:
        log.info(
            "created topic %s (%d partitions, replication %d)",
            s.name,
            s.partitions,
            s.replication_factor,
        )


def ensure_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec]) -> dict[str, int]:
    """Create missing topics; return every topic's actual partition count.

    Raises ``ValueError`` naming the topics whose partition count differs from the spec.
    """
    specs = list(specs)
    admin = _admin(kafka)
    try:
        existing = set(admin.list_topics())
        _create(admin, [s for s in specs if s.name not in existing])
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


def read_topics(
    admin: KafkaAdminClient, names: Iterable[str], config_keys: Iterable[str]
) -> dict[str, TopicState]:
    """The state of those of ``names`` that exist, with the effective values of
    ``config_keys`` (broker defaults included, so an unset key that already has the wanted
    value is not reported as different)."""
    wanted = set(names)
    present = sorted(wanted & set(admin.list_topics()))
    if not present:
        return {}
    keys = set(config_keys)
    configs = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in present], config_filter="all"
    )
    by_topic: dict[str, dict[str, dict[str, object]]] = next(iter(configs.values()), {})
    states = {}
    for d in admin.describe_topics(present):
        parts = d["partitions"]
        values = by_topic.get(d["name"], {})
        states[d["name"]] = TopicState(
            d["name"],
            len(parts),
            len(parts[0]["replica_nodes"]) if parts else 0,
            {k: str(v["value"]) for k, v in values.items() if k in keys},
        )
    return states


def _internal_topics(admin: KafkaAdminClient, groups: Iterable[CoPartitionGroup]) -> set[str]:
    """Existing Faust internal topics of the groups' apps (changelogs, repartitions)."""
    names = admin.list_topics()
    return {t for g in groups if g.faust_app for t in g.members(names)}


def _await_configs(
    admin: KafkaAdminClient, changes: Sequence[ConfigChange], timeout_s: float = 15.0
) -> None:
    """Wait until the broker describes the new config values (metadata propagates
    asynchronously after the controller accepted them), so that they are in force when
    ``init_topics`` returns; logs a warning if they are not visible within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    keys = {c.key for c in changes}
    while True:
        states = read_topics(admin, {c.topic for c in changes}, keys)
        pending = [c for c in changes if states[c.topic].config.get(c.key) != c.wanted]
        if not pending:
            return
        if time.monotonic() > deadline:
            log.warning("topic configs not yet visible after %.0f s: %s", timeout_s, pending)
            return
        time.sleep(0.2)


def init_topics(
    kafka: KafkaSettings,
    specs: Sequence[TopicSpec],
    groups: Sequence[CoPartitionGroup],
    *,
    dry_run: bool = False,
) -> TopicPlan:
    """Plan against the cluster and, unless ``dry_run`` or the plan has errors, apply it.

    Returns the plan (its ``errors`` say why nothing was applied). Topics are created before
    configs are set; a failure part-way leaves a state that a re-run completes.
    """
    admin = _admin(kafka)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        names = {s.name for s in specs} | _internal_topics(admin, groups)
        keys = {k for s in specs for k, _ in s.config}
        existing = read_topics(admin, names, keys)
        plan = plan_topics(specs, existing, brokers=brokers, groups=groups)
        if dry_run or not plan.ok:
            return plan
        _create(admin, plan.create)
        by_topic: dict[str, dict[str, str]] = {}
        for change in plan.configs:
            by_topic.setdefault(change.topic, {})[change.key] = change.wanted
        if by_topic:
            result = admin.alter_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, t, configs=c)
                    for t, c in by_topic.items()
                ]
            )
            failed = {
                name: outcome
                for per_type in result.values()
                for name, outcome in per_type.items()
                if outcome != "OK"
            }
            if failed:
                raise RuntimeError(f"setting topic configs failed: {failed}")
            _await_configs(admin, plan.configs)
        for change in plan.configs:
            log.info(
                "topic %s: %s %s -> %s", change.topic, change.key, change.current, change.wanted
            )
        return plan
    finally:
        admin.close()
