"""Build the bridge's MQTT client and Kafka producer from settings (no traffic here).

* MQTT: MQTT 5 (clean start off, session expiry, receive maximum) or 3.1.1 (clean session
  off); a stable client id; manual acknowledgement; username/password; TLS for ``mqtts://``
  (CA file or system CAs, optional client certificate, host name checked unless turned off);
  buffered socket I/O (:mod:`connectors.bridge.buffered`); the bridge reconnects with
  exponential backoff from 1 s to 30 s.
* Kafka: ``acks=all``, idempotent, at most 5 requests in flight (order kept by idempotence),
  ``send`` blocking at most 5 s, gzip compression by default (``IOC_BRIDGE_KAFKA_COMPRESSION``);
  security (SASL PLAIN/SCRAM, TLS) from :meth:`connectors.settings.KafkaSettings.client_options`;
  reconnect backoff 0.1 s growing to 10 s.

Secrets are read from ``SecretStr`` only here, where they are handed to the client; nothing
in this module logs them.
"""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt
from kafka import KafkaProducer
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.bridge.buffered import BufferedClient
from connectors.bridge.settings import BridgeConfig, KafkaCompression
from connectors.settings import KafkaSettings, MqttSettings


def mqtt_tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context for an ``mqtts://`` URL, or None for plain ``mqtt://``."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
    context.check_hostname = settings.tls_check_hostname
    if settings.cert_file:
        context.load_cert_chain(
            settings.cert_file,
            settings.key_file,
            password=settings.key_password.get_secret_value() if settings.key_password else None,
        )
    return context


def make_mqtt_client(settings: MqttSettings, config: BridgeConfig) -> BufferedClient:
    """A paho client with persistent session, manual acks, credentials and TLS set.

    Its connections buffer reads and writes (:mod:`connectors.bridge.buffered`): drive it
    with ``loop_read``/``loop_write``/``loop_misc`` and flush, as the bridge does.
    """
    v5 = config.mqtt_version == 5
    client = BufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=True,
    )
    if settings.username:
        client.username_pw_set(
            settings.username, settings.password.get_secret_value() if settings.password else None
        )
    context = mqtt_tls_context(settings)
    if context is not None:
        client.tls_set_context(context)
    return client


def connect_options(config: BridgeConfig) -> dict[str, Any]:
    """Keyword arguments of ``Client.connect`` besides host, port and keepalive."""
    if config.mqtt_version != 5:
        return {}
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = config.session_expiry_s
    props.ReceiveMaximum = config.receive_maximum
    return {"clean_start": False, "properties": props}


def producer_options(
    settings: KafkaSettings, client_id: str, compression: KafkaCompression = "gzip"
) -> dict[str, Any]:
    """Keyword arguments of the bridge's ``KafkaProducer`` (secrets included: do not log)."""
    return {
        **settings.client_options(),
        "acks": "all",
        "enable_idempotence": True,
        # kafka-python checksums every record batch with a pure Python CRC32C (about 0.2 ms
        # per KB, holding the GIL: more than all else the bridge does per reading); gzip
        # (C, about 4 us per KB) shrinks JSON readings some 25 times before that.
        "compression_type": None if compression == "none" else compression,
        "linger_ms": 5,
        "max_in_flight_requests_per_connection": 5,
        "reconnect_backoff_ms": 100,
        "reconnect_backoff_max_ms": 10_000,
        # send() must not stall the bridge's single thread (MQTT keepalive): when Kafka's
        # buffer is full or metadata is missing, fail fast; the bridge retries later.
        "max_block_ms": 5_000,
        "client_id": client_id,
    }


def make_producer(
    settings: KafkaSettings, client_id: str, compression: KafkaCompression = "gzip"
) -> KafkaProducer:
    """The bridge's idempotent, acks=all producer."""
    return KafkaProducer(**producer_options(settings, client_id, compression))
