"""Many records to Kafka in batches: one future per batch, not one per record.

The flush hands over every record it owes at once; grouping them by partition and
filling aiokafka's batch builders costs a few microseconds a record, where a `send()`
per record costs a coroutine, a future and a callback each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2

log = logging.getLogger(__name__)

_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
# Keys whose murmur2 hash is remembered (see `KafkaBatchWriter.partition_of`).
HASHES_KEPT = 50_000


# Not frozen, like `leadedge.rules.models.SourceRecord`: one is made per changelog and
# output record of every flush, and a frozen dataclass with a default factory costs about
# three times a plain one to make. Nothing changes them once made.
@dataclass(slots=True)
class OutRecord:
    """One record to produce; `partition` None lets the key decide, as `send()` would."""

    topic: str
    partition: int | None
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


def is_retriable(exc: BaseException) -> bool:
    """A send that may succeed later: the broker is away or busy, not refusing the record."""
    return (isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))) or isinstance(
        exc, (asyncio.TimeoutError, ConnectionError)
    )


class KafkaBatchWriter:
    """Produces records through a running aiokafka producer, batch by batch."""

    def __init__(self, producer: Callable[[], AIOKafkaProducer]) -> None:
        self._producer = producer
        self._hashes: dict[bytes, int] = {}

    def partition_of(
        self, producer: AIOKafkaProducer, topic: str, record: OutRecord, partitions: list[int]
    ) -> int:
        """The partition `send()` would choose for a record without one.

        aiokafka's murmur2 is pure Python (about 8 µs a key) and a request's merged
        record goes out at most once a flush, but again at the next: its key's hash is
        remembered. Only for aiokafka's default partitioner, which the engine's producer
        uses; any other decides itself. `partitions`: the topic's, in order.
        """
        key = record.key
        if key is None or not isinstance(producer._partitioner, DefaultPartitioner):
            return int(producer._partition(topic, None, None, None, key, record.value))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= HASHES_KEPT:
                self._hashes.clear()
            hashed = self._hashes[key] = int(murmur2(key)) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]

    async def write(self, records: Iterable[OutRecord]) -> dict[tuple[str, int], int]:
        """Produce every record and wait until Kafka has acknowledged all of them.

        Returns, per (topic, partition), the offset of the last batch's first record.
        A retriable failure sends the partition's records again (duplicates are harmless
        for every topic the engine writes); any other failure raises.
        """
        producer = self._producer()
        groups: dict[tuple[str, int | None], list[OutRecord]] = {}
        for record in records:
            groups.setdefault((record.topic, record.partition), []).append(record)
        if not groups:
            return {}
        for topic in {topic for topic, _ in groups}:
            await producer.client._wait_on_metadata(topic)
        by_partition: dict[tuple[str, int], list[OutRecord]] = {}
        for (topic, partition), group in groups.items():
            if partition is not None:
                by_partition.setdefault((topic, partition), []).extend(group)
                continue
            partitions = sorted(producer._metadata.partitions_for_topic(topic))
            for record in group:
                chosen = self.partition_of(producer, topic, record, partitions)
                by_partition.setdefault((topic, chosen), []).append(record)
        tasks = {
            tp: asyncio.ensure_future(self._send_partition(producer, tp[0], tp[1], group))
            for tp, group in by_partition.items()
        }
        try:
            await asyncio.gather(*tasks.values())
        except BaseException:
            for task in tasks.values():
                task.cancel()
            raise
        return {tp: task.result() for tp, task in tasks.items()}

    async def _send_partition(
        self, producer: AIOKafkaProducer, topic: str, partition: int, records: list[OutRecord]
    ) -> int:
        attempt = 0
        while True:
            try:
                return await self._send_once(producer, topic, partition, records)
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                attempt += 1
                log.warning(
                    "sending %d records to %s[%d] failed (%r); retrying in %.1f s",
                    len(records),
                    topic,
                    partition,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    @staticmethod
    async def _send_once(
        producer: AIOKafkaProducer, topic: str, partition: int, records: list[OutRecord]
    ) -> int:
        futures = []
        batch = producer.create_batch()
        for record in records:
            added = batch.append(
                key=record.key, value=record.value, timestamp=None, headers=list(record.headers)
            )
            if added is None:
                # Full: send it and start the next one (a first record always fits).
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(
                    key=record.key,
                    value=record.value,
                    timestamp=None,
                    headers=list(record.headers),
                )
        futures.append(await producer.send_batch(batch, topic, partition=partition))
        delivered = await asyncio.gather(*futures)
        return int(delivered[-1].offset)
