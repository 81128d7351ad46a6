"""The merge functions against a small reference model, over generated event streams."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.rules.merge import Applied, Duplicate, MergeRules, merge_event, merged_request
from leadedge.rules.models import Event, Rejection
from leadedge.rules.stats import increments as stats_increments

EXAMPLES = 1000
NAMES = st.sampled_from(["a", "b", "c", "clicks"])


class Conflict(Exception):
    pass


def is_increment(value: str) -> bool:
    """DESIGN rule 1, written without the regex the product uses."""
    if len(value) < 2 or value[0] not in "+-":
        return False
    whole, _, fraction = value[1:].partition(".")
    digits = whole + fraction
    return bool(digits) and digits.isascii() and digits.isdigit() and value[1:].count(".") <= 1


def model_apply(
    current: dict[str, Any], fields: dict[str, Any], counters: set[str], path: str = ""
) -> dict[str, Any]:
    merged = dict(current)
    for name, value in fields.items():
        dotted = path + name
        if value is None:
            merged.pop(name, None)
        elif isinstance(value, dict):
            existing = merged.get(name, {})
            if not isinstance(existing, dict):
                raise Conflict
            merged[name] = model_apply(existing, value, counters, dotted + ".")
        elif (
            isinstance(value, str) and is_increment(value) and (not counters or dotted in counters)
        ):
            existing = merged.get(name, 0)
            if isinstance(existing, bool) or not isinstance(existing, (int, Decimal)):
                raise Conflict
            if isinstance(existing, int) and "." not in value:
                merged[name] = existing + int(value)
            else:
                merged[name] = Decimal(existing) + Decimal(value)
        else:
            merged[name] = value
    return merged


def comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, float):
        return ("fraction", round(Decimal(repr(value)), 6))
    if isinstance(value, Decimal):
        return ("fraction", round(value, 6))
    return value


increments = st.one_of(
    st.integers(-1000, 1000).map(lambda n: f"{'+' if n >= 0 else '-'}{abs(n)}"),
    st.decimals(-100, 100, places=3, allow_nan=False).map(
        lambda d: f"{'+' if d >= 0 else '-'}{abs(d)}"
    ),
)
scalars = st.one_of(
    increments,
    st.integers(-1000, 1000),
    st.booleans(),
    st.sampled_from(["x", "+", "1", "+1e2", "-"]),
    st.none(),
    st.lists(st.integers(0, 3), max_size=2),
)
field_values = st.recursive(
    scalars, lambda inner: st.dictionaries(NAMES, inner, max_size=3), max_leaves=6
)
event_fields = st.dictionaries(NAMES, field_values, max_size=4)


def event(fields: dict[str, Any], ts_ms: int = 0, event_id: str | None = None) -> Event:
    return Event(id="r", project="default", ts_ms=ts_ms, event_id=event_id, fields=fields)


def user_fields(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith("_") and k not in ("id", "project")}


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(event_fields, min_size=1, max_size=8), st.sets(NAMES, max_size=2))
def test_rules_1_to_5_and_7_match_the_model(
    stream: list[dict[str, Any]], counters: set[str]
) -> None:
    rules = MergeRules(counter_fields=frozenset(counters))
    state: dict[str, Any] | None = None
    model: dict[str, Any] = {}
    applied = 0
    for offset, fields in enumerate(stream):
        try:
            model = model_apply(model, fields, counters)
            expect_conflict = False
        except Conflict:
            expect_conflict = True
        outcome = merge_event(state, event(fields), rules, (0, offset))
        if expect_conflict:
            assert isinstance(outcome, Rejection) and outcome.reason == "type_conflict"
        else:
            assert isinstance(outcome, Applied)
            # The stats count the merge's own note of the increments it applied (one
            # walk of the event); `stats.increments` is the walk it replaces.
            assert outcome.increments == stats_increments(fields, rules)
            state = outcome.state
            applied += 1
        assert comparable(user_fields(state or {})) == comparable(model)
    assert (state or {}).get("_count", 0) == applied


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.integers(0, 4_000_000_000_000), min_size=1, max_size=10))
def test_rule_6_times_are_the_earliest_and_latest_and_count_the_applied(times: list[int]) -> None:
    state = None
    for offset, ts in enumerate(times):
        outcome = merge_event(state, event({"n": "+1"}, ts_ms=ts), MergeRules(), (0, offset))
        assert isinstance(outcome, Applied)
        state = outcome.state
    assert state is not None
    request = merged_request(state)
    assert state["_created_ms"] == min(times)
    assert state["_updated_ms"] == max(times)
    assert request["event_count"] == len(times) == request["n"]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=30))
def test_an_event_id_counts_once_however_often_it_is_resent(sends: list[int]) -> None:
    state = None
    for offset, event_id in enumerate(sends):
        outcome = merge_event(
            state, event({"c": f"+{event_id}"}, event_id=f"e{event_id}"), MergeRules(), (0, offset)
        )
        if isinstance(outcome, Applied):
            state = outcome.state
        else:
            assert isinstance(outcome, Duplicate)
    distinct = set(sends)
    assert state is not None
    assert state["c"] == sum(distinct)
    assert state["_count"] == len(distinct)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(increments, min_size=1, max_size=10), st.integers(0, 9))
def test_a_replay_from_an_earlier_offset_changes_nothing(
    stream: list[str], replay_from: int
) -> None:
    state = None
    for offset, inc in enumerate(stream):
        state = merge_event(state, event({"n": inc}), MergeRules(), (0, offset)).state  # type: ignore[union-attr]
    once = state
    for offset in range(min(replay_from, len(stream) - 1), len(stream)):
        assert isinstance(
            merge_event(state, event({"n": stream[offset]}), MergeRules(), (0, offset)), Duplicate
        )
    assert state == once
