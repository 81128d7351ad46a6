"""A Faust producer whose flush really waits for every buffered record.

Faust flushes its producer before it commits consumer offsets, so that a table's
changelog records are in Kafka before the offsets of the events that wrote them.
But its buffer's `flush()` gives up after 0.1 s without progress and lets the commit go
ahead: on a busy worker, offsets were committed while changelog records still sat in
the buffer, and a `kill -9` at that moment lost table updates for good (the events
were never read again). These classes make the flush drain the buffer, including the
record being handed to the Kafka client, before the commit proceeds.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from faust.transport.drivers.aiokafka import Producer
from faust.transport.producer import ProducerBuffer
from faust.types import FutureMessage

from leadedge.exceptions import NotDelivered

# How long one wait for progress lasts before the buffer is checked again.
_PROGRESS_WAIT_S = 0.1


class DrainingProducerBuffer(ProducerBuffer):
    """Faust's producer buffer, with a flush that returns only once it is empty."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # A record taken off the queue is not in `size` until the client holds it.
        self.sending = 0
        # Handed to the client, not yet acknowledged by Kafka; and refused for good.
        self.unconfirmed = 0
        self.failed = 0

    async def _send_pending(self, fut: FutureMessage) -> None:
        self.sending += 1
        self.unconfirmed += 1
        fut.add_done_callback(self._on_outcome)
        try:
            await super()._send_pending(fut)
        finally:
            self.sending -= 1

    def _on_outcome(self, fut: asyncio.Future[Any]) -> None:
        self.unconfirmed -= 1
        if fut.cancelled() or fut.exception() is not None:
            self.failed += 1

    @property
    def all_delivered(self) -> bool:
        """True when every record ever buffered is in Kafka: none waiting, none lost."""
        return not (self.size or self.sending or self.unconfirmed or self.failed)

    async def flush(self) -> None:
        """Wait until every buffered record has been handed to the Kafka client."""
        while self.size or self.sending:
            if self.state != "running":
                msg = f"cannot flush {self.size} buffered records: the producer is not running"
                raise NotDelivered(msg)
            self.message_sent.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.message_sent.wait(), timeout=_PROGRESS_WAIT_S)


class DrainingProducer(Producer):
    """The aiokafka driver's producer with a `DrainingProducerBuffer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        buffer = DrainingProducerBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        if self.app.conf.producer_threaded:
            buffer.threaded_producer = self.threaded_producer
        self.buffer = buffer

    @property
    def all_delivered(self) -> bool:
        """True when every changelog record this producer buffered is in Kafka."""
        return cast(DrainingProducerBuffer, self.buffer).all_delivered
