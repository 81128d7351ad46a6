"""Each request's timeline: the newest events in its merged state, older ones in chunks.

A request's n-th applied event goes to chunk n // CHUNK_SIZE. The chunk being filled
lives in the merged state itself (`_history_open`), so an event costs one table write,
not two: the state and its timeline are one value, written together or not at all. A
chunk moves to the history table only when it is full, and then the oldest chunk past
the limit is deleted, which keeps the timeline bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leadedge.rules.merge import format_time
from leadedge.rules.models import Event, SourceRecord, State

CHUNK_SIZE = 100
# An event larger than this shows in the timeline without its fields (its bytes, time and
# position only): a chunk of CHUNK_SIZE entries must stay well under Kafka's 1 MiB record.
MAX_ENTRY_BYTES = 4096
SEQUENCE = "_history_seq"
OPEN = "_history_open"


def chunk_key(request_id: str, chunk: int) -> str:
    """The table key of one chunk of a request's timeline."""
    return f"{request_id}\x1f{chunk}"


def entry(event: Event, record: SourceRecord) -> dict[str, Any]:
    """What the history shows of one applied event (its fields up to MAX_ENTRY_BYTES)."""
    item: dict[str, Any] = {
        "partition": record.partition,
        "offset": record.offset,
        "time": format_time(event.ts_ms),
    }
    size = len(record.value or b"")
    if size <= MAX_ENTRY_BYTES:
        item["fields"] = event.fields
    else:
        # The whole event stays in the topic (and the archive) at this position.
        item["fields_omitted_bytes"] = size
    if event.event_id is not None:
        item["event_id"] = event.event_id
    return item


@dataclass(frozen=True, slots=True)
class HistoryWrite:
    """Store the full chunk `entries` under number `chunk`; delete chunk `drop` if set."""

    chunk: int
    entries: list[dict[str, Any]]
    drop: int | None


def _full_chunks(limit: int) -> int:
    return max(1, -(-limit // CHUNK_SIZE))


def append(state: State, item: dict[str, Any], limit: int) -> HistoryWrite | None:
    """Add `item` to the state's open chunk; when that fills it, what to store and drop.

    The chunk is stored before the state that no longer holds it: after a crash between
    the two writes, the replayed event fills the same chunk again and stores it again.
    """
    sequence = state.get(SEQUENCE, 0)
    entries = [*state.get(OPEN, ()), item]
    state[SEQUENCE] = sequence + 1
    if len(entries) < CHUNK_SIZE:
        state[OPEN] = entries
        return None
    state[OPEN] = []
    chunk = sequence // CHUNK_SIZE
    # Full chunks enough for `limit` stay, plus the open one: never fewer than `limit`.
    drop = chunk - _full_chunks(limit)
    return HistoryWrite(chunk, entries, drop if drop >= 0 else None)


def chunks_to_read(total: int, limit: int) -> range:
    """The stored chunks that hold the latest events, oldest first; the open one follows."""
    stored = total // CHUNK_SIZE
    return range(max(0, stored - _full_chunks(limit)), stored)


def open_entries(state: State) -> list[dict[str, Any]]:
    """The newest events: the chunk being filled, kept in the state."""
    return list(state.get(OPEN, ()))


def page(events: list[dict[str, Any]], total: int, offset: int, limit: int) -> dict[str, Any]:
    """A page of the timeline, saying how many older events were dropped."""
    dropped = total - len(events)
    return {
        "total": total,
        "dropped": dropped,
        "truncated": dropped > 0,
        "offset": offset,
        "events": events[offset : offset + limit],
    }
