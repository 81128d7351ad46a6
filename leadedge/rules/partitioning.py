"""Which partition an id lives in: Kafka's default partitioner, murmur2 of the key bytes."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_of(request_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java and aiokafka alike) picks for an id."""
    return int(murmur2(request_id.encode()) & 0x7FFFFFFF) % partitions
