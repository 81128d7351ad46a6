"""The write-back cache: reads see every change at once, the store only flushed ones."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from faust.types import TP

from leadedge.engine.write_back import (
    MemoryPartitions,
    RocksDBPartitions,
    WriteBackTable,
    encode_key,
    encode_value,
)
from leadedge.stats_state import clock_key, flush_rank, partial_key, shape_key


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


def test_the_partials_table_flushes_deletions_then_clocks_then_partials_then_shapes() -> None:
    cache = table(flush_order=flush_rank)
    cache.set(0, shape_key("r1"), {"n": 1})
    cache.set(0, partial_key("default|web|1", 0), {"events": 1})
    cache.set(0, clock_key(0), {"stream_ms": 1, "open": []})
    cache.delete(0, partial_key("default|web|0", 0))
    cache.set(0, shape_key("r0"), {"n": 1})
    cache.take()
    keys = [key[:1] if raw is not None else "deleted" for key, raw in cache.encoded()[0]]
    assert keys == ["deleted", "c", "w", "r", "r"]


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
    partitions = RocksDBPartitions(store, "merged_requests-changelog")
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
        RocksDBPartitions(store, "merged_requests-changelog"),
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
