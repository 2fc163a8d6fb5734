"""Bridge settings, CLI flags and the client configuration built from them (no network)."""

from __future__ import annotations

import logging
import os
import ssl
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from connectors.bridge.cli import build_parser, load_settings
from connectors.bridge.clients import (
    connect_options,
    make_mqtt_client,
    mqtt_tls_context,
    producer_options,
)
from connectors.bridge.settings import BridgeConfig, BridgeSettings
from connectors.mqtt.validate import Limits
from connectors.settings import KafkaSettings, MqttSettings

SECRET = "pa55-w0rd-never-logged"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("IOC_BRIDGE_", "IOC_MQTT_", "IOC_KAFKA_")):
            monkeypatch.delenv(name)


def test_defaults_match_the_decoder_and_bridge_defaults() -> None:
    settings = BridgeSettings()
    assert settings.limits() == Limits()
    assert settings.config() == BridgeConfig()


def test_limits_and_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_BRIDGE_MAX_PAYLOAD_BYTES", "1000")
    monkeypatch.setenv("IOC_BRIDGE_MAX_FUTURE_S", "30")
    monkeypatch.setenv("IOC_BRIDGE_MAX_PAST_S", "86400")
    monkeypatch.setenv("IOC_BRIDGE_UNKNOWN_DEVICE_POLICY", "quarantine")
    monkeypatch.setenv("IOC_BRIDGE_SHARE_GROUP", "bridges")
    monkeypatch.setenv("IOC_BRIDGE_LINGER_MS", "50")
    monkeypatch.setenv("IOC_BRIDGE_STATUS", "false")
    settings = BridgeSettings()
    assert settings.limits() == Limits(
        max_payload_bytes=1000,
        max_future=timedelta(seconds=30),
        max_past=timedelta(days=1),
        unknown_device_policy="quarantine",
    )
    config = settings.config()
    assert config.share_group == "bridges"
    assert config.linger_s == pytest.approx(0.05)
    assert config.status is False


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_BRIDGE_MAX_FUTURE_S", "30")
    monkeypatch.setenv("IOC_BRIDGE_MQTT_VERSION", "4")
    settings = load_settings(
        ["--max-future-s", "90", "--unknown-device-policy", "quarantine", "--no-status"]
    )
    assert settings.max_future_s == 90
    assert settings.mqtt_version == 4  # not given as a flag: the environment holds
    assert settings.unknown_device_policy == "quarantine"
    assert settings.status is False


@pytest.mark.parametrize(
    "argv",
    [
        ["--unknown-device-policy", "maybe"],
        ["--mqtt-version", "3"],
        ["--max-payload-bytes", "0"],
        ["--max-past-s", "-1"],
    ],
)
def test_invalid_flags_exit_with_a_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_settings(argv)
    assert exit_info.value.code == 2
    assert "iocstream bridge" in capsys.readouterr().err


def test_help_lists_every_setting_and_connection_variable() -> None:
    text = build_parser().format_help()
    for name in BridgeSettings.model_fields:
        assert "--" + name.replace("_", "-") in text
        assert f"IOC_BRIDGE_{name.upper()}" in text
    for var in (
        "IOC_MQTT_URL",
        "IOC_MQTT_PASSWORD",
        "IOC_KAFKA_SASL_MECHANISM",
        "IOC_MQTT_CA_FILE",
    ):
        assert var in text


def test_invalid_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_BRIDGE_UNKNOWN_DEVICE_POLICY", "drop")
    with pytest.raises(ValidationError):
        BridgeSettings()


def test_kafka_sasl_scram_over_tls_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_KAFKA_BOOTSTRAP", "k1:9094,k2:9094")
    monkeypatch.setenv("IOC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("IOC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("IOC_KAFKA_SASL_USERNAME", "bridge")
    monkeypatch.setenv("IOC_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("IOC_KAFKA_SSL_CAFILE", "/etc/ioc/ca.pem")
    kafka = KafkaSettings()
    opts = producer_options(kafka, "bridge-1-producer")
    assert opts["bootstrap_servers"] == ["k1:9094", "k2:9094"]
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "bridge"
    assert opts["sasl_plain_password"] == SECRET
    assert opts["ssl_cafile"] == "/etc/ioc/ca.pem"
    assert opts["ssl_check_hostname"] is True
    assert opts["acks"] == "all"
    assert opts["enable_idempotence"] is True
    assert SECRET not in repr(kafka)
    assert SECRET not in str(kafka.redacted())


def test_kafka_plaintext_has_no_security_options() -> None:
    opts = producer_options(KafkaSettings(), "p")
    assert opts["security_protocol"] == "PLAINTEXT"
    assert not [k for k in opts if k.startswith(("sasl_", "ssl_"))]


def test_mqtt_plain_url_has_no_tls() -> None:
    assert mqtt_tls_context(MqttSettings(url="mqtt://broker:1883")) is None


def test_mqtt_tls_uses_system_cas_and_checks_the_host() -> None:
    context = mqtt_tls_context(MqttSettings(url="mqtts://broker"))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert MqttSettings(url="mqtts://broker").port == 8883


def test_mqtt_tls_with_a_missing_ca_file_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        mqtt_tls_context(MqttSettings(url="mqtts://broker", ca_file=str(tmp_path / "none.pem")))


def test_mqtt_client_carries_credentials_without_logging_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = MqttSettings(username="bridge", password=SecretStr(SECRET), client_id="b-1")
    client = make_mqtt_client(settings, BridgeConfig())
    assert client._username == b"bridge"
    assert client._password == SECRET.encode()
    assert client._client_id == b"b-1"
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.redacted())
    assert SECRET not in caplog.text


def test_connect_options_per_protocol() -> None:
    v5 = connect_options(BridgeConfig(mqtt_version=5, session_expiry_s=600, receive_maximum=50))
    assert v5["clean_start"] is False
    assert v5["properties"].SessionExpiryInterval == 600
    assert v5["properties"].ReceiveMaximum == 50
    assert connect_options(BridgeConfig(mqtt_version=4)) == {}
    v311 = make_mqtt_client(MqttSettings(), BridgeConfig(mqtt_version=4))
    assert v311._clean_session is False


def test_kafka_records_are_gzip_compressed_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert producer_options(KafkaSettings(), "p")["compression_type"] == "gzip"
    assert producer_options(KafkaSettings(), "p", "none")["compression_type"] is None
    monkeypatch.setenv("IOC_BRIDGE_KAFKA_COMPRESSION", "none")
    assert BridgeSettings().config().kafka_compression == "none"
    assert load_settings(["--kafka-compression", "gzip"]).kafka_compression == "gzip"
    with pytest.raises(SystemExit):
        load_settings(["--kafka-compression", "lz4"])  # Faust's aiokafka could not read it
