"""The write-back cache: reads see every change at once, the store only flushed ones."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from leadedge.engine.write_back import (
    MemoryPartitions,
    RocksDBPartitions,
    WriteBackTable,
    encode_key,
    encode_value,
)
from leadedge.rules.stats_state import clock_key, flush_records, partial_key


def table(store: dict[str, Any] | None = None, **options: Any) -> WriteBackTable:
    return WriteBackTable(
        "merged_requests", "merged_requests-changelog", MemoryPartitions(store or {}), **options
    )


def test_a_change_is_read_back_at_once_but_stored_only_after_its_flush() -> None:
    store: dict[str, Any] = {"a": {"n": 1}}
    cache = table(store)
    cache.set(0, "a", {"n": 2})
    cache.set(0, "b", {"n": 1})
    assert cache.get(0, "a") == {"n": 2}
    assert cache.get(0, "b") == {"n": 1}
    assert store == {"a": {"n": 1}}
    assert len(cache) == 2


def test_a_value_being_flushed_stays_readable_and_newer_changes_win() -> None:
    store: dict[str, Any] = {}
    cache = table(store)
    cache.set(0, "a", {"n": 1})
    cache.take()
    assert cache.get(0, "a") == {"n": 1}  # being flushed, not stored yet
    assert len(cache) == 0
    cache.set(0, "a", {"n": 2})
    assert cache.get(0, "a") == {"n": 2}
    assert store == {}


def test_a_flush_stores_each_changed_key_once_with_its_newest_value() -> None:
    store: dict[str, Any] = {"gone": {"n": 9}}
    cache = table(store)
    cache.set(0, "a", {"n": 1})
    cache.set(0, "a", {"n": 2})
    cache.delete(1, "gone")
    cache.take()
    encoded = cache.encoded()
    assert encoded == {0: [("a", b'{"n":2}')], 1: [("gone", None)]}
    cache.stored(encoded, {0: 5, 1: 7})
    assert store == {"a": {"n": 2}}
    assert cache.get(0, "a") == {"n": 2}  # now from the store
    assert cache.get(1, "gone") is None


def test_a_second_flush_cannot_start_before_the_first_is_stored() -> None:
    cache = table()
    cache.set(0, "a", 1)
    cache.take()
    with pytest.raises(RuntimeError, match="already in progress"):
        cache.take()
    cache.stored(cache.encoded(), {0: 0})
    cache.take()


def test_unflushed_changes_of_revoked_partitions_are_forgotten_others_kept() -> None:
    store: dict[str, Any] = {"a": "stored"}
    cache = table(store)
    cache.set(0, "a", "changed")
    cache.set(1, "b", "changed")
    cache.drop([0])
    assert cache.get(0, "a") == "stored"
    assert cache.get(1, "b") == "changed"
    assert len(cache) == 1


W0 = partial_key("default|web|0", 0)
W1 = partial_key("default|web|1", 0)
C0 = clock_key(0)


def test_the_partials_plan_opens_with_the_old_clock_then_partials_clock_deletions() -> None:
    stored = {C0: {"stream_ms": 100, "open": [[0, W0]]}}
    final = {"stream_ms": 900, "open": [[60_000, W1]]}
    changed = {W1: {"events": 1}, C0: final, W0: None}
    assert flush_records(changed, stored.get) == [
        # Stream time from before the flush; every partial kept before or after it.
        (C0, {"stream_ms": 100, "open": [[0, W0], [60_000, W1]]}),
        (W1, {"events": 1}),
        # The final clock before the deletions of what it no longer lists.
        (C0, final),
        (W0, None),
    ]


def test_the_partials_plan_without_a_stored_clock_opens_without_stream_time() -> None:
    final = {"stream_ms": 900, "open": [[0, W0]]}
    records = flush_records({W0: {"events": 1}, C0: final}, {}.get)
    assert records == [
        (C0, {"stream_ms": None, "open": [[0, W0]]}),
        (W0, {"events": 1}),
        (C0, final),
    ]


def test_the_partials_plan_without_a_clock_change_sends_the_partials() -> None:
    changed = {W1: {"events": 1}, W0: {"events": 2}}
    assert flush_records(changed, {}.get) == [(W1, {"events": 1}), (W0, {"events": 2})]


class CountingStore(MemoryPartitions):
    """An in-memory store that counts its reads, to see what the clean cache saves."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.reads: list[str] = []

    def get(self, partition: int, key: str) -> Any:
        self.reads.append(key)
        return super().get(partition, key)


def test_a_stored_value_is_decoded_once_then_read_from_the_clean_cache() -> None:
    store = CountingStore({"a": {"n": 1}})
    cache = WriteBackTable("merged_requests", "merged_requests-changelog", store)
    assert cache.get(0, "a") == {"n": 1}
    assert cache.get(0, "a") == {"n": 1}
    assert cache.flushed_value(0, "a") == {"n": 1}
    assert store.reads == ["a"]
    assert cache.clean == {(0, "a"): {"n": 1}}
    # A missing key is not remembered: it may be stored by the time it is read again.
    assert cache.get(0, "b") is None
    store.data["b"] = {"n": 2}
    assert cache.get(0, "b") == {"n": 2}
    assert store.reads == ["a", "b", "b"]


def test_a_flush_leaves_its_values_in_the_clean_cache_and_its_deletions_out() -> None:
    store = CountingStore({"gone": {"n": 9}})
    cache = WriteBackTable("merged_requests", "merged_requests-changelog", store)
    assert cache.get(0, "gone") == {"n": 9}
    cache.set(0, "a", {"n": 1})
    cache.delete(0, "gone")
    cache.take()
    cache.stored(cache.encoded(), {0: 1})
    assert cache.clean == {(0, "a"): {"n": 1}}
    reads = len(store.reads)
    assert cache.get(0, "a") == {"n": 1}
    assert len(store.reads) == reads  # not read back from the store
    assert cache.get(0, "gone") is None


def test_a_flush_plan_reads_the_values_stored_before_it_from_the_clean_cache() -> None:
    store = CountingStore({})
    cache = WriteBackTable(
        "stats_partials", "stats_partials-changelog", store, flush_plan=flush_records
    )
    cache.set(0, C0, {"stream_ms": 1, "open": []})
    cache.take()
    cache.stored(cache.encoded(), {0: 1})
    store.reads.clear()
    cache.set(0, C0, {"stream_ms": 2, "open": []})
    cache.take()
    [(_, opening), (_, final)] = cache.encoded()[0]
    assert orjson.loads(opening or b"") == {"stream_ms": 1, "open": []}
    assert orjson.loads(final or b"") == {"stream_ms": 2, "open": []}
    assert store.reads == []


def test_the_clean_cache_holds_at_most_its_bound_and_lets_the_oldest_go_first() -> None:
    store = CountingStore({"a": 1, "b": 2, "c": 3})
    cache = WriteBackTable("merged_requests", "merged_requests-changelog", store, clean_entries=2)
    assert [cache.get(0, key) for key in ("a", "b", "c")] == [1, 2, 3]
    assert list(cache.clean) == [(0, "b"), (0, "c")]
    # A value written by a flush becomes the newest.
    cache.set(0, "b", 20)
    cache.take()
    cache.stored(cache.encoded(), {0: 1})
    assert list(cache.clean) == [(0, "c"), (0, "b")]
    assert cache.get(0, "a") == 1
    assert list(cache.clean) == [(0, "b"), (0, "a")]
    assert cache.get(0, "c") == 3  # evicted: read from the store again
    assert store.reads == ["a", "b", "c", "a", "c"]


def test_revoked_partitions_leave_the_clean_cache_and_are_read_from_the_store_again() -> None:
    store = CountingStore({"a": "old", "b": "kept"})
    cache = WriteBackTable("merged_requests", "merged_requests-changelog", store)
    cache.get(0, "a")
    cache.get(1, "b")
    cache.drop([0])
    assert cache.clean == {(1, "b"): "kept"}
    store.data["a"] = "changed elsewhere"  # by the worker that had partition 0 meanwhile
    assert cache.get(0, "a") == "changed elsewhere"
    assert cache.get(1, "b") == "kept"
    assert store.reads == ["a", "b", "a"]


def test_keys_and_values_are_encoded_as_json_and_a_deletion_is_a_tombstone() -> None:
    assert encode_key("é✓") == '"é✓"'.encode()
    assert orjson.loads(encode_value({"a": [1, 2.5]}) or b"") == {"a": [1, 2.5]}
    assert encode_value(None) is None


class FakeDB:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def write(self, batch: FakeBatch) -> None:
        for key, value in batch.operations:
            if value is None:
                self.delete(key)
            else:
                self.put(key, value)


class FakeBatch:
    """A RocksDB write batch: the operations, applied together by `FakeDB.write`."""

    def __init__(self) -> None:
        self.operations: list[tuple[bytes, bytes | None]] = []

    def put(self, key: bytes, value: bytes) -> None:
        self.operations.append((key, value))

    def delete(self, key: bytes) -> None:
        self.operations.append((key, None))


class FakeRocksDBStore:
    """Faust's RocksDB store as far as the engine uses it: a database per partition."""

    def __init__(self) -> None:
        self.dbs: dict[int, FakeDB] = {}
        self.persisted: dict[TP, int] = {}

    def _db_for_partition(self, partition: int) -> FakeDB:
        return self.dbs.setdefault(partition, FakeDB())

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset


def test_rocksdb_partitions_write_the_partition_database_and_the_changelog_offset() -> None:
    store = FakeRocksDBStore()
    partitions = RocksDBPartitions(store, "merged_requests-changelog", FakeBatch)
    store._db_for_partition(3).put(encode_key("old"), b"1")
    partitions.write(3, [("é", b'{"n":1}'), ("old", None)], 41)
    assert store.dbs[3].data == {encode_key("é"): b'{"n":1}'}
    assert store.persisted == {TP("merged_requests-changelog", 3): 41}
    assert partitions.get(3, "é") == {"n": 1}
    assert partitions.get(2, "é") is None  # another partition's database


def test_a_flush_through_rocksdb_records_the_changelog_offset_of_each_partition() -> None:
    store = FakeRocksDBStore()
    cache = WriteBackTable(
        "merged_requests",
        "merged_requests-changelog",
        RocksDBPartitions(store, "merged_requests-changelog", FakeBatch),
    )
    cache.set(0, "a", {"n": 1})
    cache.set(1, "b", {"n": 2})
    cache.take()
    cache.stored(cache.encoded(), {0: 10, 1: 20})
    assert store.persisted == {
        TP("merged_requests-changelog", 0): 10,
        TP("merged_requests-changelog", 1): 20,
    }
    assert cache.get(1, "b") == {"n": 2}


def test_a_flush_plan_sees_each_partitions_stored_values_from_before_the_flush() -> None:
    store = FakeRocksDBStore()
    store._db_for_partition(1).put(
        encode_key(clock_key(1)), orjson.dumps({"stream_ms": 5, "open": [[0, "w\x1fold\x1f1"]]})
    )
    cache = WriteBackTable(
        "stats_partials",
        "stats_partials-changelog",
        RocksDBPartitions(store, "stats_partials-changelog", FakeBatch),
        flush_plan=flush_records,
    )
    for partition in (0, 1):
        cache.set(partition, clock_key(partition), {"stream_ms": 50, "open": []})
    cache.take()
    encoded = cache.encoded()
    opening = {p: orjson.loads(items[0][1] or b"") for p, items in encoded.items()}
    assert opening == {
        0: {"stream_ms": None, "open": []},
        1: {"stream_ms": 5, "open": [[0, "w\x1fold\x1f1"]]},
    }
    assert [key for key, _ in encoded[1]] == [clock_key(1), clock_key(1)]  # the last one wins
    cache.stored(encoded, {0: 1, 1: 1})
    assert cache.get(1, clock_key(1)) == {"stream_ms": 50, "open": []}
    assert orjson.loads(store.dbs[1].data[encode_key(clock_key(1))]) == {
        "stream_ms": 50,
        "open": [],
    }


def test_a_flush_is_written_to_faust_s_rocksdb_store_in_one_batch_per_partition(
    rocksdb_store: RocksDBStore,
) -> None:
    # The real store (rocksdict, as Faust opens it): the batch Faust's own changelog
    # apply uses, read back through Faust's store.
    partitions = RocksDBPartitions(rocksdb_store, "merged_requests-changelog")
    partitions.write(1, [("a", b'{"n":1}'), ("b", b'{"n":2}')], 7)
    partitions.write(1, [("a", None), ("c", b'{"n":3}')], 9)
    assert partitions.get(1, "a") is None
    assert [partitions.get(1, key) for key in ("b", "c")] == [{"n": 2}, {"n": 3}]
    assert rocksdb_store.persisted_offset(TP("merged_requests-changelog", 1)) == 9
    assert rocksdb_store.use_rocksdict


def test_a_flush_that_ends_after_its_partition_was_revoked_leaves_nothing_of_it_cached() -> None:
    store = CountingStore({"a": "old"})
    cache = WriteBackTable("merged_requests", "merged_requests-changelog", store)
    cache.set(0, "a", "flushed here")
    cache.set(1, "b", "flushed here too")
    cache.take()
    encoded = cache.encoded()
    cache.drop([0])  # revoked while the flush waits for Kafka
    cache.stored(encoded, {0: 3, 1: 4})
    assert (0, "a") not in cache.clean
    assert cache.clean == {(1, "b"): "flushed here too"}
    # The partition's next owner changes it; once it is assigned here again, the value
    # is read from the store, which the changelog brought up to date.
    store.data["a"] = "changed elsewhere"
    assert cache.get(0, "a") == "changed elsewhere"
    # The next flush caches partition 0 again.
    cache.set(0, "a", "changed here")
    cache.take()
    cache.stored(cache.encoded(), {0: 9})
    assert cache.clean[(0, "a")] == "changed here"
