"""The consumer hands `requests` over a fetch at a time and everything else as messages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

import leadedge.agents.merge  # noqa: F401 (registers the requests topic's batch handler)
from leadedge.engine.app import app, settings
from leadedge.engine.intake import BatchConsumer
from tests.unit.leadedge.engine.fakes import record

REQUESTS = settings.requests_topic
TP0 = TP(REQUESTS, 0)
TP1 = TP(REQUESTS, 1)
OTHER = TP("other-topic", 0)


class RecordingHandler:
    """A batch handler that keeps what it is handed."""

    ack: Any = None

    def __init__(self) -> None:
        self.batches: list[tuple[TP, int, list[int]]] = []
        self.waits = 0
        self.flushes = 0
        self.flushed = True
        self.flush_delay_s = 0.0
        self.dropped: list[set[TP]] = []
        self.active: list[set[TP]] = []

    def activate(self, tps: set[TP]) -> None:
        self.active.append(tps)

    def handle(self, tp: TP, first_offset: int, records: Sequence[Any]) -> None:
        self.batches.append((tp, first_offset, [r.offset for r in records]))

    async def wait_for_room(self) -> None:
        self.waits += 1

    async def flush(self) -> bool:
        self.flushes += 1
        await asyncio.sleep(self.flush_delay_s)
        return self.flushed

    def drop(self, tps: set[TP]) -> None:
        self.dropped.append(tps)

    @property
    def all_delivered(self) -> bool:
        return not self.batches


@pytest.fixture()
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture()
def consumer(handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch) -> Iterator[BatchConsumer]:
    """The app's consumer, not started, with the handler for `requests` and every
    partition assigned."""
    built = app._new_consumer()
    assert isinstance(built, BatchConsumer)
    built.batch_handlers.clear()
    built.add_batch_handler(REQUESTS, handler)
    built._active_partitions = {TP0, TP1, OTHER}
    monkeypatch.setattr(built, "highwater", lambda tp: 1000)
    yield built


def fetch_returns(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch, fetched: dict[TP, list[Any]]
) -> None:
    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[Any]], set[TP]]:  # noqa: ASYNC109
        return fetched, consumer._active_partitions

    monkeypatch.setattr(consumer, "_wait_next_records", wait_next_records)


async def drain(consumer: BatchConsumer) -> list[tuple[TP, int]]:
    return [(tp, message.offset) async for tp, message in consumer.getmany(1.0)]


def fetch_four_and_one(consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetch of four records of partition 0 and one of partition 1."""
    fetch_returns(
        consumer,
        monkeypatch,
        {
            TP0: [record(b"{}", offset=n) for n in range(4)],
            TP1: [record(b"{}", offset=0, partition=1)],
        },
    )


async def test_requests_go_to_the_handler_per_partition_and_other_topics_as_messages(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetch_returns(
        consumer,
        monkeypatch,
        {
            TP0: [record(b"{}", offset=0), record(b"{}", offset=1)],
            TP1: [record(b"{}", offset=5, partition=1)],
            OTHER: [record(b"{}", offset=7, topic=OTHER.topic)],
        },
    )
    assert await drain(consumer) == [(OTHER, 7)]
    assert handler.batches == [(TP0, 0, [0, 1]), (TP1, 5, [5])]
    assert handler.waits == 2  # after each partition's records were handed over
    assert (consumer._read_offset[TP0], consumer._read_offset[TP1]) == (1, 5)
    assert handler.ack == consumer.ack_range


async def test_a_large_fetch_is_handed_over_in_slices_waiting_for_room_after_each(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "slice_records", 2)
    fetch_returns(consumer, monkeypatch, {TP0: [record(b"{}", offset=n) for n in range(5)]})
    await drain(consumer)
    # Each slice acknowledges from right after the one before.
    assert handler.batches == [(TP0, 0, [0, 1]), (TP0, 2, [2, 3]), (TP0, 4, [4])]
    assert handler.waits == 3
    assert consumer._read_offset[TP0] == 4


async def test_a_partition_revoked_while_its_fetch_is_handed_over_gets_no_more_slices(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "slice_records", 2)

    async def revoke_tp0() -> None:
        handler.waits += 1
        consumer._active_partitions = {TP1}

    monkeypatch.setattr(handler, "wait_for_room", revoke_tp0)
    fetch_four_and_one(consumer, monkeypatch)
    await drain(consumer)
    assert handler.batches == [(TP0, 0, [0, 1]), (TP1, 0, [0])]


async def test_a_partition_no_longer_assigned_is_not_handed_over(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer._active_partitions = {TP1}
    fetch_returns(
        consumer,
        monkeypatch,
        {TP0: [record(b"{}", offset=0)], TP1: [record(b"{}", offset=0, partition=1)]},
    )
    await drain(consumer)
    assert handler.batches == [(TP1, 0, [0])]


async def test_a_fetch_that_overlapped_a_rebalance_is_not_handed_over(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "consumer_generation_id", app.consumer_generation_id)

    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[Any]], set[TP]]:  # noqa: ASYNC109
        app.consumer_generation_id += 1
        return {TP0: [record(b"{}", offset=0)]}, consumer._active_partitions

    monkeypatch.setattr(consumer, "_wait_next_records", wait_next_records)
    await drain(consumer)
    assert handler.batches == []


async def test_a_fetch_while_flow_is_stopped_seeks_back_and_hands_nothing_over(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeks: list[int] = []

    async def perform_seek() -> None:
        seeks.append(1)

    monkeypatch.setattr(consumer, "perform_seek", perform_seek)
    consumer.flow_active = False
    fetch_returns(consumer, monkeypatch, {TP0: [record(b"{}", offset=0)]})
    await drain(consumer)
    assert handler.batches == [] and seeks == [1]


async def test_a_seek_that_a_rebalance_makes_fail_while_flow_is_stopped_does_not_stop_the_worker(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def perform_seek() -> None:
        # What aiokafka raises when a partition is revoked during its seek to committed.
        raise IllegalStateError("No current assignment for partition")

    monkeypatch.setattr(consumer, "perform_seek", perform_seek)
    consumer.flow_active = False
    fetch_returns(consumer, monkeypatch, {TP0: [record(b"{}", offset=0)]})
    await drain(consumer)
    assert handler.batches == []


@pytest.mark.parametrize(
    ("read", "committed", "first", "start"),
    [
        (None, None, 12, 12),  # nothing known: from the first record
        (None, 10, 12, 10),  # 10 and 11 compacted away: acknowledged with 12
        (None, 15, 12, 12),  # before the committed offset: applied again, acks clipped
        (20, None, 25, 21),  # after the last record handed over
        (10, 10, 10, 10),  # Faust's seek sets the read offset to the committed one
    ],
)
def test_acknowledgement_starts_after_the_last_offset_known_to_be_done(
    consumer: BatchConsumer,
    handler: RecordingHandler,
    read: int | None,
    committed: int | None,
    first: int,
    start: int,
) -> None:
    if read is not None:
        consumer._read_offset[TP0] = read
    if committed is not None:
        consumer._committed_offset[TP0] = committed
    consumer._handle_batch(handler, TP0, [record(b"{}", offset=first)])  # type: ignore[arg-type]
    assert handler.batches == [(TP0, start, [first])]
    assert consumer._read_offset[TP0] == first


async def test_a_revocation_flushes_and_commits_what_was_read_before_faust_forgets_it(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[set[TP]] = []
    revoked_by_faust: list[set[TP]] = []

    async def commit(topics: Any = None, start_new_transaction: bool = True) -> bool:
        commits.append(set(topics))
        return True

    async def faust_revoke(self: Any, revoked: set[TP]) -> None:
        revoked_by_faust.append(revoked)

    monkeypatch.setattr(consumer, "commit", commit)
    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", faust_revoke)
    await consumer.on_partitions_revoked({TP0, OTHER})
    assert handler.flushes == 1
    assert commits == [{TP0}]
    assert handler.dropped == [{TP0}]
    assert revoked_by_faust == [{TP0, OTHER}]


async def test_once_a_revocation_begins_its_partitions_get_no_slice_until_assigned_again(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The revocation's flush waits for Kafka while the rest of a fetch is handed over:
    # a slice of the revoked partition applied then would go out with a later flush,
    # after the partition's next owner has begun writing its changelog.
    monkeypatch.setattr(consumer, "slice_records", 2)
    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", _faust_noop)
    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_assigned", _faust_noop)

    async def commit(topics: Any = None, start_new_transaction: bool = True) -> bool:
        return True

    monkeypatch.setattr(consumer, "commit", commit)
    revocation: list[asyncio.Task[None]] = []

    async def revocation_begins() -> None:
        handler.waits += 1
        if not revocation:
            handler.flush_delay_s = 0.05
            revocation.append(asyncio.ensure_future(consumer.on_partitions_revoked({TP0})))
            await asyncio.sleep(0)

    monkeypatch.setattr(handler, "wait_for_room", revocation_begins)
    fetch_four_and_one(consumer, monkeypatch)
    await drain(consumer)
    await revocation[0]
    assert handler.batches == [(TP0, 0, [0, 1]), (TP1, 0, [0])]
    assert handler.dropped == [{TP0}]
    await consumer.on_partitions_assigned({TP0, TP1})
    fetch_returns(consumer, monkeypatch, {TP0: [record(b"{}", offset=2)]})
    await drain(consumer)
    assert handler.batches[-1] == (TP0, 2, [2])


async def _faust_noop(self: Any, *args: Any) -> None:
    return None


async def test_a_revocation_whose_flush_fails_or_is_too_slow_commits_nothing(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[Any] = []

    async def commit(topics: Any = None, start_new_transaction: bool = True) -> bool:
        commits.append(topics)
        return True

    async def faust_revoke(self: Any, revoked: set[TP]) -> None:
        return None

    monkeypatch.setattr(consumer, "commit", commit)
    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", faust_revoke)
    handler.flushed = False
    await consumer.on_partitions_revoked({TP0})
    handler.flushed, handler.flush_delay_s = True, 1.0
    monkeypatch.setattr(consumer, "revoke_flush_timeout_s", 0.01)
    await consumer.on_partitions_revoked({TP1})
    assert commits == []
    assert handler.dropped == [{TP0}, {TP1}]


async def test_a_revocation_of_other_topics_leaves_the_handler_alone(
    consumer: BatchConsumer, handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def faust_revoke(self: Any, revoked: set[TP]) -> None:
        return None

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", faust_revoke)
    await consumer.on_partitions_revoked({OTHER})
    assert handler.flushes == 0 and handler.dropped == []
