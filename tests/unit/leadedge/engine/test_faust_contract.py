"""The Faust internals the batch engine relies on (`leadedge.engine.intake`, `.changelog_recovery`).

faust-streaming is pinned; these fail first when an upgrade moves one of them, before
offsets are committed wrongly or table values are stored under keys Faust cannot read.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.types import TP
from faust.types.tuples import Message, ack_lock

import leadedge.agents.merge  # noqa: F401 (registers the requests topic's batch handler)
from leadedge.engine.app import app, settings
from leadedge.engine.intake import BatchConsumer, BatchConsumerThread
from leadedge.engine.write_back import encode_key, encode_value
from leadedge.tables.merged_requests import merged_requests
from leadedge.tables.request_history import request_history
from leadedge.tables.request_stats import stats_partials

TP0 = TP(settings.requests_topic, 0)


@pytest.fixture()
def consumer() -> Iterator[BatchConsumer]:
    """The app's consumer, constructed but not started."""
    built = app._new_consumer()
    assert isinstance(built, BatchConsumer)
    yield built


def message(offset: int, tp: TP = TP0) -> Message:
    return Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None)


def test_the_consumer_fetches_through_wait_next_records() -> None:
    wait_next_records = Consumer._wait_next_records
    assert inspect.iscoroutinefunction(wait_next_records)
    assert list(inspect.signature(wait_next_records).parameters) == ["self", "timeout"]
    assert inspect.isasyncgenfunction(Consumer.getmany)
    assert list(inspect.signature(Consumer.getmany).parameters) == ["self", "timeout"]


def test_a_consumer_keeps_the_offset_bookkeeping_the_batch_consumer_updates(
    consumer: BatchConsumer,
) -> None:
    for name in ("_read_offset", "_committed_offset"):
        offsets = getattr(consumer, name)
        assert offsets.get(TP0) is None
        assert offsets[TP0] is None  # a defaultdict of None
    assert consumer._acked[TP0] == []
    assert consumer._acked_index[TP0] == set()
    assert consumer._n_acked == 0
    assert isinstance(consumer._active_partitions, set)
    assert isinstance(consumer._buffered_partitions, set)
    assert consumer._waiting_for_ack is None
    assert consumer.flow_active is True
    assert callable(consumer.perform_seek) and callable(consumer._to_message)
    assert callable(consumer.highwater)


def test_the_apps_consumer_is_a_batch_consumer_that_hands_requests_to_the_engine(
    consumer: BatchConsumer,
) -> None:
    engine = app.batch_handler(settings.requests_topic)
    assert consumer.batch_handlers == {settings.requests_topic: engine}
    assert engine.ack == consumer.ack_range


def test_acknowledged_ranges_become_the_next_committed_offset(consumer: BatchConsumer) -> None:
    assert consumer.ack_range(TP0, 3, 7) == 5
    assert consumer._n_acked == 5
    assert consumer._new_offset(TP0) == 8
    assert consumer._new_offset(TP0) is None  # taken by that commit


def test_faust_s_commit_picks_up_the_acknowledged_ranges(consumer: BatchConsumer) -> None:
    other = TP(settings.requests_topic, 1)
    consumer.ack_range(TP0, 0, 9)
    consumer.ack_range(other, 4, 4)
    assert set(consumer._filter_tps_with_pending_acks({settings.requests_topic})) == {
        TP0,
        other,
    }
    assert consumer._filter_committable_offsets([TP0, other]) == {TP0: 10, other: 5}


def test_a_gap_holds_the_committed_offset_until_it_is_acknowledged(
    consumer: BatchConsumer,
) -> None:
    consumer.ack_range(TP0, 0, 4)
    consumer.ack_range(TP0, 8, 9)  # a later flush finished first
    assert consumer._new_offset(TP0) == 5
    consumer._committed_offset[TP0] = 5  # what Faust's commit records
    assert consumer._new_offset(TP0) is None
    consumer.ack_range(TP0, 5, 7)
    assert consumer._new_offset(TP0) == 10


def test_offsets_before_the_committed_one_are_not_acknowledged_again(
    consumer: BatchConsumer,
) -> None:
    consumer._committed_offset[TP0] = 5  # the next offset to read
    assert consumer.ack_range(TP0, 2, 4) == 0
    assert consumer._new_offset(TP0) is None
    assert consumer.ack_range(TP0, 2, 9) == 5
    assert consumer._acked[TP0] == [5, 6, 7, 8, 9]
    assert consumer._new_offset(TP0) == 10


def test_offsets_faust_acknowledged_itself_are_counted_once(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: True)
    assert consumer.ack(message(3))
    assert consumer.ack(message(4))
    assert consumer.ack_range(TP0, 0, 6) == 5
    assert sorted(consumer._acked[TP0]) == list(range(7))
    assert consumer._n_acked == 7
    assert consumer._new_offset(TP0) == 7


async def test_an_acknowledgement_wakes_whoever_waits_for_one(consumer: BatchConsumer) -> None:
    waiting = asyncio.get_running_loop().create_future()
    consumer._waiting_for_ack = waiting
    consumer.ack_range(TP0, 0, 0)
    assert waiting.done()


def test_the_ack_lock_is_faust_s_reentrant_lock_shared_with_message_acks(
    consumer: BatchConsumer,
) -> None:
    assert isinstance(ack_lock, type(threading.RLock()))
    with ack_lock:  # held by Message.ack when it calls Consumer.ack
        assert consumer.ack_range(TP0, 0, 1) == 2


@pytest.mark.parametrize(
    "key", ["m1", "é✓", "h\x1f0", "w\x1fdefault|web|2024-01-01T00:00:00.000Z\x1f3", 'a"b\\c']
)
@pytest.mark.parametrize("table", [merged_requests, request_history, stats_partials])
def test_table_keys_are_encoded_as_faust_s_own_store_encodes_them(table: Any, key: str) -> None:
    store = table.data
    assert store._encode_key(key) == encode_key(key)
    assert store._decode_key(encode_key(key)) == key


@pytest.mark.parametrize("table", [merged_requests, request_history, stats_partials])
def test_table_values_read_back_through_faust_s_own_serializer(table: Any) -> None:
    value = {"n": 1, "f": 2.5, "s": "é✓", "l": [1, None], "o": {"_src": [0, 7]}}
    store = table.data
    assert store._decode_value(encode_value(value)) == value


def test_recovery_keeps_the_bookkeeping_the_bulk_changelog_path_updates() -> None:
    # See `leadedge.engine.changelog_recovery`.
    recovery = app.tables.recovery
    for name in ("active_tps", "standby_tps"):
        assert isinstance(getattr(recovery, name), set)
    assert isinstance(recovery.tp_to_table, dict)
    for name in ("active_offsets", "standby_offsets"):
        offsets = getattr(recovery, name)
        assert offsets.get(TP0) is None  # a Counter: no offset until one is set
    assert recovery.in_recovery is False
    assert callable(recovery.flush_buffers)
    assert merged_requests._on_changelog_event is None


def test_the_recovery_loop_skips_a_record_at_or_before_the_recovery_offset() -> None:
    # The record the bulk path leaves to Faust's loop is stored by it only when past the
    # offset the bulk path set, and the loop checks for the end after every record.
    source = inspect.getsource(Recovery._slurp_changelogs.fun)
    skip = source.index("if seen_offset is None or offset > seen_offset:")
    assert source.index("offsets[tp] = offset", skip) > skip
    assert source.index("await _maybe_signal_recovery_end()", skip) > skip
    assert "changelog_queue.get()" in source


def test_the_rocksdb_store_applies_a_changelog_batch_from_the_events_messages() -> None:
    source = inspect.getsource(RocksDBStore.apply_changelog_batch)
    reads = {name for name in ("event.message", "event.key", "event.value") if name in source}
    assert reads == {"event.message"}


def test_the_worker_s_kafka_consumer_has_the_broker_hold_a_fetch_briefly(
    consumer: BatchConsumer,
) -> None:
    thread = consumer._new_consumer_thread()
    assert isinstance(thread, BatchConsumerThread)

    async def built() -> AIOKafkaConsumer:
        return thread._create_worker_consumer(consumer.transport)

    kafka_consumer = asyncio.run(built())
    assert kafka_consumer._fetch_max_wait_ms == BatchConsumerThread.fetch_max_wait_ms
    # aiokafka's fetcher takes it from there when the consumer starts.
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
