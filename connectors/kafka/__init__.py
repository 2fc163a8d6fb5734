"""Kafka edges: partitioning, topic administration, producers (kafka-python)."""
