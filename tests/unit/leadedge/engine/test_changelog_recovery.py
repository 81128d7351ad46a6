"""A recovering table's changelog, written to its RocksDB store a fetch at a time."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, Message

import leadedge.agents.merge  # noqa: F401 (declares the tables on the app)
from leadedge.engine.changelog_recovery import ChangelogBatches
from leadedge.engine.write_back import encode_key, encode_value
from leadedge.tables.merged_requests import merged_requests

CHANGELOG = merged_requests.changelog_topic.get_topic_name()
TP1 = TP(CHANGELOG, 1)


class FakeRecovery:
    """Faust's `Recovery`, as far as the bulk path reads and writes it."""

    def __init__(self, table: Any) -> None:
        self.tp_to_table = {TP1: table}
        self.active_tps = {TP1}
        self.standby_tps: set[TP] = set()
        self.active_offsets: Counter[TP] = Counter()
        self.standby_offsets: Counter[TP] = Counter()
        self.in_recovery = True
        self.calls: list[str] = []

    def flush_buffers(self) -> None:
        self.calls.append("flush_buffers")


@pytest.fixture()
def store(rocksdb_store: RocksDBStore) -> RocksDBStore:
    """The merged-requests table over a real RocksDB store (see conftest)."""
    return rocksdb_store


def record(offset: int, key: str, value: dict[str, Any] | None) -> ConsumerRecord[bytes, bytes]:
    raw = None if value is None else encode_value(value)
    return ConsumerRecord(CHANGELOG, 1, offset, 0, 0, encode_key(key), raw, None, 0, 0, ())


def to_message(tp: TP, rec: Any) -> Message:
    return Message(tp.topic, tp.partition, rec.offset, 0.0, 0, None, rec.key, rec.value, None)


def batches(recovery: FakeRecovery, generation: int = 1) -> ChangelogBatches:
    fake_app = SimpleNamespace(
        tables=SimpleNamespace(recovery=recovery), consumer_generation_id=generation
    )
    return ChangelogBatches(fake_app)  # type: ignore[arg-type]


def stored(store: RocksDBStore, key: str) -> bytes | None:
    return store._db_for_partition(1).get(encode_key(key))  # type: ignore[no-any-return]


async def test_all_but_the_last_record_are_written_at_once_and_the_recovery_offset_moves(
    store: RocksDBStore,
) -> None:
    recovery = FakeRecovery(merged_requests)
    recovery.active_offsets[TP1] = 9
    fetch = [record(10, "a", {"n": 1}), record(11, "b", {"n": 2}), record(12, "a", {"n": 3})]
    left = await batches(recovery).take(TP1, fetch, to_message)
    assert left == fetch[-1:]  # for Faust's loop: it stores it and checks for the end
    assert recovery.active_offsets[TP1] == 11
    assert stored(store, "a") == encode_value({"n": 1})
    assert stored(store, "b") == encode_value({"n": 2})
    assert store.persisted_offset(TP1) == 11
    assert recovery.calls == ["flush_buffers"]  # the loop's older buffer first


async def test_a_tombstone_deletes_and_records_already_applied_are_not_written_again(
    store: RocksDBStore,
) -> None:
    recovery = FakeRecovery(merged_requests)
    recovery.active_offsets[TP1] = 4
    fetch = [record(n, "k", {"n": n}) for n in range(3, 7)] + [record(7, "k", None)]
    fetch.append(record(8, "z", {"n": 8}))
    left = await batches(recovery).take(TP1, fetch, to_message)
    assert [r.offset for r in left] == [8]
    assert stored(store, "k") is None
    assert recovery.active_offsets[TP1] == 7


async def test_the_next_fetch_waits_for_the_loop_to_take_the_record_handed_to_it(
    store: RocksDBStore,
) -> None:
    recovery = FakeRecovery(merged_requests)
    taker = batches(recovery)
    await taker.take(TP1, [record(0, "a", {"n": 0}), record(1, "a", {"n": 1})], to_message)

    async def loop_takes_it() -> None:
        await asyncio.sleep(0.05)
        recovery.active_offsets[TP1] = 1  # Faust's recovery loop took offset 1

    later = [record(2, "a", {"n": 2}), record(3, "a", {"n": 3})]
    left, _ = await asyncio.gather(taker.take(TP1, later, to_message), loop_takes_it())
    assert [r.offset for r in left] == [3]
    assert stored(store, "a") == encode_value({"n": 2})


async def test_when_the_loop_does_not_catch_up_the_fetch_takes_faust_s_path_whole(
    store: RocksDBStore,
) -> None:
    recovery = FakeRecovery(merged_requests)
    taker = batches(recovery)
    taker.catch_up_timeout_s = 0.02
    await taker.take(TP1, [record(0, "a", {"n": 0}), record(1, "a", {"n": 1})], to_message)
    later = [record(2, "a", {"n": 2}), record(3, "a", {"n": 3})]
    assert await taker.take(TP1, later, to_message) == later
    assert stored(store, "a") == encode_value({"n": 0})


async def test_a_rebalance_forgets_what_was_handed_over_before_it(store: RocksDBStore) -> None:
    recovery = FakeRecovery(merged_requests)
    taker = batches(recovery)
    taker.catch_up_timeout_s = 0.02
    await taker.take(TP1, [record(0, "a", {"n": 0}), record(1, "a", {"n": 1})], to_message)
    taker.app.consumer_generation_id = 2  # type: ignore[misc]
    recovery.active_offsets[TP1] = 0  # recovery starts again from the store's offset
    later = [record(1, "a", {"n": 1}), record(2, "a", {"n": 2})]
    assert [r.offset for r in await taker.take(TP1, later, to_message)] == [2]


async def test_standby_partitions_are_written_in_bulk_too(store: RocksDBStore) -> None:
    recovery = FakeRecovery(merged_requests)
    recovery.active_tps = set()
    recovery.standby_tps = {TP1}
    recovery.in_recovery = False
    fetch = [record(0, "s", {"n": 0}), record(1, "s", {"n": 1})]
    assert await batches(recovery).take(TP1, fetch, to_message) == fetch[-1:]
    assert recovery.standby_offsets[TP1] == 0


@pytest.mark.parametrize("case", ["recovered", "not a changelog", "single record", "memory"])
async def test_other_records_keep_faust_s_path(store: RocksDBStore, case: str) -> None:
    recovery = FakeRecovery(merged_requests)
    fetch = [record(0, "a", {"n": 0}), record(1, "a", {"n": 1})]
    tp = TP1
    if case == "recovered":
        recovery.in_recovery = False
    elif case == "not a changelog":
        tp = TP("requests", 1)
    elif case == "single record":
        fetch = fetch[:1]
    else:
        recovery.tp_to_table = {TP1: SimpleNamespace(data={}, _on_changelog_event=None)}
    assert await batches(recovery).take(tp, fetch, to_message) == fetch
    assert stored(store, "a") is None
