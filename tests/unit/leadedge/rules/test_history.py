from __future__ import annotations

from typing import Any

from leadedge.rules.history import (
    CHUNK_SIZE,
    LEGACY_CHUNK_SIZE,
    OPEN,
    SEQUENCE,
    SIZE,
    append,
    chunk_size,
    chunks_to_read,
    open_entries,
    page,
)


def simulate(
    events: int, limit: int, state: dict[str, Any] | None = None
) -> tuple[dict[int, list[int]], dict[str, Any]]:
    """The stored chunks (number -> event numbers) and the state after `events` appends."""
    chunks: dict[int, list[int]] = {}
    state = {} if state is None else state
    for number in range(events):
        full = append(state, {"n": number}, limit)
        if full is not None:
            chunks[full.chunk] = [item["n"] for item in full.entries]
            if full.drop is not None:
                del chunks[full.drop]
    return chunks, state


def read(chunks: dict[int, list[int]], state: dict[str, Any], limit: int) -> list[int]:
    """What the history endpoint reads: the stored chunks to read, then the open one."""
    found = [n for chunk in chunks_to_read(state, limit) for n in chunks[chunk]]
    return found + [item["n"] for item in open_entries(state)]


def test_at_least_the_latest_limit_events_are_kept_and_read_in_order() -> None:
    for events in (0, 1, 99, 100, 101, 999, 1000, 1001, 1099, 1100, 1101, 5_432):
        chunks, state = simulate(events, 1000)
        found = read(chunks, state, 1000)
        assert len(found) >= min(events, 1000), events
        assert len(found) <= 1000 + CHUNK_SIZE, events
        assert found == list(range(events - len(found), events)), events
        assert set(chunks) == set(chunks_to_read(state, 1000)), "only what is read is kept"


def test_a_request_begun_with_chunks_of_100_goes_on_with_them() -> None:
    # 250 events stored before chunks were 10: a state with a sequence and no size.
    chunks, state = simulate(250, 1000, {SIZE: LEGACY_CHUNK_SIZE})
    del state[SIZE]
    assert len(state[OPEN]) == 50 and chunk_size(state) == LEGACY_CHUNK_SIZE
    for number in range(250, 1234):
        full = append(state, {"n": number}, 1000)
        if full is not None:
            chunks[full.chunk] = [item["n"] for item in full.entries]
            if full.drop is not None:
                del chunks[full.drop]
    assert SIZE not in state
    assert {len(entries) for entries in chunks.values()} == {LEGACY_CHUNK_SIZE}
    found = read(chunks, state, 1000)
    assert found == list(range(1234 - len(found), 1234)) and len(found) >= 1000


def test_a_new_request_s_open_chunk_holds_at_most_chunk_size_entries() -> None:
    chunks, state = simulate(CHUNK_SIZE * 7 + 3, 1000)
    assert state[SIZE] == CHUNK_SIZE == chunk_size(state)
    assert len(state[OPEN]) == 3
    assert all(len(entries) == CHUNK_SIZE for entries in chunks.values())


def test_the_open_chunk_lives_in_the_state_until_it_is_full() -> None:
    state: dict[str, Any] = {}
    for number in range(CHUNK_SIZE - 1):
        assert append(state, {"n": number}, 1000) is None
    assert len(state[OPEN]) == CHUNK_SIZE - 1
    full = append(state, {"n": CHUNK_SIZE - 1}, 1000)
    assert full is not None and full.chunk == 0 and len(full.entries) == CHUNK_SIZE
    assert state[OPEN] == [] and state[SEQUENCE] == CHUNK_SIZE


def test_the_answer_says_how_many_older_events_were_dropped() -> None:
    answer = page([{"n": i} for i in range(1000, 1200)], total=1200, offset=0, limit=50)
    assert answer["dropped"] == 1000
    assert answer["truncated"] is True
    assert answer["total"] == 1200
    assert [e["n"] for e in answer["events"]] == list(range(1000, 1050))


def test_an_untruncated_history_says_so() -> None:
    answer = page([{"n": 0}], total=1, offset=0, limit=10)
    assert answer["dropped"] == 0
    assert answer["truncated"] is False


def test_a_large_event_shows_in_the_timeline_without_its_fields() -> None:
    from leadedge.rules.history import MAX_ENTRY_BYTES, entry
    from leadedge.rules.models import Event, SourceRecord

    event = Event(id="a", project="default", ts_ms=0, event_id="e1", fields={"pad": "x" * 5000})
    big = SourceRecord("requests", 1, 7, 0, b"a", b"x" * (MAX_ENTRY_BYTES + 1))
    item = entry(event, big)
    assert "fields" not in item and item["fields_omitted_bytes"] == MAX_ENTRY_BYTES + 1
    assert (item["offset"], item["event_id"]) == (7, "e1")
    small = SourceRecord("requests", 1, 8, 0, b"a", b"{}")
    assert entry(event, small)["fields"] == {"pad": "x" * 5000}
