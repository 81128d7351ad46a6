"""Record batches the Kafka client cannot decode become marked placeholders, one per offset.

aiokafka raises when a fetched batch fails its CRC check or cannot be decompressed, and
the error is raised again at every fetch: the partition stops for good. Worse, records
of other partitions drained in the same call are dropped while their positions have
moved on, and records of the same partition read before the bad batch are skipped by
the next fetch. A worker must neither stop nor skip in silence.

So every batch of a fetch goes through `CheckedRecords`: a batch that fails its CRC, or
raises while its records are read, yields one placeholder per offset it holds (no key,
no value, the header `UNDECODABLE_HEADER` saying why), and the fetch goes on with the
next batch. The merge turns each placeholder into a dead letter (`undecodable_record`)
and the archive stores a line saying what the offset held, so every offset is accounted
for. A corrupt batch's header cannot be trusted: the next batch's base offset bounds it
when the same fetch holds one; otherwise it is accounted for one offset per fetch. Bytes
the client cannot even frame as a batch (a corrupt length) end the fetch with one
placeholder at the offset they start from, and are accounted for the same way.

Installed by replacing the name `PartitionRecords` in `aiokafka.consumer.fetcher`
(aiokafka 0.14, pinned; `tests/unit/leadedge/engine/test_undecodable.py` checks the
internals this relies on) for the input topic only: the worker installs it for
`requests`, which both the merge and the archive read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import aiokafka.consumer.fetcher as fetcher

log = logging.getLogger(__name__)

UNDECODABLE_HEADER = "leadedge.undecodable"


def undecodable_reason(headers: Any) -> str | None:
    """Why a consumed record is a placeholder (see module doc), or None for a real one."""
    for name, value in headers or ():
        if name == UNDECODABLE_HEADER:
            return bytes(value).decode("utf-8", "replace")
    return None


class Placeholder:
    """What aiokafka reads of a record, for one offset of a batch it cannot decode."""

    __slots__ = ("checksum", "headers", "key", "offset", "timestamp", "timestamp_type", "value")

    def __init__(self, offset: int, timestamp: int, reason: str) -> None:
        self.offset = offset
        self.timestamp = timestamp
        self.timestamp_type = 0
        self.key = None
        self.value = None
        self.checksum = None
        self.headers = [(UNDECODABLE_HEADER, reason.encode())]


class CheckedBatch:
    """A record batch whose undecodable records come out as placeholders."""

    def __init__(self, batch: Any, fetch_offset: int, end_offset: int | None) -> None:
        self._batch = batch
        # The offset the fetch asked for: the first one it must account for.
        self._fetch_offset = fetch_offset
        # The next batch's base offset, when the same fetch holds one.
        self._end_offset = end_offset
        self._crc_ok = batch.validate_crc()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __next__(self) -> Any:
        # aiokafka reads a transaction marker's record with `next(batch)`.
        return next(self._batch)

    def validate_crc(self) -> bool:
        """True: checked once in `__init__`, a corrupt batch is iterated as placeholders."""
        return True

    # A corrupt batch's attributes are not to be trusted: it is read as data.
    @property
    def is_control_batch(self) -> bool:
        """Kafka's transaction markers, skipped by the client; never a corrupt batch."""
        return self._crc_ok and bool(self._batch.is_control_batch)

    @property
    def is_transactional(self) -> bool:
        """Written in a transaction; a corrupt batch is read whatever it claims."""
        return self._crc_ok and bool(self._batch.is_transactional)

    @property
    def producer_id(self) -> int | None:
        """The producer that wrote the batch, when the batch can be trusted."""
        return self._batch.producer_id if self._crc_ok else None

    @property
    def next_offset(self) -> int:
        """The offset after the batch's last, bounded for a corrupt batch."""
        if self._crc_ok:
            return int(self._batch.next_offset)
        return self._corrupt_end()

    def _corrupt_end(self) -> int:
        # Its own header cannot be trusted: the next batch's base offset bounds it; with
        # none, one offset at a time (each next fetch starts one further), never a guess
        # that could skip records or run past the log's end.
        base = int(self._batch.base_offset)
        if self._end_offset is not None and self._end_offset > base:
            return self._end_offset
        return max(base, self._fetch_offset) + 1

    def __iter__(self) -> Iterator[Any]:
        batch = self._batch
        base = int(batch.base_offset)
        if not self._crc_ok:
            end = self._corrupt_end()
            reason = (
                f"record batch at offsets {base}..{end - 1} fails its CRC check: corrupt on "
                "disk or in transit"
            )
            yield from _placeholders(base, end, int(time.time() * 1000), reason)
            return
        next_offset = base
        try:
            for record in batch:
                next_offset = record.offset + 1
                yield record
        except Exception as exc:
            end = int(batch.next_offset)
            reason = (
                f"record batch at offsets {base}..{end - 1} cannot be decoded: "
                f"{type(exc).__name__}: {exc}"
            )
            yield from _placeholders(next_offset, end, int(batch.first_timestamp), reason)


class UnframedBatch:
    """Where the client cannot even find a batch's bounds: one offset, as a placeholder.

    The fetch ends there; the next one starts an offset further and meets the same bytes,
    so the batch is accounted for one offset per fetch, as a corrupt last batch is.
    """

    is_control_batch = False
    is_transactional = False
    producer_id = None

    def __init__(self, offset: int, reason: str) -> None:
        self.base_offset = offset
        self.next_offset = offset + 1
        self._reason = reason

    def validate_crc(self) -> bool:
        """Nothing to check: it is read as a placeholder."""
        return True

    def __iter__(self) -> Iterator[Placeholder]:
        return _placeholders(
            self.base_offset, self.next_offset, int(time.time() * 1000), self._reason
        )


def _placeholders(first: int, end: int, timestamp: int, reason: str) -> Iterator[Placeholder]:
    log.error("%s; offsets %d..%d become dead letters", reason, first, end - 1)
    for offset in range(first, end):
        yield Placeholder(offset, timestamp, reason)


class CheckedRecords:
    """A fetch response's batches (aiokafka's `MemoryRecords`), each a `CheckedBatch`."""

    def __init__(self, records: Any, fetch_offset: int) -> None:
        self._records = records
        self._fetch_offset = fetch_offset
        self._ahead: Any = None
        # The offset after the last batch given out, and whether framing failed.
        self._position = fetch_offset
        self._unframed = False

    def has_next(self) -> bool:
        """Whether a batch is left."""
        if self._unframed:
            return False
        return self._ahead is not None or bool(self._records.has_next())

    def size_in_bytes(self) -> int:
        """The fetch response's size."""
        return int(self._records.size_in_bytes())

    def _take(self) -> Any:
        if self._ahead is not None:
            batch, self._ahead = self._ahead, None
            return batch
        return self._records.next_batch() if self._records.has_next() else None

    def next_batch(self) -> Any:
        """The next batch, checked; None past the last."""
        if self._unframed:
            return None
        try:
            batch = self._take()
        except Exception as exc:
            # The bytes hold no batch the client can frame (a corrupt length): the rest of
            # this fetch cannot be read.
            self._unframed = True
            reason = f"no record batch can be read at offset {self._position}: {exc}"
            return UnframedBatch(self._position, reason)
        if batch is None:
            return None
        # The next batch, read ahead: its base offset bounds a corrupt one. One the client
        # cannot even frame raises again when it is asked for, after this batch is read.
        try:
            self._ahead = self._records.next_batch() if self._records.has_next() else None
        except Exception:
            self._ahead = None
        end = int(self._ahead.base_offset) if self._ahead is not None else None
        checked = CheckedBatch(batch, self._fetch_offset, end)
        self._position = max(self._position, checked.next_offset)
        return checked


# The topics read through `CheckedRecords`. Only input topics whose readers turn a
# placeholder into a dead letter: a placeholder in a changelog would read as a deletion.
CHECKED_TOPICS: set[str] = set()


class CheckedPartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's per-partition fetch result; a checked topic's batches via `CheckedRecords`."""

    def __init__(self, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        if tp.topic in CHECKED_TOPICS:
            fetch_offset = args[1] if len(args) > 1 else kwargs["fetch_offset"]
            records = CheckedRecords(records, fetch_offset)
        super().__init__(tp, records, *args, **kwargs)


def install(topics: set[str]) -> None:
    """Read `topics` through `CheckedRecords` in every aiokafka consumer of this process."""
    CHECKED_TOPICS.update(topics)
    fetcher.PartitionRecords = CheckedPartitionRecords
