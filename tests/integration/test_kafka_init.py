"""``iocstream kafka init`` against the real Kafka of the test stack, on uuid-named topics.

Every ``IOC_TOPIC_*`` name, the worker's and the alerter's app ids are unique per test, so
the wanted topics are all new: a dry run creates nothing, the first run creates everything
with the configured partitions and configs, the second run changes nothing, a changed
retention is set again, and a changelog that disagrees with its input stops the command
before it changes anything.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from connectors.settings import KafkaSettings
from streams.cli.kafka import run

pytestmark = pytest.mark.integration

TOPIC_VARS = (
    "READINGS",
    "INBOUND",
    "EVENTS",
    "INDICATORS",
    "ALERTS",
    "ALERT_ACTIONS",
    "DEADLETTER",
)


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch, unique: str) -> dict[str, str]:
    """Unique topic names and app ids, exported as the IOC_* variables ``run`` reads."""
    out = {var: f"init-{var.lower().replace('_', '-')}-{unique}" for var in TOPIC_VARS}
    for var, name in out.items():
        monkeypatch.setenv(f"IOC_TOPIC_{var}", name)
    monkeypatch.setenv("IOC_TOPIC_PARTITIONS", "5")
    monkeypatch.setenv("IOC_TOPIC_REPLICATION_FACTOR", "1")
    monkeypatch.setenv("IOC_TOPIC_RETENTION_HOURS", "2")
    monkeypatch.setenv("IOC_WORKER_APP_ID", f"init-worker-{unique}")
    monkeypatch.setenv("IOC_ALERTER_APP_ID", f"init-alerter-{unique}")
    monkeypatch.delenv("IOC_ALERTER_PARTITIONS", raising=False)
    out["WORKER_CHANGELOG"] = f"init-worker-{unique}-reading-windows-1m-changelog"
    out["ALERTER_CHANGELOG"] = f"init-alerter-{unique}-alert-state-changelog"
    out["ALERTER_INPUTS"] = f"init-alerter-{unique}-alert-inputs"
    return out


@pytest.fixture
def admin() -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(**KafkaSettings().client_options(), client_id="test-kafka-init")
    yield client
    client.close()


def _partitions(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    present = sorted(set(names) & set(admin.list_topics()))
    return (
        {d["name"]: len(d["partitions"]) for d in admin.describe_topics(present)} if present else {}
    )


def _config(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    result = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
    )
    values = next(iter(result.values()))[topic]
    return {k: str(v["value"]) for k, v in values.items()}


def test_init_creates_checks_and_is_idempotent(
    names: dict[str, str], admin: KafkaAdminClient, capsys: pytest.CaptureFixture[str]
) -> None:
    all_names = list(names.values())
    assert run(["init", "--dry-run"]) == 0
    assert "would create" in capsys.readouterr().out
    assert _partitions(admin, all_names) == {}  # a dry run changes nothing

    assert run(["init"]) == 0
    out = capsys.readouterr().out
    assert names["READINGS"] in out
    assert _partitions(admin, all_names) == dict.fromkeys(all_names, 5)
    readings = _config(admin, names["READINGS"])
    assert readings["cleanup.policy"] == "delete"
    assert readings["retention.ms"] == str(2 * 3_600_000)
    assert readings["min.insync.replicas"] == "1"
    assert _config(admin, names["DEADLETTER"])["retention.ms"] == str(720 * 3_600_000)
    assert _config(admin, names["WORKER_CHANGELOG"])["cleanup.policy"] == "compact"
    assert _config(admin, names["ALERTER_CHANGELOG"])["cleanup.policy"] == "compact"

    assert run(["init"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_changed_retention_is_set_again(
    names: dict[str, str],
    admin: KafkaAdminClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(["init"]) == 0
    monkeypatch.setenv("IOC_TOPIC_RETENTION_HOURS", "3")
    assert run(["init", "--dry-run"]) == 0
    assert "would set retention.ms=10800000" in capsys.readouterr().out
    assert _config(admin, names["READINGS"])["retention.ms"] == str(2 * 3_600_000)
    assert run(["init"]) == 0
    assert _config(admin, names["READINGS"])["retention.ms"] == str(3 * 3_600_000)


def test_disagreeing_changelog_stops_init_before_any_change(
    names: dict[str, str], admin: KafkaAdminClient, capsys: pytest.CaptureFixture[str]
) -> None:
    # A changelog left from an earlier deployment with another partition count.
    admin.create_topics(
        {names["WORKER_CHANGELOG"]: {"num_partitions": 3, "replication_factor": 1}},
        wait_for_metadata=True,
    )
    assert run(["init"]) == 1
    err = capsys.readouterr().err
    assert f"{names['READINGS']} has 5, {names['WORKER_CHANGELOG']} has 3" in err
    assert "nothing was changed" in err
    assert _partitions(admin, list(names.values())) == {names["WORKER_CHANGELOG"]: 3}


def test_unreachable_kafka_exits_2(
    names: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IOC_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    assert run(["init", "--dry-run"]) == 2
    assert "127.0.0.1:9" in capsys.readouterr().err
