"""Undecodable record batches come out as one placeholder per offset, with aiokafka's own
fetch code (`PartitionRecords`, `MemoryRecords`, its record batches) around them."""

from __future__ import annotations

import inspect
import struct
from collections.abc import Iterator

import aiokafka.consumer.fetcher as fetcher
import pytest
from aiokafka import errors as Errors
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from leadedge.engine import undecodable
from leadedge.engine.undecodable import (
    UNDECODABLE_HEADER,
    CheckedPartitionRecords,
    undecodable_reason,
)

TP = TopicPartition("requests", 0)
CRC_AT = 17
ATTRIBUTES_AT = 21


def batch(first: int, count: int, *, codec: int = 0) -> bytearray:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta in range(count):
        offset = first + delta
        value = b'{"id":"r%d","n":%d}' % (offset, offset)
        key = b"r%d" % offset
        builder.append(delta, timestamp=1_000 + offset, key=key, value=value, headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, first)  # the broker assigns base offsets
    return data


def reseal(data: bytearray) -> bytearray:
    """A batch whose CRC matches its (changed) bytes."""
    struct.pack_into(">I", data, CRC_AT, calc_crc32c(bytes(data[ATTRIBUTES_AT:])))
    return data


@pytest.fixture(autouse=True)
def _checked_topic() -> Iterator[None]:
    undecodable.CHECKED_TOPICS.add(TP.topic)
    yield
    undecodable.CHECKED_TOPICS.discard(TP.topic)


Consumed = list[tuple[int, bytes | None, str | None]]


def consumed(*batches: bytearray, fetch_offset: int = 0) -> Consumed:
    records = fetcher.MemoryRecords(b"".join(bytes(b) for b in batches))
    partition = CheckedPartitionRecords(TP, records, None, fetch_offset, None, None, True, 0)
    return [(r.offset, r.value, undecodable_reason(r.headers)) for r in partition]


def test_a_batch_failing_its_crc_becomes_one_placeholder_per_offset_and_the_fetch_goes_on() -> None:
    corrupt = batch(3, 3)
    corrupt[-3] ^= 0xFF  # a byte of the last record's value
    out = consumed(batch(0, 3), corrupt, batch(6, 3))
    assert [offset for offset, _, _ in out] == list(range(9))
    good = [(value, why) for offset, value, why in out if offset not in (3, 4, 5)]
    assert all(value is not None and why is None for value, why in good)
    for _, value, why in out[3:6]:
        assert value is None and why is not None
        assert "offsets 3..5" in why and "CRC" in why


def test_a_corrupt_batch_whose_header_lies_about_its_length_is_bounded_by_the_next_batch() -> None:
    corrupt = batch(3, 3)
    struct.pack_into(">i", corrupt, 23, 1_000_000)  # last offset delta, under the CRC
    out = consumed(batch(0, 3), corrupt, batch(6, 3))
    assert [offset for offset, _, _ in out] == list(range(9))
    assert [why is not None for _, _, why in out] == [False] * 3 + [True] * 3 + [False] * 3


def test_a_batch_that_cannot_be_decompressed_becomes_placeholders_from_where_it_failed() -> None:
    gzipped = batch(3, 3, codec=1)
    gzipped[-12:-8] = b"\xde\xad\xbe\xef"  # inside the compressed records
    out = consumed(batch(0, 3), reseal(gzipped), batch(6, 3))
    assert [offset for offset, _, _ in out] == list(range(9))
    reasons = [why for _, _, why in out[3:6]]
    assert all(why is not None and "cannot be decoded" in why for why in reasons)


def test_a_refetch_from_inside_a_corrupt_batch_yields_only_the_offsets_asked_for() -> None:
    corrupt = batch(3, 3)
    corrupt[-3] ^= 0xFF
    out = consumed(corrupt, batch(6, 2), fetch_offset=4)
    assert [offset for offset, _, _ in out] == [4, 5, 6, 7]


def test_good_batches_come_out_unchanged() -> None:
    out = consumed(batch(0, 2), batch(2, 2, codec=1))
    assert out == [(n, b'{"id":"r%d","n":%d}' % (n, n), None) for n in range(4)]


def test_install_replaces_the_class_aiokafkas_fetcher_builds_per_partition() -> None:
    # The internals this relies on: the fetcher builds `PartitionRecords` by its module
    # name, and a placeholder has every attribute its record conversion reads.
    assert "PartitionRecords(" in inspect.getsource(fetcher.Fetcher._proc_fetch_request)
    read = inspect.getsource(fetcher.PartitionRecords._consumer_record)
    for name in ("offset", "timestamp", "timestamp_type", "key", "value", "checksum", "headers"):
        assert f"record.{name}" in read
    original = fetcher.PartitionRecords
    try:
        undecodable.install({"requests"})
        assert fetcher.PartitionRecords is CheckedPartitionRecords
    finally:
        fetcher.PartitionRecords = original
        undecodable.CHECKED_TOPICS.discard("requests")


def test_a_topic_not_checked_raises_as_aiokafka_does() -> None:
    # A changelog's placeholder would read as a deletion: only input topics are checked.
    corrupt = batch(0, 2)
    corrupt[-3] ^= 0xFF
    records = fetcher.MemoryRecords(bytes(corrupt))
    other = TopicPartition("leadedge-merged-changelog", 0)
    partition = CheckedPartitionRecords(other, records, None, 0, None, None, True, 0)
    with pytest.raises(Errors.CorruptRecordException):
        list(partition)


def test_a_real_records_headers_are_not_taken_for_a_placeholder() -> None:
    assert undecodable_reason([("other", b"x")]) is None
    assert undecodable_reason([(UNDECODABLE_HEADER, b"why")]) == "why"


def test_a_corrupt_last_batch_is_accounted_for_one_offset_per_fetch_never_past_its_end() -> None:
    corrupt = batch(3, 3)
    corrupt[-3] ^= 0xFF
    struct.pack_into(">i", corrupt, 23, 1_000_000)  # its claimed length cannot be trusted
    out = consumed(batch(0, 3), corrupt)
    assert [(offset, why is not None) for offset, _, why in out] == [
        (0, False),
        (1, False),
        (2, False),
        (3, True),
    ]
    # Each next fetch starts one further and answers the same batch: one more offset each.
    for offset in (4, 5):
        assert [o for o, _, _ in consumed(corrupt, fetch_offset=offset)] == [offset]


def test_bytes_the_client_cannot_frame_as_a_batch_are_accounted_for_one_offset_per_fetch() -> None:
    unframed = batch(3, 3)
    struct.pack_into(">i", unframed, 8, 5)  # a batch length under any batch's header
    out = consumed(batch(0, 3), unframed, batch(6, 2))
    assert [(offset, why is not None) for offset, _, why in out] == [
        (0, False),
        (1, False),
        (2, False),
        (3, True),
    ]
    assert "no record batch can be read at offset 3" in str(out[3][2])
    # The next fetch starts one further and meets the same bytes: one more offset each.
    for offset in (4, 5):
        assert [(o, why is not None) for o, _, why in consumed(unframed, fetch_offset=offset)] == [
            (offset, True)
        ]
