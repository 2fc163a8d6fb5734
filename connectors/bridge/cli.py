"""``iocstream bridge``: run the MQTT -> Kafka bridge until SIGTERM or Ctrl-C.

Every ``IOC_BRIDGE_*`` setting (:class:`~connectors.bridge.settings.BridgeSettings`) is also a
flag; a flag given wins over the variable. Connections come from ``IOC_MQTT_*`` and
``IOC_KAFKA_*`` (credentials only from the environment, never flags, so they do not show in
process listings).
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from connectors.bridge.bridge import Bridge
from connectors.bridge.settings import BridgeSettings
from connectors.metrics import Metrics, serve
from connectors.registry import Registry
from connectors.settings import KafkaSettings, MqttSettings, TopicSettings

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Subscribe to ioc/+/+/+/telemetry and ioc/+/+/+/status (QoS 1, persistent session), validate
readings against the device registry, pack them per Kafka partition into ioc.readings, turn
status changes into vn.longxuyen.device.status events on ioc.events and send invalid input to
ioc.deadletter with a reason. An MQTT message is acknowledged only after Kafka acknowledged
everything made from it (at-least-once; nothing is lost on a crash or while Kafka is away).
"""

_EPILOG = """\
connections (environment only):
  IOC_MQTT_URL            mqtt://host:1883 or mqtts://host:8883 (TLS)
  IOC_MQTT_CLIENT_ID      stable client id (one per replica); IOC_MQTT_USERNAME, IOC_MQTT_PASSWORD
  IOC_MQTT_CA_FILE, IOC_MQTT_CERT_FILE, IOC_MQTT_KEY_FILE, IOC_MQTT_KEY_PASSWORD
  IOC_KAFKA_BOOTSTRAP     host:port[,host:port]
  IOC_KAFKA_SECURITY_PROTOCOL  PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
  IOC_KAFKA_SASL_MECHANISM     PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512;
  IOC_KAFKA_SASL_USERNAME, IOC_KAFKA_SASL_PASSWORD, IOC_KAFKA_SSL_CAFILE, IOC_KAFKA_SSL_CERTFILE,
  IOC_KAFKA_SSL_KEYFILE, IOC_KAFKA_SSL_PASSWORD
  IOC_TOPIC_READINGS, IOC_TOPIC_EVENTS, IOC_TOPIC_DEADLETTER  topic names
"""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one flag per :class:`BridgeSettings` field, defaults from it."""
    parser = argparse.ArgumentParser(
        prog="iocstream bridge",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, info in BridgeSettings.model_fields.items():
        env = f"IOC_BRIDGE_{name.upper()}"
        default = info.default
        help_text = f"{info.description} (env {env}, default {default})"
        if info.annotation is bool:
            parser.add_argument(
                _flag(name), action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
            continue
        kwargs: dict[str, Any] = {"default": None, "help": help_text, "metavar": name.upper()}
        if name == "mqtt_version":
            kwargs.update(type=int, choices=[5, 4])
            del kwargs["metavar"]
        elif get_origin(info.annotation) is Literal:
            kwargs.update(choices=list(get_args(info.annotation)))
            del kwargs["metavar"]
        elif isinstance(default, int):
            kwargs["type"] = int
        elif isinstance(default, float):
            kwargs["type"] = float
        parser.add_argument(_flag(name), **kwargs)
    return parser


def load_settings(argv: list[str]) -> BridgeSettings:
    """Environment overridden by the flags given; exits with a message if invalid."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = BridgeSettings(**given)
        settings.limits()
    except (ValidationError, ValueError) as exc:
        parser.error(str(exc))
    return settings


def run(argv: list[str]) -> int:
    settings = load_settings(argv)
    mqtt_settings, kafka_settings, topics = MqttSettings(), KafkaSettings(), TopicSettings()
    registry = Registry.load(settings.registry or Registry.default_path())
    metrics = Metrics()
    serve(settings.metrics_port)
    log.info(
        "bridge starting: mqtt %s as %s (user %s), kafka %s (%s); registry %s with %d devices; "
        "settings %s",
        mqtt_settings.url,
        mqtt_settings.client_id,
        mqtt_settings.username or "-",
        kafka_settings.bootstrap,
        kafka_settings.security_protocol,
        registry.path,
        len(registry),
        settings.model_dump(),
    )
    bridge = Bridge(
        mqtt_settings,
        kafka_settings,
        topics,
        registry,
        settings.limits(),
        settings.config(),
        metrics=metrics,
    )

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping the bridge", signum)
        bridge.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bridge.run()
    return 0
