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
import uuid
from collections.abc import Iterator

import pytest

from streams.stack.ephemeral import ephemeral_stack

# Ports are 30000 + the usual ones (39092 Kafka, 31883 MQTT, 38123 ClickHouse); set
# IOC_TEST_PORT_BASE to run two test sessions side by side on one machine.
PORT_BASE = int(os.environ.get("IOC_TEST_PORT_BASE", "30000"))


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """The running test stack; yields the IOC_* environment that reaches it."""
    if os.environ.get("IOC_TEST_REUSE_STACK") == "1":
        yield {k: os.environ[k] for k in os.environ if k.startswith("IOC_")}
        return
    with ephemeral_stack(
        PORT_BASE, prefix="iocstream-test-", extra={"IOC_TOPIC_PARTITIONS": "4"}
    ) as env:
        yield env


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, consumer groups and app ids of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def _stack_for_integration(request: pytest.FixtureRequest) -> None:
    """Every test marked ``integration`` runs against the shared real stack."""
    if request.node.get_closest_marker("integration"):
        request.getfixturevalue("stack")
