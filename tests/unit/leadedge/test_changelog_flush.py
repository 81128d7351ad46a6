"""The producer flush that runs before each offset commit leaves nothing buffered."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import AppT, FutureMessage

from leadedge.app import app
from leadedge.changelog_flush import DrainingProducer, DrainingProducerBuffer


class SlowChannel:
    """A channel that takes longer to hand a record over than Faust's flush waits."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.published: list[int] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(self.delay_s)
        self.published.append(fut.number)


def pending(channel: SlowChannel, number: int) -> FutureMessage:
    return cast(
        FutureMessage, SimpleNamespace(message=SimpleNamespace(channel=channel), number=number)
    )


async def test_flush_returns_only_after_every_buffered_record_is_handed_over() -> None:
    channel = SlowChannel(delay_s=0.25)
    buffer = DrainingProducerBuffer()
    buffer.app = cast(AppT, SimpleNamespace(conf=SimpleNamespace(producer_threaded=False)))
    await buffer.start()
    try:
        for number in range(4):
            buffer.put(pending(channel, number))
        await buffer.flush()
        assert channel.published == [0, 1, 2, 3]
        assert buffer.size == 0
        assert buffer.sending == 0
    finally:
        await buffer.stop()


async def test_flush_of_a_stopped_buffer_with_records_raises_instead_of_hanging() -> None:
    channel = SlowChannel(delay_s=0.0)
    buffer = DrainingProducerBuffer()
    buffer.app = cast(AppT, SimpleNamespace(conf=SimpleNamespace(producer_threaded=False)))
    buffer.put(pending(channel, 1))
    with pytest.raises(RuntimeError, match="not running"):
        await buffer.flush()


def test_the_app_produces_through_the_draining_producer() -> None:
    producer = app._new_producer()
    assert isinstance(producer, DrainingProducer)
    assert isinstance(producer.buffer, DrainingProducerBuffer)
