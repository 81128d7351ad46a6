from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.rules.event_ids import SEGMENT, EventIds, json_default


def remembered(ids: list[str], limit: int) -> EventIds:
    version = EventIds.of([])
    for event_id in ids:
        version = version.remembering(event_id, limit)
    return version


@settings(max_examples=300)
@given(
    st.integers(min_value=1, max_value=3 * SEGMENT),
    st.lists(st.integers(min_value=0, max_value=400), max_size=300),
    st.integers(min_value=0, max_value=400),
)
def test_a_request_remembers_exactly_its_last_ids_in_order(
    limit: int, numbers: list[int], probe: int
) -> None:
    ids = [f"e{n}" for n in dict.fromkeys(numbers)]  # each id once, as the merge sends them
    version = remembered(ids, limit)
    expected = ids[-limit:]
    assert version == expected
    assert list(version) == expected and len(version) == len(expected)
    assert (f"e{probe}" in version) == (f"e{probe}" in expected)
    assert orjson.loads(orjson.dumps({"ids": version}, default=json_default)) == {"ids": expected}


@settings(max_examples=200)
@given(st.integers(min_value=1, max_value=80), st.integers(min_value=0, max_value=200))
def test_an_older_version_used_again_still_knows_only_its_own_ids(limit: int, count: int) -> None:
    ids = [f"e{n}" for n in range(count)]
    older = remembered(ids, limit)
    newer = older.remembering("new", limit)
    also = older.remembering("other", limit)
    assert "new" not in older and "other" not in older and "new" not in also
    assert "new" in newer and "other" in also
    assert older == ids[-limit:]
    assert newer == [*ids, "new"][-limit:] and also == [*ids, "other"][-limit:]


def test_ids_decoded_from_a_stored_list_work_as_those_kept_in_memory() -> None:
    stored = [f"e{n}" for n in range(100)]
    decoded = EventIds.of(stored)
    assert "e5" in decoded and "x" not in decoded
    after = decoded.remembering("x", 100).remembering("y", 100)
    assert after == [*stored[2:], "x", "y"] and "e1" not in after and "e2" in after
    assert stored == [f"e{n}" for n in range(100)]  # the stored list is not changed


def test_a_stored_list_holding_an_id_twice_is_still_answered_right() -> None:
    version = EventIds.of(["a", "b", "a", *(f"e{n}" for n in range(20))])
    version = version.remembering("c", 23).remembering("d", 23)
    assert version.as_list()[0] == "a" and "a" in version and "b" not in version
    version = version.remembering("f", 23)
    assert "a" not in version and "c" in version
