from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.rules.history import OPEN, SEQUENCE, SIZE, append
from leadedge.rules.merge import (
    BOOKKEEPING,
    Applied,
    Duplicate,
    MergeRules,
    encode_state,
    format_time,
    merge_event,
    merged_request,
)
from leadedge.rules.models import Event, Rejection

RULES = MergeRules()


def event(fields: dict[str, Any], ts_ms: int = 1_700_000_000_000, **extra: Any) -> Event:
    return Event(
        id="r1",
        project=extra.get("project", "default"),
        ts_ms=ts_ms,
        event_id=extra.get("event_id"),
        fields=fields,
    )


def merge_all(*events: Event, rules: MergeRules = RULES) -> dict[str, Any]:
    state = None
    for offset, ev in enumerate(events):
        outcome = merge_event(state, ev, rules, (0, offset))
        assert isinstance(outcome, Applied), outcome
        state = outcome.state
    assert state is not None
    return state


def test_design_example_merges_to_the_documented_request() -> None:
    state = merge_all(
        event(
            {
                "source": 2,
                "domain": "somewhere.net",
                "clicks": "+1",
                "impressions": "+5",
                "price": 2.45,
            }
        ),
        event({"clicks": "+3", "impressions": "+2"}),
        event({"impressions": "+2", "uptick": 4.50}),
    )
    request = merged_request(state)
    assert request["clicks"] == 4
    assert request["impressions"] == 9
    assert request["price"] == 2.45
    assert request["uptick"] == 4.5
    assert request["source"] == 2
    assert request["domain"] == "somewhere.net"
    assert request["event_count"] == 3
    assert not any(name.startswith("_") for name in request)


def test_integer_increments_stay_integers() -> None:
    state = merge_all(event({"clicks": "+1"}), event({"clicks": "+41"}), event({"clicks": "-2"}))
    assert state["clicks"] == 40
    assert isinstance(state["clicks"], int)


def test_ten_tenths_make_exactly_one() -> None:
    state = merge_all(*[event({"v": "+0.1"}) for _ in range(10)])
    assert state["v"] == 1.0


def test_increment_forms_from_design_are_recognised() -> None:
    state = merge_all(event({"a": "+.5", "b": "-5.", "c": "+0.25"}))
    assert (state["a"], state["b"], state["c"]) == (0.5, -5.0, 0.25)


def test_non_increment_strings_set_the_field() -> None:
    state = merge_all(event({"a": "+", "b": "1", "c": "+1e3", "d": " +1"}))
    assert state == state | {"a": "+", "b": "1", "c": "+1e3", "d": " +1"}


def test_null_removes_a_field() -> None:
    state = merge_all(event({"a": 1, "b": 2}), event({"a": None}))
    assert "a" not in state
    assert state["b"] == 2


def test_sets_replace_numbers_booleans_strings_and_arrays() -> None:
    state = merge_all(
        event({"a": 1, "b": True, "c": "x", "d": [1]}),
        event({"a": 2, "b": False, "c": "y", "d": [2, 3]}),
    )
    assert (state["a"], state["b"], state["c"], state["d"]) == (2, False, "y", [2, 3])


def test_objects_merge_recursively_by_the_same_rules() -> None:
    state = merge_all(
        event({"o": {"n": "+1", "keep": 1, "drop": 2}}), event({"o": {"n": "+2", "drop": None}})
    )
    assert state["o"] == {"n": 3, "keep": 1}


def test_increment_on_a_string_rejects_the_whole_event() -> None:
    before = merge_all(event({"a": "text", "b": 1}))
    outcome = merge_event(before, event({"b": "+1", "a": "+1"}), RULES, (0, 9))
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "type_conflict"
    assert "'a'" in outcome.detail
    assert before["b"] == 1  # nothing of the event was applied


def test_object_onto_a_scalar_is_a_type_conflict() -> None:
    before = merge_all(event({"a": 1}))
    outcome = merge_event(before, event({"a": {"x": 1}}), RULES, (0, 9))
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "type_conflict"


def test_a_sum_beyond_64_bits_or_a_huge_increment_rejects_the_whole_event() -> None:
    before = merge_all(event({"n": "+9223372036854775000", "m": 1.5}))
    assert orjson.loads(encode_state(before))["n"] == 9223372036854775000
    for fields in (
        {"n": "+1000"},
        {"n": "-99999999999999999999"},
        {"x": "+" + "9" * 5000},
        {"m": "+" + "9" * 400 + ".5"},
    ):
        outcome = merge_event(before, event(fields), RULES, (0, 9))
        assert isinstance(outcome, Rejection), fields
        assert outcome.reason == "out_of_range", outcome
    assert merge_all(event({"n": "+9223372036854775807"}))["n"] == 2**63 - 1
    assert merge_all(event({"n": "-9223372036854775808"}))["n"] == -(2**63)


def test_counter_allowlist_makes_other_increments_plain_strings() -> None:
    rules = MergeRules(counter_fields=frozenset({"clicks"}))
    state = merge_all(event({"clicks": "+1", "note": "+1"}), rules=rules)
    assert state["clicks"] == 1
    assert state["note"] == "+1"


def test_times_and_count_track_earliest_latest_and_applied_events() -> None:
    state = merge_all(event({}, ts_ms=2_000), event({}, ts_ms=1_000), event({}, ts_ms=3_000))
    request = merged_request(state)
    assert request["created_at"] == "1970-01-01T00:00:01.000Z"
    assert request["updated_at"] == "1970-01-01T00:00:03.000Z"
    assert request["event_count"] == 3


def test_a_redelivered_offset_changes_nothing() -> None:
    state = merge_all(event({"clicks": "+1"}))
    assert isinstance(merge_event(state, event({"clicks": "+1"}), RULES, (0, 0)), Duplicate)


def test_a_repeated_event_id_counts_once() -> None:
    state = merge_all(event({"clicks": "+1"}, event_id="e1"))
    assert isinstance(
        merge_event(state, event({"clicks": "+1"}, event_id="e1"), RULES, (0, 5)), Duplicate
    )


def test_the_last_max_event_ids_are_remembered_in_order() -> None:
    rules = MergeRules(max_event_ids=20)
    state = merge_all(*(event({}, event_id=f"e{n}") for n in range(50)), rules=rules)
    assert state["_event_ids"] == [f"e{n}" for n in range(30, 50)]
    assert isinstance(merge_event(state, event({}, event_id="e30"), rules, (0, 99)), Duplicate)
    # Forgotten: applied again, as a list of the last 20 says.
    assert isinstance(merge_event(state, event({}, event_id="e29"), rules, (0, 99)), Applied)


def test_a_state_used_again_after_a_newer_one_still_knows_its_own_event_ids() -> None:
    # A flush that failed: the engine drops the newer state and reads the older one again.
    rules = MergeRules(max_event_ids=20)
    older = merge_all(*(event({}, event_id=f"e{n}") for n in range(40)), rules=rules)
    newer = merge_event(older, event({}, event_id="new"), rules, (0, 40))
    assert isinstance(newer, Applied)
    assert older["_event_ids"] == [f"e{n}" for n in range(20, 40)]
    for seen in ("e20", "e39"):
        assert isinstance(merge_event(older, event({}, event_id=seen), rules, (0, 41)), Duplicate)
    again = merge_event(older, event({}, event_id="new"), rules, (0, 40))
    assert isinstance(again, Applied)
    assert again.state["_event_ids"] == newer.state["_event_ids"]
    assert isinstance(merge_event(newer.state, event({}, event_id="e20"), rules, (0, 41)), Applied)
    assert isinstance(
        merge_event(newer.state, event({}, event_id="e21"), rules, (0, 41)), Duplicate
    )


def test_event_ids_decoded_from_the_table_work_as_those_kept_in_memory() -> None:
    rules = MergeRules(max_event_ids=20)
    kept = merge_all(*(event({}, event_id=f"e{n}") for n in range(30)), rules=rules)
    decoded = orjson.loads(encode_state(kept))
    assert decoded == kept
    for candidate in ("e9", "e10", "e29", "e30"):
        a = merge_event(kept, event({}, event_id=candidate), rules, (0, 30))
        b = merge_event(decoded, event({}, event_id=candidate), rules, (0, 30))
        assert type(a) is type(b)
        if isinstance(a, Applied) and isinstance(b, Applied):
            assert a.state == b.state


def test_format_time_is_rfc3339_utc_with_milliseconds() -> None:
    assert format_time(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


def test_format_time_stays_right_past_what_it_remembers() -> None:
    times = [1_700_000_000_000 + step * 997 for step in range(20_000)]
    expected = [
        datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        for ms in times
    ]
    assert [format_time(ms) for ms in times] == expected
    assert [format_time(ms) for ms in reversed(times)] == expected[::-1]


def test_a_merged_request_leaves_out_every_bookkeeping_name() -> None:
    state = merge_all(event({"a": 1}, event_id="e1"), event({"b": "+2"}, event_id="e2"))
    append(state, {"offset": 1}, 1000)
    assert {SEQUENCE, OPEN, SIZE} <= set(BOOKKEEPING)
    assert {name for name in state if name.startswith("_")} <= set(BOOKKEEPING)
    assert not [name for name in merged_request(state) if name.startswith("_")]


@settings(max_examples=1000)
@given(st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=1, max_size=30))
def test_integer_increments_sum_exactly(steps: list[int]) -> None:
    state = merge_all(*[event({"n": f"{'+' if s >= 0 else '-'}{abs(s)}"}) for s in steps])
    assert state["n"] == sum(steps)


@settings(max_examples=1000)
@given(
    st.lists(
        st.decimals(min_value=-1000, max_value=1000, places=6, allow_nan=False),
        min_size=1,
        max_size=20,
    )
)
def test_fractional_increments_are_exact_to_six_places(steps: list[Any]) -> None:
    incs = [f"{'+' if s >= 0 else '-'}{abs(s):.6f}" for s in steps]
    state = merge_all(*[event({"n": inc}) for inc in incs])
    assert round(state["n"], 6) == float(sum(steps))
