from __future__ import annotations

from datetime import UTC, datetime

from leadedge.tools.reindex import alias_actions, new_index_name
from leadedge.tools.topic_reader import fold_latest, partitions_left


def test_the_new_index_is_named_by_time_and_matches_the_template() -> None:
    name = new_index_name("leadedge-requests", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert name == "leadedge-requests-20260102030405"


def test_the_latest_value_per_key_wins_and_a_tombstone_removes_it() -> None:
    latest: dict[bytes, bytes | None] = {}
    count = fold_latest(
        latest,
        [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"b", None), (None, b"x"), (b"c", b"1")],
    )
    assert count == 6
    assert latest == {b"a": b"2", b"c": b"1"}


def test_the_alias_moves_in_one_request() -> None:
    assert alias_actions("a", ["a-000001", "a-0"], "a-2") == [
        {"remove": {"index": "a-0", "alias": "a", "must_exist": True}},
        {"remove": {"index": "a-000001", "alias": "a", "must_exist": True}},
        {"add": {"index": "a-2", "alias": "a", "is_write_index": True}},
    ]
    assert alias_actions("a", [], "a-2") == [
        {"add": {"index": "a-2", "alias": "a", "is_write_index": True}}
    ]


def test_reading_stops_at_the_captured_end_offsets() -> None:
    assert partitions_left({0: 5, 1: 2}, {0: 5, 1: 3, 2: 0}) == {1}
    assert partitions_left({}, {0: 0, 1: 1}) == {1}
