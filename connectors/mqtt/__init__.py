"""MQTT input: topic layout, payload decoding and validation against the device registry.

Pure logic, no network: the bridge (:mod:`connectors.bridge`) calls
:func:`~connectors.mqtt.validate.decode_message` for every telemetry message and
:func:`~connectors.mqtt.status.decode_status` for every status message. Modules:

* :mod:`~connectors.mqtt.topics` — ``ioc/<district>/<kind>/<device-id>/telemetry|status``;
* :mod:`~connectors.mqtt.timestamps` — device times (epoch s/ms, ISO 8601) to microseconds;
* :mod:`~connectors.mqtt.payload` — platform JSON (ThingsBoard shape) or SenML to measurements;
* :mod:`~connectors.mqtt.senml` — RFC 8428 pack resolution;
* :mod:`~connectors.mqtt.measurement` — the decoded measurement and its dead-letter extract;
* :mod:`~connectors.mqtt.validate` — registry checks, readings and dead letters;
* :mod:`~connectors.mqtt.status` — online/offline status messages.
"""

from connectors.mqtt.status import DeviceStatus, decode_status
from connectors.mqtt.topics import (
    STATUS_FILTER,
    TELEMETRY_FILTER,
    Topic,
    parse_topic,
    status_topic,
    subscription_filter,
    subscription_filters,
    telemetry_topic,
)
from connectors.mqtt.validate import Decoded, Limits, decode_message

__all__ = [
    "STATUS_FILTER",
    "TELEMETRY_FILTER",
    "Decoded",
    "DeviceStatus",
    "Limits",
    "Topic",
    "decode_message",
    "decode_status",
    "parse_topic",
    "status_topic",
    "subscription_filter",
    "subscription_filters",
    "telemetry_topic",
]
