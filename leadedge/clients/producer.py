"""Produce events to the requests topic, keyed by their id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from leadedge.clients.kafka import KafkaConnection, as_connection
from leadedge.exceptions import LeadEdgeError, NotDelivered


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

    def __init__(self, connection: str | KafkaConnection, topic: str) -> None:
        self.connection = as_connection(connection)
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Create the client (it needs the running loop) and connect; idempotent."""
        async with self._starting:
            if self._producer is not None:
                return
            producer = AIOKafkaProducer(
                **self.connection.client_options(),
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
            )
            try:
                await producer.start()
            except BaseException:
                # Timed out or refused while connecting: close what it opened, or each
                # retry would leave a client behind.
                await asyncio.shield(producer.stop())
                raise
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

    async def deliver(
        self, records: Sequence[tuple[bytes | None, bytes]], timeout_s: float
    ) -> None:
        """Send every record and return once Kafka acknowledged each (acks=all).

        Raises NotDelivered when that does not happen within `timeout_s` (Kafka down or
        unreachable, a record refused): the caller must not claim the records stored.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    await self.start()
                except KafkaError as exc:
                    msg = f"Kafka could not be reached: {exc}"
                    raise NotDelivered(msg) from exc
                deliveries = [
                    await self.producer.send(self.topic, value, key=key) for key, value in records
                ]
        except TimeoutError:
            msg = f"Kafka did not take the records within {timeout_s:g} s"
            raise NotDelivered(msg) from None
        except KafkaError as exc:
            msg = f"Kafka refused the records: {exc}"
            raise NotDelivered(msg) from exc
        if not deliveries:
            return
        # Waited for, not cancelled: the producer keeps retrying what it already holds.
        done, pending = await asyncio.wait(deliveries, timeout=max(deadline - loop.time(), 0))
        failures = [delivery.exception() for delivery in done if delivery.exception()]
        for delivery in pending:
            # Read when it ends, so a late refusal is not reported as never retrieved.
            delivery.add_done_callback(_retrieve)
        if pending:
            msg = (
                f"Kafka acknowledged {len(done)} of {len(deliveries)} records "
                f"within {timeout_s:g} s"
            )
            raise NotDelivered(msg)
        if failures:
            msg = f"Kafka refused {len(failures)} of {len(deliveries)} records: {failures[0]}"
            raise NotDelivered(msg)

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged."""
        await self.producer.flush()

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _retrieve(delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled():
        delivery.exception()
