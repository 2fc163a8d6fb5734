"""``iocstream sink``: run the Kafka -> ClickHouse sink until SIGTERM or Ctrl-C.

Settings come from ``IOC_SINK_*`` (:class:`SinkSettings`), topic names from ``IOC_TOPIC_*``,
Kafka and ClickHouse connections from ``IOC_KAFKA_*`` and ``IOC_CLICKHOUSE_*``; options on
the command line override the environment.
"""

from __future__ import annotations

import argparse
import logging

from kafka import KafkaConsumer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.clickhouse.batch import Limits
from connectors.clickhouse.client import connect
from connectors.clickhouse.rows import ROUTES, TopicRoute
from connectors.clickhouse.sink import ClickHouseSink, SinkConfig
from connectors.metrics import Metrics, serve
from connectors.settings import ClickHouseSettings, KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

DEFAULT_KINDS = "readings,indicators,alerts,events,deadletter"


class SinkSettings(BaseSettings):
    """The sink's own settings (``IOC_SINK_*``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_SINK_", extra="ignore")

    topics: str = Field(
        DEFAULT_KINDS,
        description="comma-separated record kinds to consume: readings, indicators, alerts, "
        "events, deadletter, notifications",
    )
    notifications_topic: str = Field("ioc.notifications", description="notifier attempt log")
    group: str = "iocstream-sink"
    max_rows: int = Field(50_000, ge=1)
    max_bytes: int = Field(32 * 1024 * 1024, ge=1)
    max_age_s: float = Field(1.0, gt=0)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    metrics_port: int = Field(9402, ge=0)
    check_crcs: bool = Field(
        False,
        description="verify each Kafka record batch's CRC32C; kafka-python does it in pure "
        "Python (about 8 s per 100 MB) unless the crc32c package is installed; the broker "
        "already verified it when the batch was produced",
    )
    session_timeout_ms: int = Field(
        45_000,
        ge=6_000,
        description="Kafka group session timeout: how long partitions of a sink that died "
        "without leaving the group (SIGKILL, power loss) wait before another member gets them",
    )


def routes_for(
    kinds: str, topics: TopicSettings, notifications_topic: str
) -> dict[str, TopicRoute]:
    """Topic name -> route for the comma-separated record ``kinds``; ValueError if unknown."""
    names = {
        "readings": topics.readings,
        "indicators": topics.indicators,
        "alerts": topics.alerts,
        "events": topics.events,
        "deadletter": topics.deadletter,
        "notifications": notifications_topic,
    }
    out: dict[str, TopicRoute] = {}
    for kind in (k.strip() for k in kinds.split(",") if k.strip()):
        if kind not in ROUTES:
            raise ValueError(f"unknown record kind {kind!r}; expected some of {sorted(ROUTES)}")
        out[names[kind]] = ROUTES[kind]
    if not out:
        raise ValueError("no topics to consume")
    return out


def run(argv: list[str]) -> int:
    env = SinkSettings()
    parser = argparse.ArgumentParser(
        prog="iocstream sink",
        description="Write ioc.readings, ioc.indicators, ioc.alerts, ioc.events and "
        "ioc.deadletter to ClickHouse in batches, effectively once: offsets are committed only "
        "after the insert, and replays add nothing (see connectors/clickhouse/sink.py). "
        "Defaults come from IOC_SINK_* variables.",
    )
    parser.add_argument("--topics", default=env.topics, help=f"record kinds (default {env.topics})")
    parser.add_argument("--group", default=env.group, help="Kafka consumer group")
    parser.add_argument("--max-rows", type=int, default=env.max_rows, help="rows per batch")
    parser.add_argument(
        "--max-bytes", type=int, default=env.max_bytes, help="message bytes per batch"
    )
    parser.add_argument(
        "--max-age", type=float, default=env.max_age_s, help="seconds a batch may wait"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=env.metrics_port,
        help="serve Prometheus /metrics on this port (0: off)",
    )
    args = parser.parse_args(argv)

    kafka, ch = KafkaSettings(), ClickHouseSettings()
    try:
        routes = routes_for(args.topics, TopicSettings(), env.notifications_topic)
    except ValueError as exc:
        parser.error(str(exc))

    def consumer() -> KafkaConsumer:
        return KafkaConsumer(
            **kafka.client_options(),
            group_id=args.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            client_id="iocstream-sink",
            session_timeout_ms=env.session_timeout_ms,
            check_crcs=env.check_crcs,
            heartbeat_interval_ms=max(1_000, env.session_timeout_ms // 10),
        )

    config = SinkConfig(
        group_id=args.group,
        limits=Limits(args.max_rows, args.max_bytes, args.max_age),
        backoff_initial_s=env.backoff_initial_s,
        backoff_max_s=env.backoff_max_s,
    )
    metrics = Metrics()
    serve(args.metrics_port)
    client = connect(ch, compress="lz4")
    sink = ClickHouseSink(consumer, client, routes, config, metrics)
    sink.install_signal_handlers()
    log.info(
        "sink starting: kafka %s, clickhouse %s database %s, topics %s, group %s",
        kafka.bootstrap,
        ch.url,
        ch.database,
        ", ".join(routes),
        args.group,
    )
    sink.run()
    return 0
