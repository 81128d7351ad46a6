from __future__ import annotations

from leadedge.history import CHUNK_SIZE, chunks_to_read, page, plan_append


def simulate(events: int, limit: int) -> dict[int, int]:
    """Chunk -> number of entries, applying plan_append's writes and drops."""
    chunks: dict[int, int] = {}
    for sequence in range(events):
        write = plan_append(sequence, limit)
        chunks[write.chunk] = chunks.get(write.chunk, 0) + 1
        if write.drop is not None:
            del chunks[write.drop]
    return chunks


def test_at_least_the_latest_limit_events_are_kept() -> None:
    for events in (1, 99, 100, 101, 999, 1000, 1001, 1099, 1100, 1101, 5_432):
        chunks = simulate(events, 1000)
        kept = sum(chunks.values())
        assert kept >= min(events, 1000), events
        assert kept <= 1000 + CHUNK_SIZE, events
        assert set(chunks) == set(chunks_to_read(events, 1000)), events


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
