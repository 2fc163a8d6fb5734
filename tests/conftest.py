"""Shared test setup: one real local stack per test run, started only when needed.

Integration tests (marked ``integration``) ask for the ``stack`` fixture (directly or via
the autouse hook below). It starts real Apache Kafka, Mosquitto and the embedded ClickHouse
on test-only loopback ports with a fresh data directory, exports the matching ``IOC_*``
variables (so subprocesses started by tests see the same stack), and stops exactly those
processes at the end. If a service cannot start, the tests fail with the service's log:
they never skip.

Set ``IOC_TEST_REUSE_STACK=1`` to run against an already running stack described by the
``IOC_*`` environment instead (nothing is started or stopped then).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

TEST_PORTS = {
    "IOC_KAFKA_BOOTSTRAP": "127.0.0.1:39092",
    "IOC_STACK_KAFKA_CONTROLLER_PORT": "39093",
    "IOC_MQTT_URL": "mqtt://127.0.0.1:31883",
    "IOC_CLICKHOUSE_URL": "http://127.0.0.1:38123",
}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """The running test stack; yields the IOC_* environment that reaches it."""
    if os.environ.get("IOC_TEST_REUSE_STACK") == "1":
        yield {k: os.environ[k] for k in os.environ if k.startswith("IOC_")}
        return
    from streams.stack.stack import Stack

    data_dir = Path(tempfile.mkdtemp(prefix="iocstream-test-"))
    env = {
        **TEST_PORTS,
        "IOC_DATA_DIR": str(data_dir),
        "IOC_CACHE_DIR": os.environ.get("IOC_CACHE_DIR", str(REPO / ".cache")),
        "IOC_STACK_KAFKA_HEAP": "512m",
        "IOC_TOPIC_PARTITIONS": "4",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    test_stack = Stack()
    try:
        test_stack.up()
        from connectors.clickhouse.client import connect
        from connectors.clickhouse.migrate import migrate
        from connectors.kafka.admin import ensure_topics, platform_topics
        from connectors.settings import ClickHouseSettings, KafkaSettings, TopicSettings

        ensure_topics(KafkaSettings(), platform_topics(TopicSettings()))
        ch = ClickHouseSettings()
        migrate(connect(ch, database=None), ch.database)
        yield env
    finally:
        test_stack.down()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, consumer groups and app ids of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def _stack_for_integration(request: pytest.FixtureRequest) -> None:
    """Every test marked ``integration`` runs against the shared real stack."""
    if request.node.get_closest_marker("integration"):
        request.getfixturevalue("stack")
