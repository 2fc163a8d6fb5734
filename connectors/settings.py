"""Settings for each outside system, read from the environment (prefix ``IOC_``).

Secrets are :class:`pydantic.SecretStr`: they print as ``**********`` and are never logged.
Every class has ``redacted()`` for logging the effective configuration safely.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Base(BaseSettings):
    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with every secret replaced by ``**********``."""
        out: dict[str, Any] = {}
        for name, value in self:
            out[name] = "**********" if isinstance(value, SecretStr) and value else value
        return out


class KafkaSettings(_Base):
    """Kafka connection (``IOC_KAFKA_*``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_KAFKA_", extra="ignore")

    bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port...]")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = Field(None, description="password of ssl_keyfile")
    ssl_check_hostname: bool = True

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (security included)."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.ssl_cafile:
            opts["ssl_cafile"] = self.ssl_cafile
        if self.ssl_certfile:
            opts["ssl_certfile"] = self.ssl_certfile
        if self.ssl_keyfile:
            opts["ssl_keyfile"] = self.ssl_keyfile
        if self.ssl_password:
            opts["ssl_password"] = self.ssl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            opts["ssl_check_hostname"] = self.ssl_check_hostname
        return opts


class TopicSettings(_Base):
    """Kafka topic names (``IOC_TOPIC_*``) with DESIGN.md's defaults."""

    model_config = SettingsConfigDict(env_prefix="IOC_TOPIC_", extra="ignore")

    readings: str = "ioc.readings"
    inbound: str = "ioc.inbound"  # CloudEvents from city systems (iocstream ingest)
    events: str = "ioc.events"
    indicators: str = "ioc.indicators"
    alerts: str = "ioc.alerts"
    alert_actions: str = "ioc.alert-actions"
    deadletter: str = "ioc.deadletter"
    partitions: int = Field(6, ge=1, description="partitions for topics created by the platform")
    replication_factor: int = Field(1, ge=1)


class MqttSettings(_Base):
    """MQTT broker connection (``IOC_MQTT_*``).

    TLS is on for an ``mqtts://`` URL: the broker's certificate is checked against
    ``ca_file`` (else the system's CAs) and its host name; ``cert_file``/``key_file`` add a
    client certificate (``key_password`` if the key is encrypted).
    """

    model_config = SettingsConfigDict(env_prefix="IOC_MQTT_", extra="ignore")

    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt:// or mqtts:// URL")
    username: str | None = None
    password: SecretStr | None = None
    ca_file: str | None = None
    cert_file: str | None = Field(None, description="client certificate (PEM) for mutual TLS")
    key_file: str | None = Field(None, description="private key (PEM) of cert_file")
    key_password: SecretStr | None = None
    tls_check_hostname: bool = True
    client_id: str = "iocstream-bridge"
    keepalive: int = 30

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


class ClickHouseSettings(_Base):
    """ClickHouse over HTTP (``IOC_CLICKHOUSE_*``): the embedded engine or a real server."""

    model_config = SettingsConfigDict(env_prefix="IOC_CLICKHOUSE_", extra="ignore")

    url: str = Field("http://127.0.0.1:8123", description="http(s)://host:port")
    database: str = "ioc"
    cluster: str | None = Field(
        None,
        description="remote_servers cluster that `iocstream db migrate` targets (ON CLUSTER, "
        "replicated shards behind Distributed tables); unset: one node",
    )
    username: str = "default"
    password: SecretStr | None = None

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``clickhouse_connect.get_client`` (database not included)."""
        parts = urlsplit(self.url)
        return {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or (8443 if parts.scheme == "https" else 8123),
            "interface": parts.scheme or "http",
            "username": self.username,
            "password": self.password.get_secret_value() if self.password else "",
        }
