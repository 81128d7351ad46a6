"""The producer flush that runs before each offset commit leaves nothing buffered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import AppT, FutureMessage

from leadedge.engine.app import app
from leadedge.engine.changelog_flush import DrainingProducer, DrainingProducerBuffer
from leadedge.exceptions import NotDelivered


class SlowChannel:
    """A channel that takes longer to hand a record over than Faust's flush waits."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.published: list[int] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(self.delay_s)
        self.published.append(fut.number)


class PendingRecord(asyncio.Future[Any]):
    """A buffered record: the future Kafka's acknowledgement completes."""

    def __init__(self, channel: SlowChannel, number: int) -> None:
        super().__init__()
        self.message = SimpleNamespace(channel=channel)
        self.number = number


def pending(channel: SlowChannel, number: int) -> FutureMessage:
    return cast(FutureMessage, PendingRecord(channel, number))


def new_buffer() -> DrainingProducerBuffer:
    buffer = DrainingProducerBuffer()
    buffer.app = cast(AppT, SimpleNamespace(conf=SimpleNamespace(producer_threaded=False)))
    return buffer


@pytest.fixture()
async def buffer() -> AsyncIterator[DrainingProducerBuffer]:
    """A started buffer, stopped after the test."""
    started = new_buffer()
    await started.start()
    yield started
    await started.stop()


async def test_flush_returns_only_after_every_buffered_record_is_handed_over(
    buffer: DrainingProducerBuffer,
) -> None:
    channel = SlowChannel(delay_s=0.25)
    for number in range(4):
        buffer.put(pending(channel, number))
    await buffer.flush()
    assert channel.published == [0, 1, 2, 3]
    assert buffer.size == 0
    assert buffer.sending == 0


async def test_flush_of_a_stopped_buffer_with_records_raises_instead_of_hanging() -> None:
    channel = SlowChannel(delay_s=0.0)
    buffer = new_buffer()
    buffer.put(pending(channel, 1))
    with pytest.raises(NotDelivered, match="not running"):
        await buffer.flush()


async def test_all_delivered_only_once_kafka_acknowledged_every_record(
    buffer: DrainingProducerBuffer,
) -> None:
    channel = SlowChannel(delay_s=0.0)
    records = [pending(channel, number) for number in range(2)]
    for record in records:
        buffer.put(record)
    await buffer.flush()
    assert not buffer.all_delivered  # handed over, not yet acknowledged
    records[0].set_result(None)
    records[1].set_result(None)
    await asyncio.sleep(0)
    assert buffer.all_delivered


async def test_a_record_kafka_refused_means_not_all_delivered(
    buffer: DrainingProducerBuffer,
) -> None:
    channel = SlowChannel(delay_s=0.0)
    record = pending(channel, 1)
    buffer.put(record)
    await buffer.flush()
    record.set_exception(ConnectionError("broker gone"))
    await asyncio.sleep(0)
    assert buffer.failed == 1
    assert not buffer.all_delivered


def test_the_app_produces_through_the_draining_producer() -> None:
    producer = app._new_producer()
    assert isinstance(producer, DrainingProducer)
    assert isinstance(producer.buffer, DrainingProducerBuffer)
