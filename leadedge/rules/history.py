"""Each request's timeline: the newest events in its merged state, older ones in chunks.

A request's n-th applied event goes to chunk n // its chunk size. The chunk being filled
lives in the merged state itself (`_history_open`), so an event costs one table write,
not two: the state and its timeline are one value, written together or not at all. A
chunk moves to the history table only when it is full, and then the oldest chunk past
the limit is deleted, which keeps the timeline bounded.

The open chunk is written with the state at every flush that changes it, so its size is
what a long request's every write carries: `CHUNK_SIZE` entries at most. Requests begun
before it was 10 keep the 100 they were begun with (`LEGACY_CHUNK_SIZE`): their stored
chunks are numbered by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orjson import Fragment

from leadedge.rules.merge import format_time
from leadedge.rules.models import Event, SourceRecord, State

CHUNK_SIZE = 10
LEGACY_CHUNK_SIZE = 100
# An event larger than this shows in the timeline without its fields (its bytes, time and
# position only): a chunk of CHUNK_SIZE entries must stay well under Kafka's 1 MiB record.
MAX_ENTRY_BYTES = 4096
SEQUENCE = "_history_seq"
OPEN = "_history_open"
# The chunk size of a request's timeline; a state that has a sequence but not this began
# with LEGACY_CHUNK_SIZE.
SIZE = "_history_chunk"
# One event of the timeline: `entry`'s dict, or the engine's encoding of it (an orjson
# fragment, written as the same JSON without being walked again).
Entry = dict[str, Any] | Fragment


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
    entries: list[Entry]
    drop: int | None


def _full_chunks(limit: int, size: int) -> int:
    return max(1, -(-limit // size))


def chunk_size(state: State) -> int:
    """The chunk size of the request's timeline (see the module's docstring)."""
    size = state.get(SIZE)
    if size is not None:
        return int(size)
    return LEGACY_CHUNK_SIZE if SEQUENCE in state else CHUNK_SIZE


def append(state: State, item: Entry, limit: int) -> HistoryWrite | None:
    """Add `item` to the state's open chunk; when that fills it, what to store and drop.

    The chunk is stored before the state that no longer holds it: after a crash between
    the two writes, the replayed event fills the same chunk again and stores it again.
    The open chunk is copied, not extended: the state before this event may still be
    flushed as it was.
    """
    sequence = state.get(SEQUENCE, 0)
    size = chunk_size(state)
    if sequence == 0:
        state[SIZE] = size
    entries = [*state.get(OPEN, ()), item]
    state[SEQUENCE] = sequence + 1
    if len(entries) < size:
        state[OPEN] = entries
        return None
    state[OPEN] = []
    chunk = sequence // size
    # Full chunks enough for `limit` stay, plus the open one: never fewer than `limit`.
    drop = chunk - _full_chunks(limit, size)
    return HistoryWrite(chunk, entries, drop if drop >= 0 else None)


def chunks_to_read(state: State, limit: int) -> range:
    """The stored chunks that hold the latest events, oldest first; the open one follows."""
    size = chunk_size(state)
    stored = state.get(SEQUENCE, 0) // size
    return range(max(0, stored - _full_chunks(limit, size)), stored)


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
