"""A throw-away local stack on its own ports and data directory (tests and benchmarks).

``ephemeral_stack`` starts real Kafka, Mosquitto and the embedded ClickHouse on loopback
ports ``base + 9092/9093`` (Kafka), ``base + 1883`` (MQTT) and ``base + 8123`` (ClickHouse)
with a fresh temporary data directory, exports the matching ``IOC_*`` variables into
``os.environ`` (so subprocesses see the same stack), creates the platform's topics and
applies the migrations. On exit it stops exactly the processes it started, restores the
environment and removes the data directory.

Guarantee: a service that cannot start raises ``ServiceError`` with its log; nothing is
skipped. Two ephemeral stacks with different ``base`` values do not collide.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from streams.stack.settings import REPO_ROOT


def stack_env(base: int, data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``IOC_*`` environment of an ephemeral stack whose ports start at ``base``."""
    return {
        "IOC_KAFKA_BOOTSTRAP": f"127.0.0.1:{base + 9092}",
        "IOC_STACK_KAFKA_CONTROLLER_PORT": str(base + 9093),
        "IOC_MQTT_URL": f"mqtt://127.0.0.1:{base + 1883}",
        "IOC_CLICKHOUSE_URL": f"http://127.0.0.1:{base + 8123}",
        "IOC_DATA_DIR": str(data_dir),
        "IOC_CACHE_DIR": os.environ.get("IOC_CACHE_DIR", str(REPO_ROOT / ".cache")),
        "IOC_STACK_KAFKA_HEAP": "512m",
        **(extra or {}),
    }


@contextmanager
def ephemeral_stack(
    base: int, *, prefix: str = "iocstream-", extra: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """Run a fresh stack for the duration of the ``with`` block; yields its environment."""
    from connectors.clickhouse.client import connect
    from connectors.clickhouse.migrate import migrate
    from connectors.kafka.admin import ensure_topics, platform_topics
    from connectors.settings import ClickHouseSettings, KafkaSettings, TopicSettings
    from streams.cli.db import load_dimensions
    from streams.stack.stack import Stack

    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    env = stack_env(base, data_dir, extra)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    stack = Stack()
    try:
        stack.up()
        ensure_topics(KafkaSettings(), platform_topics(TopicSettings()))
        ch = ClickHouseSettings()
        migrate(connect(ch, database=None), ch.database)
        load_dimensions(connect(ch))  # devices and flood levels for the views
        yield env
    finally:
        stack.down()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(data_dir, ignore_errors=True)
