"""``iocstream bridge``: run the MQTT -> Kafka bridge until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from connectors.bridge.bridge import Bridge, BridgeConfig
from connectors.metrics import Metrics, serve
from connectors.mqtt.validate import Limits
from connectors.registry import Registry
from connectors.settings import KafkaSettings, MqttSettings, TopicSettings

log = logging.getLogger(__name__)


def run(argv: list[str]) -> int:
    defaults = BridgeConfig()
    parser = argparse.ArgumentParser(
        prog="iocstream bridge",
        description="Subscribe to ioc/+/+/+/telemetry (QoS 1, persistent session), validate "
        "readings against the device registry, pack them per Kafka partition into "
        "ioc.readings and send invalid input to ioc.deadletter. An MQTT message is "
        "acknowledged only after Kafka acknowledged everything made from it.",
    )
    parser.add_argument(
        "--registry",
        default=None,
        help="device registry YAML (default: IOC_REGISTRY_PATH or deploy/devices.yaml)",
    )
    parser.add_argument(
        "--share-group",
        default=defaults.share_group,
        help="MQTT shared-subscription group for several bridge replicas",
    )
    parser.add_argument(
        "--mqtt-version", type=int, choices=[5, 4], default=5, help="5 = MQTT 5, 4 = MQTT 3.1.1"
    )
    parser.add_argument("--linger-ms", type=float, default=defaults.linger_s * 1000)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9401,
        help="serve Prometheus /metrics on this port (0: off)",
    )
    args = parser.parse_args(argv)

    mqtt_settings = MqttSettings()
    registry = (
        Registry.load(args.registry) if args.registry else Registry.load(Registry.default_path())
    )
    config = BridgeConfig(
        share_group=args.share_group, mqtt_version=args.mqtt_version, linger_s=args.linger_ms / 1000
    )
    metrics = Metrics()
    serve(args.metrics_port)
    bridge = Bridge(
        mqtt_settings,
        KafkaSettings(),
        TopicSettings(),
        registry,
        Limits(),
        config,
        metrics=metrics,
    )

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping the bridge", signum)
        bridge.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "bridge starting: mqtt %s as %s, kafka %s",
        mqtt_settings.url,
        mqtt_settings.client_id,
        KafkaSettings().bootstrap,
    )
    bridge.run()
    return 0
