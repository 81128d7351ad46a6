"""Read a topic's partitions between offsets without a consumer group, latest per key.

`leadedge reindex` folds the compacted merged-requests topic with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from leadedge.clients.kafka import KafkaConnection, as_connection
from leadedge.exceptions import TopicReadError
from leadedge.tools.replay import ProgressFactory

UNKNOWN_TOPIC = 3  # Kafka's UNKNOWN_TOPIC_OR_PARTITION


def fold_latest(
    latest: dict[bytes, bytes | None], records: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Keep the latest value per key (a tombstone removes it); returns records folded."""
    count = 0
    for key, value in records:
        count += 1
        if key is None:
            continue
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return count


def partitions_left(positions: Mapping[int, int], ends: Mapping[int, int]) -> set[int]:
    """Partitions whose position has not reached the end offset captured for them."""
    return {partition for partition, end in ends.items() if positions.get(partition, 0) < end}


class TopicReader:
    """Reads a topic's partitions between offsets, without a consumer group."""

    def __init__(
        self, connection: str | KafkaConnection, topic: str, idle_timeout_s: float
    ) -> None:
        self.connection = as_connection(connection)
        self.topic = topic
        self.idle_timeout_s = idle_timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self.partitions: list[TopicPartition] = []

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The assigned consumer; only after `start()`."""
        if self._consumer is None:
            msg = "the topic reader is used before start()"
            raise TopicReadError(msg)
        return self._consumer

    async def start(self) -> None:
        """Find the topic's partitions and assign them all; a missing topic is an error."""
        admin = AIOKafkaAdminClient(**self.connection.client_options())
        await admin.start()
        try:
            (described,) = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        if described.get("error_code") == UNKNOWN_TOPIC or not described.get("partitions"):
            msg = f"topic {self.topic!r} does not exist"
            raise TopicReadError(msg)
        if described.get("error_code"):
            msg = f"topic {self.topic!r} cannot be described: error {described['error_code']}"
            raise TopicReadError(msg)
        numbers = sorted(int(part["partition"]) for part in described["partitions"])
        self.partitions = [TopicPartition(self.topic, number) for number in numbers]
        # Created only now: an unstarted consumer warns when it is collected.
        self._consumer = AIOKafkaConsumer(
            **self.connection.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        self._consumer.assign(self.partitions)

    async def end_offsets(self) -> dict[int, int]:
        """The end offset of every partition, now."""
        ends = await self.consumer.end_offsets(self.partitions)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def read(
        self,
        latest: dict[bytes, bytes | None],
        starts: Mapping[int, int] | None,
        ends: Mapping[int, int],
        progress: ProgressFactory,
        label: str,
    ) -> int:
        """Fold [starts, ends) of every partition into `latest` (from the beginning if None)."""
        consumer = self.consumer
        beginnings = {
            tp.partition: offset
            for tp, offset in (await consumer.beginning_offsets(self.partitions)).items()
        }
        first = {p: max(beginnings[p], (starts or {}).get(p, beginnings[p])) for p in beginnings}
        by_number = {tp.partition: tp for tp in self.partitions}
        left = partitions_left(first, ends)
        consumer.resume(*self.partitions)
        for number, tp in by_number.items():
            if number in left:
                consumer.seek(tp, first[number])
            else:
                consumer.pause(tp)
        total = sum(max(ends[p] - first[p], 0) for p in left)
        read = 0
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        with progress(label, total) as bar:
            while left:
                batches = await consumer.getmany(
                    *(by_number[p] for p in left), timeout_ms=500, max_records=5000
                )
                for tp, records in batches.items():
                    wanted = [r for r in records if r.offset < ends[tp.partition]]
                    read += fold_latest(latest, ((r.key, r.value) for r in wanted))
                    if wanted:
                        bar.update(wanted[-1].offset + 1 - first[tp.partition])
                        first[tp.partition] = wanted[-1].offset + 1
                positions = {p: await consumer.position(by_number[p]) for p in left}
                done = set(left) - partitions_left(positions, ends)
                for number in done:
                    consumer.pause(by_number[number])
                    bar.update(max(ends[number] - first[number], 0))
                    first[number] = ends[number]
                if batches or done:
                    idle_since = loop.time()
                elif loop.time() - idle_since > self.idle_timeout_s:
                    msg = (
                        f"reading {self.topic} made no progress for {self.idle_timeout_s:.0f}s "
                        f"(partitions {sorted(left)} short of their end offsets)"
                    )
                    raise TopicReadError(msg)
                left -= done
        return read

    async def stop(self) -> None:
        """Close the consumer."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
