from __future__ import annotations

import gzip

import orjson
import pytest

from leadedge.rules.archive import archive_line, object_key
from leadedge.rules.models import SourceRecord
from leadedge.tools.replay import (
    ArchivedRecord,
    hour_prefix,
    hours_overlapping,
    object_position,
    parse_time,
    range_prefixes,
    record_from_line,
    records_in_range,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000


def line_of(value: bytes | None, key: bytes | None = b"abc", offset: int = 5) -> dict:
    record = SourceRecord("requests", 2, offset, T0 + 123, key, value)
    return orjson.loads(archive_line(record))


def test_times_are_rfc3339_or_epoch_milliseconds() -> None:
    assert parse_time("1767225600000") == T0
    assert parse_time("2026-01-01T00:00:00Z") == T0
    assert parse_time("2026-01-01T01:00:00.123+01:00") == T0 + 123
    assert parse_time("2026-01-01T00:00:00.999999Z") == T0 + 999
    # Without an offset, UTC.
    assert parse_time("2026-01-01T02:30:00") == T0 + 2 * HOUR + 30 * 60_000
    assert parse_time("2026-01-01") == T0
    with pytest.raises(ValueError, match="neither an RFC 3339 time nor epoch"):
        parse_time("yesterday")


def test_only_the_hours_overlapping_the_range_are_listed() -> None:
    # Inclusive start, exclusive end: a range ending on the hour leaves that hour out.
    assert hours_overlapping(T0, T0 + HOUR) == [("2026-01-01", "00")]
    assert hours_overlapping(T0 + HOUR - 1, T0 + HOUR + 1) == [
        ("2026-01-01", "00"),
        ("2026-01-01", "01"),
    ]
    assert hours_overlapping(T0 - 1, T0) == [("2025-12-31", "23")]
    assert hours_overlapping(T0, T0) == []
    assert hours_overlapping(T0, T0 - 5) == []
    assert len(hours_overlapping(T0, T0 + 48 * HOUR)) == 48


def test_prefixes_match_the_archive_object_names() -> None:
    key = object_key("raw", "requests", 3, 42, ("2026-01-01", "07"))
    prefix = hour_prefix("raw", "requests", ("2026-01-01", "07"))
    assert prefix == "raw/topic=requests/dt=2026-01-01/hour=07/"
    assert key.startswith(prefix)
    assert hour_prefix("/a/b/", "t", ("2026-01-01", "00")) == "a/b/topic=t/dt=2026-01-01/hour=00/"
    assert hour_prefix("", "t", ("2026-01-01", "00")) == "topic=t/dt=2026-01-01/hour=00/"
    assert range_prefixes("raw", "requests", T0 + 30 * 60_000, T0 + 90 * 60_000) == [
        "raw/topic=requests/dt=2026-01-01/hour=00/",
        "raw/topic=requests/dt=2026-01-01/hour=01/",
    ]


def test_object_names_give_partition_and_first_offset() -> None:
    assert object_position(object_key("raw", "t-1.x", 3, 42, ("2026-01-01", "07"))) == (3, 42)
    assert object_position("raw/topic=t/dt=2026-01-01/hour=07/notes.txt") is None
    assert object_position("raw/topic=t/dt=2026-01-01/hour=07/t+x+1.ndjson.gz") is None


def test_a_json_event_comes_back_as_its_json_with_key_and_timestamp() -> None:
    value = b'{"id":"abc","clicks":"+1","price":2.45,"nested":{"a":[1,null]}}'
    record = record_from_line(line_of(value))
    # The record timestamp travels as the event's `ts`: replayed records are produced
    # with the current time, so retention cannot delete them before they are read.
    with_ts = value[:-1] + b',"ts":' + str(T0 + 123).encode() + b"}"
    assert record == ArchivedRecord(2, 5, T0 + 123, b"abc", with_ts)
    own = b'{"id":"abc","ts":"2020-01-01T00:00:00Z"}'
    assert record_from_line(line_of(own)).value == own


def test_json_is_reserialized_not_byte_for_byte() -> None:
    record = record_from_line(line_of(b'{ "id": "abc", "uptick": 4.50, "ts": 5 }'))
    assert record.value == b'{"id":"abc","uptick":4.5,"ts":5}'


def test_json_that_is_not_an_object_and_json_null_come_back() -> None:
    assert record_from_line(line_of(b"[1,2]")).value == b"[1,2]"
    assert record_from_line(line_of(b"null")).value == b"null"


def test_raw_and_binary_values_and_keys_come_back_as_their_bytes() -> None:
    assert record_from_line(line_of(b"{not json")).value == b"{not json"
    assert record_from_line(line_of(b"")).value == b""
    binary = record_from_line(line_of(b"\xff\x00{", key=b"\xfe\x01"))
    assert (binary.key, binary.value) == (b"\xfe\x01", b"\xff\x00{")
    assert record_from_line(line_of(b"{}", key=None)).key is None


def test_a_line_that_is_no_archive_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="not an archive line"):
        record_from_line({"partition": 0, "offset": 1, "timestamp": 2, "key": "k"})
    with pytest.raises(ValueError, match="not an archive line"):
        record_from_line({"offset": 1, "timestamp": 2, "key": "k", "value": {}})


def test_an_object_yields_its_lines_in_range_in_offset_order() -> None:
    lines = [
        archive_line(SourceRecord("requests", 1, offset, ts, b"k", b'{"id":"k"}'))
        for offset, ts in [(12, T0 + 10), (10, T0), (11, T0 + 5), (13, T0 + 20)]
    ]
    body = gzip.compress(b"".join(lines))
    records, count = records_in_range(body, T0, T0 + 20)
    assert count == 4
    assert [(r.offset, r.timestamp_ms) for r in records] == [(10, T0), (11, T0 + 5), (12, T0 + 10)]


def test_an_offset_archived_as_undecodable_comes_back_without_a_value() -> None:
    record = SourceRecord("requests", 2, 9, T0, None, None, undecodable="fails its CRC check")
    line = orjson.loads(archive_line(record))
    assert line["undecodable"] == "fails its CRC check" and "value" not in line
    back = record_from_line(line)
    assert (back.offset, back.key, back.value) == (9, None, None)
