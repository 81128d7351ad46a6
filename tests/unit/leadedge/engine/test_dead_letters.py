from __future__ import annotations

from leadedge.engine.dead_letters import HEADER_PREFIX, MAX_VALUE_BYTES, dead_letter
from leadedge.rules.models import Rejection, SourceRecord


def record(value: bytes) -> SourceRecord:
    return SourceRecord("requests", 3, 41, 1_700_000_000_000, b"abc", value)


def test_a_dead_letter_keeps_the_original_bytes_and_says_why_and_where_from() -> None:
    value, headers = dead_letter(record(b'{"id":"abc"'), Rejection("not_json", "bad"), 0)
    assert value == b'{"id":"abc"'
    found = dict(headers)
    assert found[HEADER_PREFIX + "reason"] == b"not_json"
    assert (found[HEADER_PREFIX + "partition"], found[HEADER_PREFIX + "offset"]) == (b"3", b"41")
    assert HEADER_PREFIX + "truncated" not in found


def test_a_dead_letter_too_large_to_produce_is_cut_with_its_size_never_dropped() -> None:
    huge = b"x" * (2 * 1024 * 1024)
    long_detail = "d" * 100_000
    value, headers = dead_letter(record(huge), Rejection("too_large", long_detail), 0)
    found = dict(headers)
    assert value == huge[:MAX_VALUE_BYTES]
    assert found[HEADER_PREFIX + "truncated"] == str(len(huge)).encode()
    assert len(found[HEADER_PREFIX + "detail"]) <= 2000
    assert len(value) + sum(len(k) + len(v) for k, v in headers) < 1024 * 1024 - 1024
