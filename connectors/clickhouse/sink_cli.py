"""``iocstream sink``: run the Kafka -> ClickHouse sink until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging

from kafka import KafkaConsumer

from connectors.clickhouse.client import connect
from connectors.clickhouse.rows import DEAD_LETTERS, INDICATORS, READINGS, TableSpec
from connectors.clickhouse.sink import ClickHouseSink, SinkConfig
from connectors.metrics import Metrics, serve
from connectors.settings import ClickHouseSettings, KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


def run(argv: list[str]) -> int:
    defaults = SinkConfig()
    parser = argparse.ArgumentParser(
        prog="iocstream sink",
        description="Write ioc.readings, ioc.indicators and ioc.deadletter to ClickHouse in "
        "batches; offsets are committed only after the insert succeeded, and replays are "
        "dropped (see connectors/clickhouse/sink.py).",
    )
    parser.add_argument("--group", default=defaults.group_id, help="Kafka consumer group")
    parser.add_argument("--max-rows", type=int, default=defaults.max_rows)
    parser.add_argument(
        "--max-age",
        type=float,
        default=defaults.max_age_s,
        help="seconds a batch may wait before it is written",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9402,
        help="serve Prometheus /metrics on this port (0: off)",
    )
    args = parser.parse_args(argv)

    kafka, topics, ch = KafkaSettings(), TopicSettings(), ClickHouseSettings()
    routes: dict[str, TableSpec] = {
        topics.readings: READINGS,
        topics.indicators: INDICATORS,
        topics.deadletter: DEAD_LETTERS,
    }

    def consumer() -> KafkaConsumer:
        return KafkaConsumer(
            **kafka.client_options(),
            group_id=args.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            client_id="iocstream-sink",
        )

    config = SinkConfig(group_id=args.group, max_rows=args.max_rows, max_age_s=args.max_age)
    metrics = Metrics()
    serve(args.metrics_port)
    sink = ClickHouseSink(consumer, connect(ch), routes, config, metrics)
    sink.install_signal_handlers()
    log.info(
        "sink starting: kafka %s, clickhouse %s database %s", kafka.bootstrap, ch.url, ch.database
    )
    sink.run()
    return 0
