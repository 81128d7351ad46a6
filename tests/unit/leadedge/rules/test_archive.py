from __future__ import annotations

import gzip
from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from leadedge.rules.archive import LATEST_MS, PartitionBuffer, archive_line, hour_of, object_key
from leadedge.rules.models import SourceRecord


def record(value: bytes | None, key: bytes | None = b"k", offset: int = 7) -> SourceRecord:
    return SourceRecord("requests", 3, offset, 1_700_000_000_123, key, value)


def test_a_json_event_is_archived_as_its_object() -> None:
    line = orjson.loads(archive_line(record(b'{"id":"k","clicks":"+1"}')))
    assert line == {
        "topic": "requests",
        "partition": 3,
        "offset": 7,
        "timestamp": 1_700_000_000_123,
        "key": "k",
        "value": {"id": "k", "clicks": "+1"},
    }


def test_text_that_is_not_json_is_archived_raw() -> None:
    line = orjson.loads(archive_line(record(b"not json")))
    assert line["raw"] == "not json"
    assert "value" not in line


def test_bytes_that_are_not_utf8_are_archived_base64() -> None:
    line = orjson.loads(archive_line(record(b"\xff\x00", key=b"\xfe")))
    assert line["raw_b64"] == "/wA="
    assert line["key_b64"] == "/g=="


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_every_timestamp_is_filed_under_its_utc_hour(timestamp_ms: int) -> None:
    clamped = min(max(timestamp_ms, 0), LATEST_MS)
    moment = datetime.fromtimestamp(clamped / 1000, tz=UTC)
    assert hour_of(timestamp_ms) == (moment.strftime("%Y-%m-%d"), moment.strftime("%H"))


def test_the_last_and_first_millisecond_of_an_hour_share_its_partition() -> None:
    hour_start = 1_700_002_800_000  # 2023-11-14T23:00:00.000Z
    assert hour_of(hour_start - 1) == ("2023-11-14", "22")
    assert hour_of(hour_start) == hour_of(hour_start + 3_599_999) == ("2023-11-14", "23")
    assert hour_of(hour_start + 3_600_000) == ("2023-11-15", "00")


def test_object_names_follow_design_layout() -> None:
    assert hour_of(1_700_000_000_123) == ("2023-11-14", "22")
    # Any 64-bit timestamp has a place: none stops the archive.
    assert hour_of(2**63 - 1) == ("9999-12-31", "23")
    assert hour_of(-(2**63)) == ("1970-01-01", "00")
    assert (
        object_key("raw", "requests", 3, 42, ("2023-11-14", "22"))
        == "raw/topic=requests/dt=2023-11-14/hour=22/requests+3+00000000000000000042.ndjson.gz"
    )


def test_a_buffer_body_is_gzip_ndjson_of_its_records() -> None:
    buffer = PartitionBuffer("requests", 3, ("2023-11-14", "22"), 7, 0.0)
    buffer.add(record(b'{"id":"k"}', offset=7))
    buffer.add(record(b'{"id":"k"}', offset=8))
    lines = gzip.decompress(buffer.body()).splitlines()
    assert [orjson.loads(x)["offset"] for x in lines] == [7, 8]
    assert buffer.last_offset == 8
    assert buffer.key("raw").endswith("requests+3+00000000000000000007.ndjson.gz")


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=10,
    )
)
def test_any_json_value_is_archived_as_the_value_it_parses_to(value: object) -> None:
    sent = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    line = orjson.loads(archive_line(record(sent)))
    assert line["value"] == orjson.loads(sent)
