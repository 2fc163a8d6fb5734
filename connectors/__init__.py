"""The platform's edges: MQTT, Kafka, ClickHouse, notifiers and the city simulator.

Each outside system has its own module; this package may import ``schemas`` only.
"""
