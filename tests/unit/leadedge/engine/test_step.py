"""The per-event work: merge, history, dead letters and per-minute counts, owed to a flush."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from leadedge import health
from leadedge.engine import step as step_module
from leadedge.engine.undecodable import UNDECODABLE_HEADER
from leadedge.engine.write_back import DELETED, encode_value
from leadedge.rules.history import CHUNK_SIZE, chunk_key, open_entries
from leadedge.rules.merge import COUNT, format_time
from leadedge.rules.models import SourceRecord
from leadedge.rules.stats import WINDOW_MS, window_start
from leadedge.rules.stats_state import clock_key, partial_key
from tests.unit.leadedge.engine.fakes import NOW_MS, FailsOnce, build, record, records

WINDOW = f"default|web|{format_time(window_start(NOW_MS))}"
WINDOW_OF_UNKNOWN = f"default|unknown|{format_time(window_start(NOW_MS))}"


def source(value: bytes, key: bytes, *, offset: int = 0) -> SourceRecord:
    """One `requests` record as the step reads it."""
    return SourceRecord("requests", 0, offset, NOW_MS, key, value)


def test_applied_records_change_the_tables_caches_and_leave_the_stores_alone() -> None:
    harness = build()
    step = harness.step
    step.apply(records([b'{"id":"a","n":"+1"}', b'{"id":"a","n":"+2"}'], b"a"))
    assert step.merged.get(0, "a")["n"] == 3
    assert step.merged.get(0, "a")[COUNT] == 2
    assert step.partials.get(0, partial_key(WINDOW_OF_UNKNOWN, 0))["events"] == 2
    assert harness.merged == {} and harness.partials == {}
    assert step.tables == (step.history, step.partials, step.merged)
    assert step.acknowledged_first == (step.history, step.partials)


def test_every_merged_or_redelivered_request_is_owed_a_publication_once() -> None:
    step = build().step
    step.apply(
        [
            record(b'{"id":"a","n":"+1"}', b"a", offset=0),
            record(b'{"id":"b"}', b"b", offset=1),
            record(b'{"id":"a"}', b"a", offset=2),
        ]
    )
    step.apply([record(b'{"id":"a","n":"+5"}', b"a", offset=2)])  # offset 2 again
    pending = step.take()
    assert pending.emit == {"a": 0, "b": 0}
    assert pending.outcomes == {"merged": 3, "duplicate": 1}
    assert step.merged.get(0, "a")["n"] == 1  # the redelivery changed nothing
    assert step.take().emit == {}  # what was taken is owed by that flush only


def test_a_repeated_event_id_is_a_duplicate_that_changes_nothing() -> None:
    step = build().step
    step.apply(
        records(
            [b'{"id":"e","n":"+1","event_id":"x"}', b'{"id":"e","n":"+1","event_id":"x"}'], b"e"
        )
    )
    assert step.merged.get(0, "e")["n"] == 1
    assert step.take().outcomes == {"merged": 1, "duplicate": 1}


def test_a_bad_record_is_owed_a_dead_letter_and_the_next_one_still_merges() -> None:
    step = build().step
    step.apply(records([b"{", b'{"id":"x","n":"+1"}'], b"x", first_offset=7))
    pending = step.take()
    [(dead, rejection)] = pending.dead_letters
    assert (dead.offset, dead.value, dead.key, rejection.reason) == (7, b"{", b"x", "not_json")
    assert pending.emit == {"x": 0}
    assert pending.outcomes == {"dead_letter": 1, "merged": 1}
    assert pending.stats_outcomes == {"skipped": 1, "counted": 1}


def test_an_internal_error_becomes_a_dead_letter_and_the_next_record_still_merges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step = build().step
    broken = FailsOnce(step.processor.process_event)
    monkeypatch.setattr(step.processor, "process_event", broken)
    step.apply([record(b'{"id":"i1"}', b"i1", offset=0), record(b'{"id":"i2"}', b"i2", offset=1)])
    pending = step.take()
    [(dead, rejection)] = pending.dead_letters
    assert dead.offset == 0
    assert rejection.reason == "internal_error" and "boom" in rejection.detail
    assert pending.emit == {"i2": 0}


def test_a_filled_history_chunk_goes_to_the_history_table_and_the_oldest_is_deleted() -> None:
    step = build(history_length=CHUNK_SIZE).step
    values = [b'{"id":"h","i":%d}' % number for number in range(2 * CHUNK_SIZE + 1)]
    step.apply(records(values, b"h"))
    assert step.history.get(0, chunk_key("h", 0)) is DELETED  # past the limit
    # Entries are kept encoded (orjson fragments) until the flush: read as stored.
    stored = orjson.loads(orjson.dumps(step.history.get(0, chunk_key("h", 1))))
    assert [e["fields"]["i"] for e in stored] == list(range(CHUNK_SIZE, 2 * CHUNK_SIZE))
    state = orjson.loads(encode_value(step.merged.get(0, "h")))
    assert [e["fields"]["i"] for e in open_entries(state)] == [2 * CHUNK_SIZE]


def test_counted_events_owe_one_newest_partial_per_window() -> None:
    step = build().step
    step.apply(
        [
            record(b'{"id":"s1","source":"web","clicks":"+1"}', b"s1", offset=0),
            record(b'{"id":"s1","clicks":"+3"}', b"s1", offset=1),
            record(b"not json", b"s1", offset=2),
            record(b'{"id":"s1","clicks":{"a":1}}', b"s1", offset=3),  # a type conflict
            record(b'{"id":"s2","source":"web","clicks":"+0.5"}', b"s2", offset=4),
        ]
    )
    pending = step.take()
    [(window_id, partial)] = pending.partials.take()
    assert window_id == WINDOW
    assert (partial["events"], partial["new_requests"], partial["src"]) == (3, 2, 4)
    assert partial["counters"] == {"clicks": 4.5}
    assert pending.stats_outcomes == {"counted": 3, "skipped": 2}
    assert step.partials.get(0, partial_key(WINDOW, 0)) == partial


def test_a_late_event_merges_but_is_not_counted() -> None:
    step = build(stats_lateness_ms=0).step
    late_ts = NOW_MS - 3 * WINDOW_MS
    step.apply(
        [
            record(b'{"id":"n","source":"web"}', b"n", offset=0),
            record(b'{"id":"o","source":"web","ts":%d}' % late_ts, b"o", offset=1),
        ]
    )
    pending = step.take()
    assert pending.stats_outcomes == {"counted": 1, "late": 1}
    assert [window for window, _ in pending.partials.take()] == [WINDOW]
    assert pending.emit == {"n": 0, "o": 0}


async def test_kept_partials_are_sent_again_once_a_partition_is_read_once() -> None:
    first = build()
    first.handle(records([b'{"id":"a","source":"web"}'], b"a", partition=0))
    first.handle(records([b'{"id":"b","source":"app"}'], b"b", partition=1))
    assert await first.engine.flush()
    # A new process over the same stores: its partials may have been lost in a crash.
    step = build(stores=first.stores).step
    assert step.activate([0])
    resent = step.take().partials.take()
    assert [(window, partial["partition"]) for window, partial in resent] == [(WINDOW, 0)]
    assert not step.activate([0])
    assert step.take().partials.take() == []
    assert step.activate([0, 1])
    windows = [window for window, _ in step.take().partials.take()]
    assert windows == [f"default|app|{format_time(window_start(NOW_MS))}"]
    # A partition given up and taken again is sent again.
    step.drop([0])
    assert step.activate([0])


def test_a_stats_failure_skips_the_count_but_not_the_merge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = FailsOnce(step_module.count_applied)
    monkeypatch.setattr(step_module, "count_applied", broken)
    step = build().step
    step.apply(
        [
            record(b'{"id":"x1","source":1}', b"x1", offset=0),
            record(b'{"id":"x2","source":1}', b"x2", offset=1),
        ]
    )
    pending = step.take()
    assert pending.stats_outcomes == {"failed": 1, "counted": 1}
    assert pending.emit == {"x1": 0, "x2": 0}
    [(_, partial)] = pending.partials.take()
    assert partial["events"] == 1
    # /health names the lost count until a batch counts without one.
    assert "boom" in health.degraded()["stats-count"]
    step.apply([record(b'{"id":"x3","source":1}', b"x3", offset=2)])
    assert "stats-count" not in health.degraded()


def test_revoked_partitions_owe_nothing_and_their_changes_are_forgotten() -> None:
    step = build().step
    step.apply([record(b'{"id":"a","source":"web"}', b"a", partition=0), record(b"{", b"z")])
    step.apply([record(b'{"id":"b","source":"web"}', b"b", partition=1)])
    step.drop([0])
    assert step.merged.get(0, "a") is None
    assert step.partials.get(0, clock_key(0)) is None
    assert step.merged.get(1, "b") is not None
    pending = step.take()
    assert pending.emit == {"b": 1}
    assert pending.dead_letters == []
    assert [partial["partition"] for _, partial in pending.partials.take()] == [1]


def test_a_merge_returns_the_applied_outcome_for_the_count_to_use() -> None:
    step = build().step
    merged = step.merge(source(b'{"id":"m","n":"+1"}', b"m"))
    assert merged is not None and merged.created
    assert (merged.event.id, merged.event.fields) == ("m", {"n": "+1"})
    again = step.merge(source(b'{"id":"m","n":"+1"}', b"m", offset=1))
    assert again is not None and not again.created
    assert step.merge(source(b"{", b"m", offset=2)) is None
    assert step.merge(source(b'{"id":"m","n":"+1"}', b"m", offset=1)) is None  # redelivery
    assert step.take().outcomes == {"merged": 2, "dead_letter": 1, "duplicate": 1}


def test_a_parser_failure_is_a_dead_letter_and_the_record_is_not_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step = build().step

    def broken(record: Any) -> Any:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(step.processor, "parse", broken)
    step.apply([record(b'{"id":"p","source":"web"}', b"p")])
    pending = step.take()
    [(dead, rejection)] = pending.dead_letters
    assert dead.key == b"p"
    assert rejection.reason == "internal_error" and "parser bug" in rejection.detail
    assert pending.stats_outcomes == {"skipped": 1}
    assert pending.partials.take() == []
    assert step.merged.get(0, "p") is None


def test_an_offset_the_client_could_not_decode_is_owed_a_dead_letter_saying_why() -> None:
    step = build().step
    placeholder = record(None, None, offset=3)
    placeholder.headers = ((UNDECODABLE_HEADER, b"record batch at offsets 3..3 fails"),)
    step.apply([placeholder, record(b'{"id":"u","n":"+1"}', b"u", offset=4)])
    pending = step.take()
    [(dead, rejection)] = pending.dead_letters
    assert (dead.offset, dead.value, rejection.reason) == (3, None, "undecodable_record")
    assert "offsets 3..3" in rejection.detail
    assert pending.outcomes == {"dead_letter": 1, "merged": 1}


def test_a_record_without_a_value_is_still_an_empty_value_dead_letter() -> None:
    step = build().step
    step.apply([record(None, b"t", offset=0)])
    [(_, rejection)] = step.take().dead_letters
    assert rejection.reason == "empty_value"
