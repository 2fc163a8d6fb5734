"""Which partition a device's readings go to.

The rule is Kafka's default partitioner: ``murmur2(key) & 0x7fffffff % partitions`` on the
UTF-8 device id, as the Java client, kafka-python and aiokafka compute it. So a batch the
bridge packs for partition p and a single reading an outside producer keys by device id land
on the same partition, and meet the same Faust table partition.
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_for(device_id: str, partitions: int) -> int:
    """The partition of ``device_id`` among ``partitions`` (Kafka's default partitioner)."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    digest: int = murmur2(device_id.encode("utf-8"))
    return (digest & 0x7FFFFFFF) % partitions
