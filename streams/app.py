"""The stream worker's Faust application and its settings (``IOC_WORKER_*``).

:func:`create_app` builds a faust-streaming ``App`` configured for the delivery rules of
DESIGN.md: raw bytes in and out (our own codecs), in-memory table store rebuilt from the
changelog topic at start (so a SIGKILL loses no state), ``earliest`` offset reset for a new
consumer group, ``acks=all`` on the producer, and no acknowledgement of a message whose
processing raised or was cancelled (``stream_ack_exceptions``/``stream_ack_cancelled_tasks``
off), so such a message is processed again rather than silently committed.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Any

import faust
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.settings import KafkaSettings
from streams import faust_patches

#: The process's GIL switch interval in the stream apps (ms): see :func:`create_app`.
GIL_SWITCH_MS = 1.0


class WorkerSettings(BaseSettings):
    """Stream worker settings (``IOC_WORKER_*``); CLI options override them."""

    model_config = SettingsConfigDict(env_prefix="IOC_WORKER_", extra="ignore")

    app_id: str = Field("iocstream-worker", description="Faust app id = consumer group")
    grace_s: float = Field(10.0, ge=0, description="grace period for late readings, seconds")
    data_dir: Path | None = Field(
        None, description="Faust's local directory (default <IOC_DATA_DIR>/worker)"
    )
    web_port: int = Field(0, ge=0, le=65535, description="Faust web server port; 0 = off")
    # 0 by default: with Faust's in-memory store a standby copy is no faster to take over
    # (the memory store drops keys of non-active partitions after every recovery, and a new
    # owner re-reads the whole changelog partition anyway), yet every standby reads changelogs
    standby_replicas: int = Field(
        0,
        ge=0,
        description="standby copies of each table partition kept on other workers (useful "
        "only with a persistent table store; with the in-memory store they cost changelog "
        "reads and do not shorten a failover)",
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics port (9403 in deployments); 0 = off"
    )
    commit_interval_s: float = Field(1.0, gt=0, description="offset commit interval")
    fetch_max_wait_ms: int = Field(
        faust_patches.FETCH_MAX_WAIT_MS,
        ge=0,
        le=1500,
        description="longest the broker holds a fetch of partitions without new records "
        "(Faust fixes 1,500 ms, which stalls a busy app: see streams/faust_patches.py)",
    )
    session_timeout_s: float = Field(
        30.0, ge=6, description="consumer group session timeout (failover after a crash)"
    )
    gil_switch_ms: float = Field(
        GIL_SWITCH_MS,
        ge=0.1,
        le=100,
        description="how long a Python thread may hold the GIL while another waits for it "
        "(CPython's default is 5 ms, which starves Faust's consumer thread: see create_app)",
    )
    stats_interval_s: float = Field(30.0, gt=0, description="interval of the INFO stats line")
    hopping: str = Field(
        "300/60,900/300",
        description="hopping windows as SIZE/HOP in seconds, comma-separated (multiples of 60)",
    )
    timezone: str = Field("Asia/Ho_Chi_Minh", description="time zone of the calendar-day windows")
    checkpoint_interval_s: float = Field(
        2.0, gt=0, description="how often changed window state is written to the changelog"
    )
    flood_levels: Path | None = Field(
        None, description="flood alarm levels YAML (default deploy/flood_levels.yaml)"
    )
    rise_span_h: float = Field(3.0, gt=0, description="span of the river rise rate, hours")
    idle_tick_s: float = Field(
        60.0,
        ge=0,
        description="append a watermark tick to a partition whose watermark has not moved for "
        "this long (closes quiet partitions' windows); 0 = off",
    )

    services: bool = Field(
        True,
        description="compute city-service KPIs from the events topic (skipped with a warning "
        "when that topic does not exist)",
    )
    service_grace_s: float = Field(
        60.0, ge=0, description="grace period of the service-KPI minutes, seconds"
    )
    service_heartbeat_s: float = Field(
        3600.0,
        ge=0,
        description="also emit every service KPI at multiples of this many seconds of event "
        "time (a multiple of 60); 0 = only on change",
    )

    districts: bool = Field(
        False,
        description="aggregate per district: VN_AQI from the station values and devices "
        "reporting vs expected per hour, from the worker's own indicators",
    )
    district_grace_s: float = Field(
        300.0, ge=0, description="grace period of the district windows, seconds"
    )

    def resolved_data_dir(self) -> Path:
        """The data directory, defaulting to ``<IOC_DATA_DIR or .data>/worker``."""
        if self.data_dir is not None:
            return self.data_dir
        from streams.stack.settings import StackSettings

        return StackSettings().data_dir / "worker"


def broker_urls(kafka: KafkaSettings) -> list[str]:
    """``kafka://host:port`` URLs of the configured bootstrap servers."""
    return [f"kafka://{hp.strip()}" for hp in kafka.bootstrap.split(",") if hp.strip()]


def broker_credentials(kafka: KafkaSettings) -> faust.auth.Credentials | None:
    """Faust credentials matching ``IOC_KAFKA_SECURITY_PROTOCOL`` and friends."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_cafile)
        if kafka.ssl_certfile:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
        ssl_context=context,
        mechanism=kafka.sasl_mechanism or "PLAIN",
    )


def create_app(
    settings: WorkerSettings, kafka: KafkaSettings, *, partitions: int, replicas: int = 1
) -> faust.App:
    """The worker's Faust app; ``partitions`` is the input topic's partition count.

    The table's changelog topic (``<app_id>-<table>-changelog``) is created by Faust with the
    same partition count, since the table is partitioned exactly like the input.
    """
    # seek uncommitted partitions too, and our fetch wait (see streams/faust_patches.py)
    faust_patches.apply(fetch_max_wait_ms=settings.fetch_max_wait_ms)
    # Faust runs its Kafka consumer in a thread of its own. While an agent computes, that
    # thread waits for the GIL after every socket read for up to the switch interval (5 ms
    # by default), so (the likely mechanism; the gain is what was measured) its fetching
    # falls behind the agent. 1 ms, measured with `iocstream bench worker_throughput` on 2
    # cores: 97,600-151,300 readings/s in 5 runs, against 81,800-101,500 with 5 ms (2 ms:
    # 118,600-120,600; 0.5 ms: 82,900-121,100). The interval is process-wide: it is the app's
    # process.
    sys.setswitchinterval(settings.gil_switch_ms / 1000)
    data_dir = settings.resolved_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "broker": broker_urls(kafka),
        "store": "memory://",
        "datadir": str(data_dir),
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_partitions": partitions,
        "topic_replication_factor": replicas,
        "consumer_auto_offset_reset": "earliest",
        "table_standby_replicas": settings.standby_replicas,
        "producer_acks": -1,
        # a checkpoint writes one record per changed device at once: batch them into few
        # requests instead of one request per record
        "producer_linger": 0.005,
        "producer_max_batch_size": 1 << 20,
        "producer_max_request_size": 8 << 20,
        # reading batches are ~60 KB each: fetch many per request (Faust's default is 1 MiB)
        "consumer_max_fetch_size": 8 << 20,
        "broker_commit_interval": settings.commit_interval_s,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        "stream_ack_exceptions": False,
        "stream_ack_cancelled_tasks": False,
        "web_enabled": settings.web_port > 0,
        "web_port": settings.web_port or 6066,
        "web_host": "127.0.0.1",
        "web_bind": "127.0.0.1",
    }
    credentials = broker_credentials(kafka)
    if credentials is not None:
        options["broker_credentials"] = credentials
    return faust.App(settings.app_id, **options)
