"""Settings of the MQTT -> Kafka bridge (``IOC_BRIDGE_*``), and what the bridge runs with.

:class:`BridgeSettings` reads the environment; ``iocstream bridge`` flags override it (a flag
given on the command line wins over the variable). It builds the two plain objects the
bridge works with: :class:`BridgeConfig` (delivery and batching) and
:class:`~connectors.mqtt.validate.Limits` (what the decoder accepts). Connection settings
(broker URLs, TLS, credentials) stay in :mod:`connectors.settings` (``IOC_MQTT_*``,
``IOC_KAFKA_*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.mqtt.payload import DEFAULT_MAX_BYTES
from connectors.mqtt.validate import Limits

KafkaCompression = Literal["gzip", "none"]
"""Codecs every consumer here decodes: aiokafka (Faust) reads lz4/snappy/zstd only with
cramjam, which the platform does not install; gzip is built into both Kafka clients."""


@dataclass(frozen=True)
class BridgeConfig:
    """How the bridge subscribes, batches and retries (see :class:`BridgeSettings`)."""

    share_group: str | None = None
    mqtt_version: int = 5
    session_expiry_s: int = 86_400
    receive_maximum: int = 1_000
    max_batch_readings: int = 500
    max_batch_bytes: int = 512 * 1024
    linger_s: float = 0.02
    retry_backoff_s: float = 1.0
    status: bool = True
    quarantine_topic: str | None = None
    kafka_compression: KafkaCompression = "gzip"


class BridgeSettings(BaseSettings):
    """The bridge's behaviour (``IOC_BRIDGE_*``); each field is an ``iocstream bridge`` flag too."""

    model_config = SettingsConfigDict(env_prefix="IOC_BRIDGE_", extra="ignore")

    share_group: str | None = Field(
        None,
        description="MQTT 5 shared-subscription group: replicas with the same group split "
        "the messages (each replica needs its own IOC_MQTT_CLIENT_ID)",
    )
    mqtt_version: int = Field(5, description="5 = MQTT 5, 4 = MQTT 3.1.1")
    session_expiry_s: int = Field(
        86_400, ge=0, description="MQTT 5 session expiry: how long the broker keeps our queue"
    )
    receive_maximum: int = Field(
        1_000, ge=1, le=65_535, description="MQTT 5: most unacknowledged messages in flight to us"
    )
    max_batch_readings: int = Field(500, ge=1, description="readings per Kafka message, at most")
    max_batch_bytes: int = Field(512 * 1024, ge=1024, description="bytes per Kafka message, about")
    linger_ms: float = Field(20.0, ge=0, description="how long a batch waits for more readings")
    retry_backoff_s: float = Field(
        1.0, gt=0, description="wait before resending what Kafka refused"
    )
    max_payload_bytes: int = Field(
        DEFAULT_MAX_BYTES, ge=1, description="larger MQTT payloads are dead letters"
    )
    max_future_s: float = Field(
        300.0, ge=0, description="readings later than receive time + this are dead letters"
    )
    max_past_s: float = Field(
        7 * 86_400.0, ge=0, description="readings earlier than receive time - this are dead letters"
    )
    unknown_device_policy: Literal["reject", "quarantine"] = Field(
        "reject",
        description="reject: dead letter only; quarantine: dead letter, and the readings go "
        "to the quarantine topic when one is set",
    )
    quarantine_topic: str | None = Field(
        None, description="Kafka topic for readings of unknown devices (quarantine policy)"
    )
    status: bool = Field(
        True, description="subscribe to .../status and publish device.status events"
    )
    kafka_compression: KafkaCompression = Field(
        "gzip",
        description="compression of the records the bridge produces: gzip shrinks JSON "
        "readings about 25 times, which makes kafka-python's pure Python CRC32C of each "
        "batch as many times cheaper (none: uncompressed)",
    )
    registry: str | None = Field(
        None, description="device registry YAML (default: IOC_REGISTRY_PATH or deploy/devices.yaml)"
    )
    metrics_port: int = Field(9401, ge=0, le=65_535, description="Prometheus /metrics (0: off)")

    @field_validator("mqtt_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in (4, 5):
            raise ValueError("mqtt_version must be 5 (MQTT 5) or 4 (MQTT 3.1.1)")
        return value

    def limits(self) -> Limits:
        """The decoder's limits; ``ValueError`` if they make no sense."""
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_future=timedelta(seconds=self.max_future_s),
            max_past=timedelta(seconds=self.max_past_s),
            unknown_device_policy=self.unknown_device_policy,
        )

    def config(self) -> BridgeConfig:
        """The bridge's delivery and batching configuration."""
        return BridgeConfig(
            share_group=self.share_group or None,
            mqtt_version=self.mqtt_version,
            session_expiry_s=self.session_expiry_s,
            receive_maximum=self.receive_maximum,
            max_batch_readings=self.max_batch_readings,
            max_batch_bytes=self.max_batch_bytes,
            linger_s=self.linger_ms / 1000,
            retry_backoff_s=self.retry_backoff_s,
            status=self.status,
            quarantine_topic=self.quarantine_topic or None,
            kafka_compression=self.kafka_compression,
        )
