"""The MQTT -> Kafka bridge: pure packing and acknowledgement bookkeeping, and its wiring."""
