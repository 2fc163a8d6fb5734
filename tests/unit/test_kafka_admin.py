"""Pure plan and co-partitioning rules of ``iocstream kafka init`` (no Kafka here)."""

from __future__ import annotations

import pytest

from connectors.kafka.topic_plan import (
    CoPartitionGroup,
    TopicSpec,
    TopicState,
    check_copartitioning,
    plan_topics,
)
from connectors.kafka.topic_policy import (
    FaustApp,
    TopicPolicy,
    copartition_groups,
    faust_specs,
    platform_specs,
)
from connectors.settings import TopicSettings

DELETE = (("cleanup.policy", "delete"), ("retention.ms", "1000"))


def _topics(partitions: int = 12, rf: int = 3) -> TopicSettings:
    return TopicSettings(partitions=partitions, replication_factor=rf)


def _state(spec: TopicSpec, **changes: object) -> TopicState:
    values: dict[str, object] = {
        "name": spec.name,
        "partitions": spec.partitions,
        "replication_factor": spec.replication_factor,
        "config": spec.config_dict,
    }
    values.update(changes)
    return TopicState(**values)  # type: ignore[arg-type]


def test_empty_cluster_creates_everything_and_is_ok() -> None:
    specs = [TopicSpec("a", 3, 1, DELETE), TopicSpec("b", 3, 1)]
    plan = plan_topics(specs, {}, brokers=1)
    assert plan.ok
    assert plan.changes
    assert plan.create == specs
    assert not plan.configs
    assert not plan.unchanged


def test_second_run_has_nothing_to_do() -> None:
    specs = [TopicSpec("a", 3, 1, DELETE)]
    plan = plan_topics(specs, {"a": _state(specs[0])}, brokers=1)
    assert plan.ok
    assert not plan.changes
    assert plan.unchanged == specs


def test_differing_managed_config_is_set_again() -> None:
    spec = TopicSpec("a", 3, 1, DELETE)
    state = _state(spec, config={"cleanup.policy": "delete", "retention.ms": "604800000"})
    plan = plan_topics([spec], {"a": state}, brokers=1)
    assert plan.ok
    assert [(c.topic, c.key, c.current, c.wanted) for c in plan.configs] == [
        ("a", "retention.ms", "604800000", "1000")
    ]


def test_partition_count_is_never_changed() -> None:
    spec = TopicSpec("a", 12, 1)
    plan = plan_topics([spec], {"a": _state(spec, partitions=6)}, brokers=1)
    assert not plan.ok
    assert "a has 6 partitions but 12 are configured" in plan.errors[0]


def test_replication_difference_is_only_a_warning() -> None:
    spec = TopicSpec("a", 3, 3)
    plan = plan_topics([spec], {"a": _state(spec, replication_factor=1)}, brokers=3)
    assert plan.ok
    assert "replication factor 1, configured 3" in plan.warnings[0]


def test_replication_above_broker_count_is_an_error() -> None:
    plan = plan_topics([TopicSpec("a", 3, 3)], {}, brokers=1)
    assert not plan.ok
    assert "exceeds the 1 broker(s)" in plan.errors[0]


def test_min_insync_above_replication_is_an_error() -> None:
    spec = TopicSpec("a", 3, 1, (("min.insync.replicas", "2"),))
    plan = plan_topics([spec], {}, brokers=3)
    assert not plan.ok
    assert "min.insync.replicas 2 exceeds replication factor 1" in plan.errors[0]


def test_duplicate_names_are_an_error() -> None:
    plan = plan_topics([TopicSpec("a", 3, 1), TopicSpec("a", 3, 1)], {}, brokers=1)
    assert not plan.ok
    assert "configured twice" in plan.errors[0]


def test_copartition_check_names_the_group_and_every_count() -> None:
    group = CoPartitionGroup("worker w", ("in", "w-t-changelog"), "state follows input")
    errors = check_copartitioning([group], {"in": 12, "w-t-changelog": 6, "other": 3})
    assert errors == [
        "co-partitioned topics of 'worker w' disagree: in has 12, w-t-changelog has 6 "
        "partitions (state follows input)"
    ]
    assert check_copartitioning([group], {"in": 12, "w-t-changelog": 12}) == []


def test_copartition_check_ignores_topics_that_do_not_exist_yet() -> None:
    group = CoPartitionGroup("g", ("in", "later"), "r")
    assert check_copartitioning([group], {"in": 12}) == []


def test_group_of_a_faust_app_includes_its_internal_topics_found_on_the_cluster() -> None:
    group = CoPartitionGroup("worker w", ("in",), "r", faust_app="w")
    names = ["in", "w-t-changelog", "w-x-repartition", "w-other", "ww-t-changelog", "x"]
    assert group.members(names) == ["in", "w-t-changelog", "w-x-repartition"]
    errors = check_copartitioning([group], {"in": 12, "w-x-repartition": 4, "x": 1})
    assert len(errors) == 1
    assert "w-x-repartition has 4" in errors[0]


def test_an_existing_changelog_that_disagrees_with_new_input_is_an_error() -> None:
    topics = _topics(partitions=12, rf=1)
    worker = FaustApp("w", ("t",), 12)
    policy = TopicPolicy()
    specs = platform_specs(topics, policy) + faust_specs(worker, 1, policy)
    changelog = next(s for s in specs if s.name == "w-t-changelog")
    existing = {changelog.name: _state(changelog, partitions=6)}
    plan = plan_topics(specs, existing, brokers=1, groups=copartition_groups(topics, worker))
    assert not plan.ok
    assert any(
        "'worker w' disagree: ioc.readings has 12, w-t-changelog has 6" in e for e in plan.errors
    )


def test_platform_specs_follow_the_settings() -> None:
    specs = {s.name: s for s in platform_specs(_topics(), TopicPolicy(retention_hours=24))}
    assert set(specs) == {
        "ioc.readings",
        "ioc.inbound",
        "ioc.events",
        "ioc.indicators",
        "ioc.alerts",
        "ioc.alert-actions",
        "ioc.deadletter",
    }
    assert all(s.partitions == 12 and s.replication_factor == 3 for s in specs.values())
    readings = specs["ioc.readings"].config_dict
    assert readings == {
        "cleanup.policy": "delete",
        "retention.ms": str(24 * 3_600_000),
        "min.insync.replicas": "2",
    }
    assert specs["ioc.deadletter"].config_dict["retention.ms"] == str(720 * 3_600_000)


@pytest.mark.parametrize(
    ("rf", "explicit", "want"), [(1, None, 1), (2, None, 1), (3, None, 2), (5, 3, 3)]
)
def test_min_insync_replicas(rf: int, explicit: int | None, want: int) -> None:
    assert TopicPolicy(min_insync_replicas=explicit).min_isr(rf) == want


def test_faust_changelogs_are_compacted_and_internal_topics_are_not() -> None:
    app = FaustApp("alerter", ("alert-state",), 8, ("alert-inputs",))
    specs = {s.name: s for s in faust_specs(app, 3, TopicPolicy())}
    assert specs["alerter-alert-state-changelog"].config_dict["cleanup.policy"] == "compact"
    assert "retention.ms" not in specs["alerter-alert-state-changelog"].config_dict
    assert specs["alerter-alert-inputs"].config_dict["cleanup.policy"] == "delete"
    assert all(s.partitions == 8 for s in specs.values())


def test_groups_cover_worker_other_apps_and_keyed_inputs() -> None:
    topics = _topics()
    worker = FaustApp("w", ("t",), 12)
    alerter = FaustApp("a", ("s",), 12, ("in",))
    groups = {g.name: g for g in copartition_groups(topics, worker, [alerter])}
    assert groups["worker w"].topics == ("ioc.readings", "w-t-changelog")
    assert groups["worker w"].faust_app == "w"
    assert groups["app a"].topics == ("a-in", "a-s-changelog")
    assert groups["keyed inputs"].topics == ("ioc.readings", "ioc.events", "ioc.indicators")


def test_environment_names_the_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_TOPIC_READINGS", "r-1")
    monkeypatch.setenv("IOC_TOPIC_RETENTION_HOURS", "2")
    monkeypatch.setenv("IOC_WORKER_APP_ID", "wk-1")
    monkeypatch.setenv("IOC_ALERTER_APP_ID", "al-1")
    from streams.cli.kafka import wanted_topics

    specs, groups = wanted_topics()
    names = {s.name for s in specs}
    assert {"r-1", "wk-1-reading-windows-1m-changelog", "al-1-alert-state-changelog"} <= names
    assert "al-1-alert-inputs" in names
    assert dict(next(s for s in specs if s.name == "r-1").config)["retention.ms"] == "7200000"
    assert groups[0].topics == (
        "r-1",
        "wk-1-reading-windows-1m-changelog",
        "wk-1-service-kpis-changelog",
        "wk-1-district-cells-changelog",
        "wk-1-service-events-by-district",
        "wk-1-district-inputs",
    )
