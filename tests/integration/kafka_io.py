"""Produce to and read from the real broker in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from leadedge.config import bootstrap_servers


def produce(broker: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(broker), enable_idempotence=True
        )
        await producer.start()
        try:
            for key, value in records:
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def read_all(
    broker: str, topic: str, expect: int, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the beginning until `expect` records or the timeout."""

    async def run() -> list[ConsumerRecord[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers(broker),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        found: list[ConsumerRecord[bytes, bytes]] = []
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while len(found) < expect and asyncio.get_running_loop().time() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    found.extend(records)
        finally:
            await consumer.stop()
        return found

    return asyncio.run(run())


def produce_at_rate(
    broker: str, topic: str, records: Sequence[tuple[bytes | None, bytes]], per_second: float
) -> list[tuple[int, int]]:
    """Produce in order at about `per_second`; returns each record's (partition, offset)."""

    async def run() -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(broker), enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            futures = []
            for n, (key, value) in enumerate(records):
                futures.append(await producer.send(topic, value, key=key))
                ahead = started + n / per_second - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.flush()
            return [(meta.partition, meta.offset) for meta in await asyncio.gather(*futures)]
        finally:
            await producer.stop()

    return asyncio.run(run())
