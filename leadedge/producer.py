"""Produce events to the requests topic, keyed by their id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

import orjson
from aiokafka import AIOKafkaProducer

from leadedge.exceptions import LeadEdgeError


def keyed(lines: Iterable[bytes]) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) per non-empty NDJSON line; the key is the event's id when it has one.

    Lines that are not events are sent all the same: the worker routes them to the
    dead-letter topic with a reason, which is where a producer looks for them.
    """
    for line in lines:
        value = line.strip()
        if not value:
            continue
        key: bytes | None = None
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if (
            isinstance(doc, dict)
            and isinstance(doc.get("id"), (str, int))
            and not isinstance(doc.get("id"), bool)
        ):
            key = str(doc["id"]).encode()
        yield key, value


class EventProducer:
    """An idempotent producer (acks=all) for the requests topic."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Create the client (it needs the running loop) and connect; idempotent."""
        async with self._starting:
            if self._producer is not None:
                return
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
            )
            await producer.start()
            self._producer = producer

    @property
    def producer(self) -> AIOKafkaProducer:
        """The connected client."""
        if self._producer is None:
            msg = "EventProducer used before start()"
            raise LeadEdgeError(msg)
        return self._producer

    async def send(self, key: bytes | None, value: bytes) -> None:
        """Queue one record; `flush` waits for every queued record."""
        await self.producer.send(self.topic, value, key=key)

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged."""
        await self.producer.flush()

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
