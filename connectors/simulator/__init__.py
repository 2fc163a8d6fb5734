"""The city simulator: seeded, realistic air-quality readings for Long Xuyên, over MQTT.

Pure parts (no I/O): ``climate`` (the city's daily and seasonal cycles), ``model`` (stations,
noise, spikes: ``generate``), ``encoding`` (MQTT topics and payloads), ``plan`` (the message
order, broken payloads included), ``pacing`` (token bucket), ``runner.RunSpec`` (a run as
data, and its split over processes). Wiring: ``session`` (one paho-mqtt client, QoS 1),
``publisher`` (status, paced telemetry, drain), ``fleet`` (worker processes), ``progress``
(rich bar / log lines) and ``cli`` (``iocstream simulate``).
"""

from connectors.simulator.encoding import (
    encode_json,
    encode_payload,
    encode_senml,
    malformed_payload,
    status_topic,
    telemetry_topic,
)
from connectors.simulator.model import (
    METRICS,
    UNITS,
    WARDS,
    SimDevice,
    SimReading,
    default_devices,
    generate,
)

__all__ = [
    "METRICS",
    "UNITS",
    "WARDS",
    "SimDevice",
    "SimReading",
    "default_devices",
    "encode_json",
    "encode_payload",
    "encode_senml",
    "generate",
    "malformed_payload",
    "status_topic",
    "telemetry_topic",
]
