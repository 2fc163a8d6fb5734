"""``iocstream sink``: run the Kafka -> ClickHouse sink until SIGTERM or Ctrl-C.

Settings come from ``IOC_SINK_*`` (:class:`SinkSettings`), topic names from ``IOC_TOPIC_*``,
Kafka and ClickHouse connections from ``IOC_KAFKA_*`` and ``IOC_CLICKHOUSE_*``; options on
the command line override the environment.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
from typing import Any, Literal

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
        True,
        description="verify each Kafka record batch's CRC32C (in C: the crc32c package is a "
        "dependency; without it kafka-python's pure-Python CRC costs about 8 s per 100 MB)",
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="sink processes to run, each an independent member of the consumer group "
        "(Kafka spreads the partitions over them); more than 1 uses more cores",
    )
    decode: Literal["server", "sink"] = Field(
        "server",
        description="who decodes canonical readings: 'server' (ClickHouse parses the JSON, "
        "the sink only forwards it: 1.6x the rows/s of 'sink' on the embedded engine) or "
        "'sink' (Python; for a server that refuses the strict JSON settings). Same rows",
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
    parser.add_argument(
        "--processes",
        type=int,
        default=env.processes,
        help="run N sink processes, each its own member of the group (default "
        f"{env.processes}; IOC_SINK_PROCESSES); the metrics ports are --metrics-port + i",
    )
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.processes > 1:
        return supervise(argv, args.processes, args.metrics_port)

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
        decode=env.decode,
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


def supervise(argv: list[str], processes: int, metrics_port: int) -> int:
    """Run ``processes`` sink processes until SIGTERM or Ctrl-C, then stop them (SIGTERM: each
    writes what it holds and commits) and wait for them.

    Each child is an ordinary ``iocstream sink`` with the same options, so every guarantee of
    :mod:`connectors.clickhouse.sink` holds per process; together they are members of one
    consumer group, which spreads the partitions. If a child exits on its own, the others are
    stopped too and its exit code is returned (let the supervisor of this process restart the
    whole set). This process only starts, watches and stops them: SIGKILL it and the children
    go on until they are stopped themselves (kill the process group to stop all at once).
    """
    children: list[subprocess.Popen[bytes]] = []
    for i in range(processes):
        port = metrics_port + i if metrics_port else 0
        command = [sys.executable, "-m", "streams.cli.main", "sink", *argv,
                   "--processes", "1", "--metrics-port", str(port)]  # fmt: skip
        children.append(subprocess.Popen(command))
    log.info("sink: %d processes started (pids %s)", processes, [c.pid for c in children])
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping %d sink processes", signum, len(children))
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    code = 0
    while not stop.is_set():
        for child in children:
            if child.poll() is not None:
                log.error("sink process %d exited with %d; stopping the others", child.pid,
                          child.returncode)  # fmt: skip
                code = child.returncode or 1
                stop.set()
                break
        stop.wait(0.5)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            log.error("sink process %d did not stop; killing it", child.pid)
            child.kill()
            child.wait()
    return code
