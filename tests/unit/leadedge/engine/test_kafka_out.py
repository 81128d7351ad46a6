from __future__ import annotations

import asyncio
import random

from aiokafka import AIOKafkaProducer

from leadedge.engine.kafka_out import HASHES_KEPT, KafkaBatchWriter, OutRecord


class Metadata:
    """The producer's view of the cluster: one topic of `count` partitions."""

    def __init__(self, count: int) -> None:
        self.count = count

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))


def producer_with(count: int) -> AIOKafkaProducer:
    async def built() -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")

    producer = asyncio.run(built())
    producer._metadata = Metadata(count)
    return producer


def test_records_without_a_partition_go_where_aiokafka_s_send_would_put_them() -> None:
    rng = random.Random(3)
    for count in (1, 3, 12):
        producer = producer_with(count)
        writer = KafkaBatchWriter(lambda: producer)  # noqa: B023 (used within the iteration)
        partitions = sorted(producer._metadata.partitions_for_topic("t"))
        keys = [rng.randbytes(rng.randrange(1, 40)) for _ in range(2_000)]
        for key in [*keys, *keys]:  # the second time from the remembered hashes
            record = OutRecord("t", None, key, b"v")
            expected = producer._partition("t", None, None, None, key, b"v")
            assert writer.partition_of(producer, "t", record, partitions) == expected


def test_the_remembered_hashes_stay_bounded() -> None:
    producer = producer_with(12)
    writer = KafkaBatchWriter(lambda: producer)
    for number in range(HASHES_KEPT + 10):
        writer.partition_of(producer, "t", OutRecord("t", None, b"k%d" % number, b""), [*range(12)])
    assert len(writer._hashes) <= HASHES_KEPT
