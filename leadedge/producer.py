"""Produce events to the requests topic, keyed by their id."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson
from aiokafka import AIOKafkaProducer


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
        self.topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
        )

    async def start(self) -> None:
        """Connect."""
        await self._producer.start()

    async def send(self, key: bytes | None, value: bytes) -> None:
        """Queue one record; `flush` waits for every queued record."""
        await self._producer.send(self.topic, value, key=key)

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged."""
        await self._producer.flush()

    async def stop(self) -> None:
        """Flush and disconnect."""
        await self._producer.stop()
