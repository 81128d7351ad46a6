from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from leadedge.rules.partitioning import partition_of


def test_an_id_lands_where_kafkas_default_partitioner_puts_its_key() -> None:
    partitioner = DefaultPartitioner()
    for partitions in (1, 4, 8, 12):
        for n in range(200):
            request_id = f"id-{n}"
            expected = partitioner(request_id.encode(), list(range(partitions)), [])
            assert partition_of(request_id, partitions) == expected
