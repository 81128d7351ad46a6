"""The per-minute aggregates' pure rules: windows, counting, partials, totals, expiry."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from leadedge.rules.enrich import Enricher
from leadedge.rules.merge import MergeRules
from leadedge.rules.models import Event, SourceRecord
from leadedge.rules.processing import Merged, RecordProcessor
from leadedge.rules.stats import (
    MAX_COUNTER_NAME_BYTES,
    MAX_OPEN_WINDOWS,
    MAX_SOURCE_CHARS,
    MAX_WINDOW_COUNTERS,
    OTHER_SOURCES,
    WINDOW_MS,
    Window,
    add_numbers,
    count_applied,
    increments,
    merge_partial,
    partial_counter_limit,
    source_label,
    window_document,
    window_start,
)
from leadedge.rules.stats_state import (
    HOUR_MS,
    KEEP_CLOSED_MS,
    PartitionCount,
    Plan,
    UnsentPartials,
    clock_key,
    kept_partials,
    plan_total,
)

T0 = 1_700_000_040_000  # 2023-11-14T22:14:00Z, a minute boundary
RULES = MergeRules()


def record(value: Any, offset: int, partition: int = 0, ts: int = T0) -> SourceRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    key = value.get("id", "").encode() if isinstance(value, dict) else b"x"
    return SourceRecord("requests", partition, offset, ts, key, raw)


class Table(dict[str, Any]):
    """Step 1's table as a dict, beside the merge's states, as the engine's step runs them."""

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[str, Any] = {}
        self.processor = RecordProcessor(RULES, Enricher(None), max_event_bytes=65536)

    def run(self, rec: SourceRecord, lateness_ms: int = 300_000) -> Plan:
        outcome = self.processor.process(rec, self.states.get)
        if not isinstance(outcome, Merged):
            return Plan(outcome="skipped")
        self.states[outcome.key] = outcome.state
        counted = count_applied(outcome.event, outcome.state, outcome.created, RULES)
        # One event at a time: each run of the engine's batch counting holds a single event.
        count = PartitionCount(self.get, rec.partition, lateness_ms=lateness_ms)
        outcome_name = count.add(
            counted,
            offset=rec.offset,
            event_ts_ms=outcome.event.ts_ms,
            record_ts_ms=rec.timestamp_ms,
        )
        plan = count.finish()
        plan.outcome = outcome_name
        for key, value in plan.writes:
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value
        return plan


def test_a_window_is_the_minute_of_the_event_time() -> None:
    assert window_start(T0) == T0
    assert window_start(T0 + WINDOW_MS - 1) == T0
    assert window_start(-1) == -WINDOW_MS
    window = Window("default", "2", T0)
    assert window.id == "default|2|2023-11-14T22:14:00.000Z"
    assert Window("a|b", "50%", T0).id == "a%7Cb|50%25|2023-11-14T22:14:00.000Z"


@pytest.mark.parametrize(
    ("value", "label"),
    [(2, "2"), ("2", "2"), (None, "unknown"), (True, "true"), ({"b": 1, "a": 2}, '{"a":2,"b":1}')],
)
def test_a_source_is_a_keyword(value: Any, label: str) -> None:
    assert source_label(value) == label


def test_increments_are_found_at_any_depth_and_follow_the_counter_list() -> None:
    fields = {"clicks": "+1", "price": 2.5, "nested": {"views": "-2", "name": "x"}, "s": "+x"}
    assert increments(fields, RULES) == {"clicks": "+1", "nested.views": "-2"}
    assert increments(fields, MergeRules(counter_fields=frozenset({"clicks"}))) == {"clicks": "+1"}


def test_sums_are_exact_like_the_merge() -> None:
    total: int | float = 0
    for _ in range(10):
        total = add_numbers(total, "+0.1")
    assert total == 1.0
    assert add_numbers(3, "+2") == 5 and isinstance(add_numbers(3, "+2"), int)
    assert add_numbers(1, 0.5) == 1.5


def event(request_id: str, **fields: Any) -> Event:
    return Event(id=request_id, project="default", ts_ms=T0 + 5_000, event_id=None, fields=fields)


def test_an_applied_event_counts_in_its_requests_source_window() -> None:
    first = count_applied(
        event("r", source=2, clicks="+1", tag="x"), {"source": 2}, created=True, rules=RULES
    )
    assert first.new_request and first.window == Window("default", "2", T0)
    assert first.counters == {"clicks": "+1"}
    second = count_applied(event("r", clicks="+3"), {"source": 2}, created=False, rules=RULES)
    assert not second.new_request
    assert second.window.source == "2"  # the request's source, not the event's
    assert second.counters == {"clicks": "+3"}


def test_a_record_counts_once_and_bad_ones_not_at_all() -> None:
    table = Table()
    table.run(record({"id": "a", "source": 1, "clicks": "+2"}, 0))
    table.run(record({"id": "a", "clicks": "+1", "impressions": "+0.5"}, 1))
    assert table.run(record({"id": "a", "clicks": "+1", "impressions": "+0.5"}, 1)).sends == []
    assert table.run(record(b"{", 2)).outcome == "skipped"
    assert table.run(record({"id": "a", "clicks": {"x": 1}}, 3)).outcome == "skipped"
    plan = table.run(record({"id": "b", "source": 1, "clicks": "+1"}, 4))
    [(window_id, partial)] = plan.sends
    assert window_id == "default|1|2023-11-14T22:14:00.000Z"
    assert (partial["events"], partial["new_requests"], partial["src"]) == (3, 2, 4)
    assert partial["counters"] == {"clicks": 4, "impressions": 0.5}


def test_an_event_after_its_window_closed_is_not_counted() -> None:
    table = Table()
    table.run(record({"id": "a", "source": 1}, 0, ts=T0))
    later = T0 + 7 * WINDOW_MS
    table.run(record({"id": "b", "source": 1, "ts": later}, 1, ts=later))
    plan = table.run(record({"id": "c", "source": 1, "ts": T0 + 1}, 2, ts=later))
    assert plan.outcome == "late" and plan.sends == []
    assert "c" in table.states  # the merge applied it all the same
    just_in_time = table.run(record({"id": "d", "ts": T0 + 2 * WINDOW_MS}, 3, ts=later))
    assert just_in_time.outcome == "counted"


def test_closed_partials_are_kept_for_a_while_then_dropped() -> None:
    table = Table()
    table.run(record({"id": "a", "source": 1}, 0))
    key = "w\x1fdefault|1|2023-11-14T22:14:00.000Z\x1f0"
    assert key in table
    closes = T0 + WINDOW_MS + 300_000
    table.run(record({"id": "b", "ts": closes}, 1, ts=closes))
    assert key in table
    table.run(record({"id": "c", "ts": closes + KEEP_CLOSED_MS}, 2, ts=closes + KEEP_CLOSED_MS))
    assert key not in table
    assert all(entry[1] != key for entry in table[clock_key(0)]["open"])


def test_a_future_ts_moves_the_clock_only_as_far_as_its_record_time() -> None:
    table = Table()
    table.run(record({"id": "a", "ts": T0 + 10**9}, 0, ts=T0))
    assert table[clock_key(0)]["stream_ms"] == T0
    assert table.run(record({"id": "b"}, 1, ts=T0 + 1)).outcome == "counted"


def test_every_kept_partial_of_a_partition_can_be_sent_again() -> None:
    table = Table()
    table.run(record({"id": "a", "source": 1}, 0))
    table.run(record({"id": "b", "source": 2}, 1))
    table.run(record({"id": "c", "source": 2}, 0, partition=1))
    kept = kept_partials(table.get, 0)
    assert [(doc["source"], doc["events"]) for _, doc in kept] == [("1", 1), ("2", 1)]
    assert [window_id for window_id, _ in kept] == [
        Window("default", "1", T0).id,
        Window("default", "2", T0).id,
    ]
    assert kept_partials({}.get, 0) == []


def test_a_replayed_record_already_in_its_partial_is_not_counted_again() -> None:
    table = Table()
    table.run(record({"id": "a", "source": 1, "clicks": "+1"}, 0))
    table.states.clear()  # the merged state was lost in a crash, the partial was not
    plan = table.run(record({"id": "a", "source": 1, "clicks": "+1"}, 0))
    assert plan.outcome == "repeated" and plan.sends == []


def partial(partition: int, src: int, events: int, **counters: Any) -> dict[str, Any]:
    return {
        "project": "default",
        "source": "1",
        "start_ms": T0,
        "partition": partition,
        "src": src,
        "events": events,
        "new_requests": 1,
        "counters": counters,
    }


def test_a_total_holds_the_newest_partial_of_each_partition() -> None:
    total = merge_partial(None, partial(0, 5, 2, clicks=3))
    total = merge_partial(total, partial(1, 9, 1, clicks=0.5))
    total = merge_partial(total, partial(0, 4, 1, clicks=1))  # older: ignored
    document = window_document(total)
    assert (document["events"], document["new_requests"]) == (3, 2)
    assert document["counters"] == {"clicks": 3.5}
    assert document["id"] == document["@timestamp"].join(["default|1|", ""])


def test_totals_are_published_even_unchanged_and_expire_by_the_hour() -> None:
    table: dict[str, Any] = {}
    retention = 2 * HOUR_MS

    def run(part: dict[str, Any], at: int) -> Any:
        plan = plan_total(table.get, part, partition=0, record_ts_ms=at, retention_ms=retention)
        for key, value in plan.writes:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return plan

    assert run(partial(0, 1, 1), T0).sends[0][1]["events"] == 1
    assert run(partial(0, 1, 1), T0).sends[0][1]["events"] == 1
    window_id = Window("default", "1", T0).id
    assert window_id in table
    far = T0 - T0 % HOUR_MS + HOUR_MS + retention
    assert run({**partial(0, 2, 1), "start_ms": far}, far).outcome == "counted"
    assert window_id not in table
    assert run(partial(0, 3, 5), far).outcome == "late"  # never restarts at zero
    assert window_id not in table


def test_held_partials_keep_only_the_newest_of_each_window_and_partition() -> None:
    unsent = UnsentPartials()
    unsent.add(1, [("w1", {"src": 1, "events": 1}), ("w2", {"src": 2, "events": 1})])
    unsent.add(1, [("w1", {"src": 3, "events": 2})])
    unsent.add(2, [("w1", {"src": 9, "events": 5})])
    assert len(unsent) == 3
    assert unsent.take() == [
        ("w1", {"src": 3, "events": 2}),
        ("w2", {"src": 2, "events": 1}),
        ("w1", {"src": 9, "events": 5}),
    ]
    assert unsent.take() == []


def test_a_long_source_is_cut_and_told_apart_by_a_hash_of_the_whole() -> None:
    first, second = source_label("s" * 70_000), source_label("s" * 69_999 + "t")
    assert len(first) == len(second) == MAX_SOURCE_CHARS
    assert first != second and first.startswith("s" * 100)
    assert source_label("s" * 70_000) == first  # the same source, the same window
    assert source_label("s" * MAX_SOURCE_CHARS) == "s" * MAX_SOURCE_CHARS


def count_names(count: PartitionCount, offset: int, names: list[str]) -> None:
    counted = count_applied(
        event("r", **dict.fromkeys(names, "+1")), {"source": 1}, created=False, rules=RULES
    )
    count.add(counted, offset=offset, event_ts_ms=T0 + 5_000, record_ts_ms=T0 + 5_000)


def test_a_window_counts_a_bounded_number_of_counter_names_and_says_how_many_it_dropped() -> None:
    table = Table()
    count = PartitionCount(table.get, 0, lateness_ms=300_000, max_counters=3)
    count_names(count, 0, ["a", "b"])
    count_names(count, 1, ["a", "c", "d", "e"])  # d and e: the partial is full
    count_names(count, 2, ["a", "b", "x" * (MAX_COUNTER_NAME_BYTES + 1)])  # too long a name
    [(_, partial)] = count.finish().sends
    assert partial["counters"] == {"a": 3, "b": 2, "c": 1}
    assert partial["counters_dropped"] == 3
    assert partial["events"] == 3
    other = {**partial, "partition": 1, "counters": {"a": 1}, "counters_dropped": 2}
    document = window_document(merge_partial(merge_partial(None, partial), other))
    assert document["counters"] == {"a": 4, "b": 2, "c": 1}
    assert document["counters_dropped"] == 5
    # A window that dropped nothing says nothing of it.
    assert "counters_dropped" not in window_document(
        merge_partial(None, {**other, "counters_dropped": 0})
    )


def test_no_events_can_make_a_windows_records_reach_kafkas_record_limit() -> None:
    # Twenty 64 KiB events of one source and minute, each with new counter names of the
    # longest length counted, through every partition of an 8-partition deployment.
    limit = partial_counter_limit(8)
    total = None
    for partition in range(8):
        count = PartitionCount(Table().get, partition, lateness_ms=300_000, max_counters=limit)
        for n in range(20):
            names = [f"{partition}-{n}-{i}-".ljust(MAX_COUNTER_NAME_BYTES, "n") for i in range(500)]
            count_names(count, n, names)
        [(_, partial)] = count.finish().sends
        assert len(orjson.dumps(partial)) < 100_000
        total = merge_partial(total, partial)
    assert total is not None
    assert len(orjson.dumps(total)) < 500_000
    document = window_document(total)
    assert len(document["counters"]) == MAX_WINDOW_COUNTERS
    assert len(orjson.dumps(document)) < 500_000


def test_a_source_per_request_opens_a_bounded_number_of_windows_and_counts_the_rest_together() -> (
    None
):
    table = Table()
    extra = 5
    for n in range(MAX_OPEN_WINDOWS + extra):
        count = PartitionCount(table.get, 0, lateness_ms=300_000)
        counted = count_applied(
            event(f"r{n}", clicks="+1"), {"source": f"s{n}"}, created=True, rules=RULES
        )
        for repeat in range(2):  # a second event of the same window in the same run
            assert (
                count.add(counted, offset=2 * n + repeat, event_ts_ms=T0, record_ts_ms=T0)
                == "counted"
            )
        for key, value in count.finish().writes:
            table[key] = value
    open_windows = table[clock_key(0)]["open"]
    assert len(open_windows) == MAX_OPEN_WINDOWS + 1  # and the one of the other sources
    [(window_id, other)] = [
        (window_id, partial)
        for window_id, partial in kept_partials(table.get, 0)
        if partial["source"] == OTHER_SOURCES
    ]
    assert window_id == Window("default", OTHER_SOURCES, T0).id
    assert (other["events"], other["new_requests"], other["counters"]) == (
        2 * extra,
        2 * extra,
        {"clicks": 2 * extra},
    )
