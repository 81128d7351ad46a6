from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.rules.event_ids import EventIds, json_default, pack

# Ids made of the characters the packing escapes, and others, so collisions would show.
IDS = st.text(alphabet="ab%|7C5", max_size=6)


def remembered(ids: list[str], limit: int) -> EventIds:
    version = EventIds.of([])
    for event_id in ids:
        version = version.remembering(event_id, limit)
    return version


@settings(max_examples=300)
@given(st.integers(min_value=1, max_value=60), st.lists(IDS, max_size=120), IDS)
def test_a_request_remembers_exactly_its_last_ids_in_order(
    limit: int, sent: list[str], probe: str
) -> None:
    ids = list(dict.fromkeys(sent))  # each id once, as the merge sends them
    version = remembered(ids, limit)
    expected = ids[-limit:]
    assert version == expected
    assert list(version) == expected and len(version) == len(expected)
    assert (probe in version) == (probe in expected)
    stored = orjson.loads(orjson.dumps({"ids": version}, default=json_default))["ids"]
    assert EventIds.of(stored) == expected and len(EventIds.of(stored)) == len(expected)


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
    # States written before the ids were packed hold them as a JSON list.
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


def test_an_id_is_found_only_whole_whatever_characters_it_holds() -> None:
    version = remembered(["a|b", "%7C", "", "ab", "a%b"], 10)
    assert version.packed == "|a%7Cb|%257C||ab|a%25b|"
    for present in ("a|b", "%7C", "", "ab", "a%b"):
        assert present in version
    for absent in ("a", "b", "|", "a%7Cb", "%", "7C", "a|", "|b", "a%25b"):
        assert absent not in version
    assert version.as_list() == ["a|b", "%7C", "", "ab", "a%b"]


def test_an_empty_memory_packs_to_one_separator_and_holds_nothing() -> None:
    assert pack([]) == "|" and len(EventIds.of("|")) == 0 and EventIds.of("|").as_list() == []
    assert "" not in EventIds.of([]) and "" in EventIds.of([""])
    assert EventIds.of([""]).packed == "||" and len(EventIds.of([""])) == 1
