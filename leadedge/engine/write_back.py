"""A write-back cache in front of a Faust table, flushed in batches.

Faust writes a table update to the local store at once and sends its changelog record
with a future per write. Here a changed value stays in a per-partition cache until the
next flush; the flush sends each changed key's changelog record once, and only once Kafka
has acknowledged them writes the local store and the changelog offset it has reached.
The local store therefore never holds a value its changelog lacks.

Reads look in the cache being filled, then in the one being flushed, then in the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import orjson
from faust.types import TP

# A deleted key in a cache: its changelog record is a tombstone.
DELETED: Any = None


class PartitionedStore(Protocol):
    """What the engine needs of a table's local store, partition by partition."""

    def get(self, partition: int, key: str) -> Any:
        """The stored value of `key`, or None."""
        ...

    def write(
        self, partition: int, items: Iterable[tuple[str, bytes | None]], changelog_offset: int
    ) -> None:
        """Store encoded values (None deletes) that the changelog holds up to `changelog_offset`."""
        ...


def encode_key(key: str) -> bytes:
    """A table key as Faust's JSON serializer writes it (a contract test checks they agree)."""
    return orjson.dumps(key)


def encode_value(value: Any) -> bytes | None:
    """A table value as its changelog record and store hold it; None is a tombstone."""
    return None if value is None else orjson.dumps(value)


class RocksDBPartitions:
    """Faust's RocksDB store, one database per partition, addressed directly.

    Faust's own `get`/`set` find the partition from the event being processed; the
    engine knows it, so it reads and writes the partition's database itself.
    """

    def __init__(self, store: Any, changelog_topic: str) -> None:
        self.store = store
        self.changelog_topic = changelog_topic

    def get(self, partition: int, key: str) -> Any:
        """The stored value of `key` in `partition`'s database, or None."""
        raw = self.store._db_for_partition(partition).get(encode_key(key))
        return None if raw is None else orjson.loads(raw)

    def write(
        self, partition: int, items: Iterable[tuple[str, bytes | None]], changelog_offset: int
    ) -> None:
        """Write a flush's values and the changelog offset recovery resumes after."""
        db = self.store._db_for_partition(partition)
        for key, raw in items:
            if raw is None:
                db.delete(encode_key(key))
            else:
                db.put(encode_key(key), raw)
        self.store.set_persisted_offset(TP(self.changelog_topic, partition), changelog_offset)


class MemoryPartitions:
    """Faust's in-memory store (a dict of decoded keys), for `memory://` and tests."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def get(self, partition: int, key: str) -> Any:
        """The stored value of `key`, or None (one dict for every partition)."""
        return self.data.get(key)

    def write(
        self, partition: int, items: Iterable[tuple[str, bytes | None]], changelog_offset: int
    ) -> None:
        """Write a flush's values (an in-memory store keeps no changelog offset)."""
        for key, raw in items:
            if raw is None:
                self.data.pop(key, None)
            else:
                self.data[key] = orjson.loads(raw)


class WriteBackTable:
    """Changed values of one table, per partition, until the flush that stores them."""

    def __init__(
        self,
        name: str,
        changelog_topic: str,
        store: PartitionedStore,
        flush_order: Callable[[tuple[str, Any]], Any] | None = None,
    ) -> None:
        self.name = name
        # Sorts a partition's (key, value) changes before they are sent: a crash keeps a
        # prefix of one flush's changelog records, so where keys must agree, order them.
        self.flush_order = flush_order
        self.changelog_topic = changelog_topic
        self.store = store
        self.dirty: dict[int, dict[str, Any]] = {}
        self.flushing: dict[int, dict[str, Any]] = {}

    def get(self, partition: int, key: str) -> Any:
        """The newest value of `key`: changed since the last flush, being flushed, or stored."""
        changed = self.dirty.get(partition)
        if changed is not None and key in changed:
            return changed[key]
        flushing = self.flushing.get(partition)
        if flushing is not None and key in flushing:
            return flushing[key]
        return self.store.get(partition, key)

    def flushed_value(self, partition: int, key: str) -> Any:
        """The value of `key` as the flush under way writes it (or as stored)."""
        flushing = self.flushing.get(partition)
        if flushing is not None and key in flushing:
            return flushing[key]
        return self.store.get(partition, key)

    def set(self, partition: int, key: str, value: Any) -> None:
        """Change `key` in `partition`; None deletes it."""
        changed = self.dirty.get(partition)
        if changed is None:
            changed = self.dirty[partition] = {}
        changed[key] = value

    def delete(self, partition: int, key: str) -> None:
        """Delete `key` at the next flush."""
        self.set(partition, key, DELETED)

    def __len__(self) -> int:
        return sum(len(changed) for changed in self.dirty.values())

    def take(self) -> Mapping[int, Mapping[str, Any]]:
        """Start a flush: what changed moves to the flushing cache, which stays readable."""
        if self.flushing:
            msg = f"table {self.name}: a flush is already in progress"
            raise RuntimeError(msg)
        self.flushing, self.dirty = self.dirty, {}
        return self.flushing

    def encoded(self) -> dict[int, list[tuple[str, bytes | None]]]:
        """The values being flushed, encoded once for the changelog and the store."""
        order = self.flush_order
        return {
            partition: [
                (key, encode_value(value))
                for key, value in (sorted(changed.items(), key=order) if order else changed.items())
            ]
            for partition, changed in self.flushing.items()
        }

    def stored(
        self,
        encoded: Mapping[int, list[tuple[str, bytes | None]]],
        offsets: Mapping[int, int],
    ) -> None:
        """End a flush whose changelog records Kafka acknowledged: write the local store.

        `offsets` holds, per partition, a changelog offset at or before the flush's last
        record: recovery reads on from there, and reading a record twice is harmless.
        """
        for partition, items in encoded.items():
            self.store.write(partition, items, offsets[partition])
        self.flushing = {}

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget unflushed changes of revoked partitions: their records are read again."""
        for partition in partitions:
            self.dirty.pop(partition, None)
