from __future__ import annotations

from leadedge import metrics
from leadedge.engine.dead_letters import (
    HEADER_PREFIX,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    dead_letter,
    dead_letter_record,
)
from leadedge.rules.models import Rejection, SourceRecord


def record(value: bytes) -> SourceRecord:
    return SourceRecord("requests", 3, 41, 1_700_000_000_000, b"abc", value)


def test_a_dead_letter_keeps_the_original_bytes_and_says_why_and_where_from() -> None:
    key, value, headers = dead_letter(record(b'{"id":"abc"'), Rejection("not_json", "bad"), 0)
    assert (key, value) == (b"abc", b'{"id":"abc"')
    found = dict(headers)
    assert found[HEADER_PREFIX + "reason"] == b"not_json"
    assert (found[HEADER_PREFIX + "partition"], found[HEADER_PREFIX + "offset"]) == (b"3", b"41")
    assert HEADER_PREFIX + "truncated" not in found


def test_a_dead_letter_too_large_to_produce_is_cut_with_its_size_never_dropped() -> None:
    huge = b"x" * (2 * 1024 * 1024)
    long_detail = "d" * 100_000
    _, value, headers = dead_letter(record(huge), Rejection("too_large", long_detail), 0)
    found = dict(headers)
    assert value == huge[:MAX_VALUE_BYTES]
    assert found[HEADER_PREFIX + "truncated"] == str(len(huge)).encode()
    assert len(found[HEADER_PREFIX + "detail"]) <= 2000
    assert len(value) + sum(len(k) + len(v) for k, v in headers) < 1024 * 1024 - 1024


def test_a_dead_letter_whose_key_is_too_large_to_produce_is_cut_with_its_size() -> None:
    # A key near 1 MiB passes the broker compressed; the dead letter is produced
    # uncompressed with its headers, and must still fit.
    huge_key, huge_value = b"k" * (1024 * 1024), b"v" * (1024 * 1024)
    source = SourceRecord("requests", 0, 7, 0, huge_key, huge_value)
    key, value, headers = dead_letter(source, Rejection("key_mismatch", "x"), 0)
    found = dict(headers)
    assert key == huge_key[:MAX_KEY_BYTES]
    assert found[HEADER_PREFIX + "key_truncated"] == str(len(huge_key)).encode()
    assert found[HEADER_PREFIX + "truncated"] == str(len(huge_value)).encode()
    assert len(key) + len(value) + sum(len(k) + len(v) for k, v in headers) < 1024 * 1024 - 1024


def test_a_dead_letter_record_goes_to_the_dead_letter_topic_counted_by_its_reason() -> None:
    counted = ("leadedge_dead_letters_total", {"reason": "not_json"})
    before = metrics.registry.get_sample_value(*counted) or 0
    out = dead_letter_record("requests-dlq", record(b"{"), Rejection("not_json", "bad"), 0)
    assert (out.topic, out.partition, out.key, out.value) == ("requests-dlq", None, b"abc", b"{")
    assert dict(out.headers)[HEADER_PREFIX + "reason"] == b"not_json"
    assert metrics.registry.get_sample_value(*counted) == before + 1
