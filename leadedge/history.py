"""Each request's timeline, kept in fixed-size chunks so one event writes one small record.

A request's n-th applied event goes to chunk n // CHUNK_SIZE. Keeping whole chunks (not
one list per request) bounds what each event writes to the changelog, and dropping the
oldest chunk when the timeline is over its limit keeps it bounded too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leadedge.merge import format_time
from leadedge.models import Event, SourceRecord

CHUNK_SIZE = 100
SEQUENCE = "_history_seq"


def chunk_key(request_id: str, chunk: int) -> str:
    """The table key of one chunk of a request's timeline."""
    return f"{request_id}\x1f{chunk}"


def entry(event: Event, record: SourceRecord) -> dict[str, Any]:
    """What the history shows of one applied event."""
    item: dict[str, Any] = {
        "partition": record.partition,
        "offset": record.offset,
        "time": format_time(event.ts_ms),
        "fields": event.fields,
    }
    if event.event_id is not None:
        item["event_id"] = event.event_id
    return item


@dataclass(frozen=True, slots=True)
class HistoryWrite:
    """Append `item` to chunk `chunk`; delete chunk `drop` (older than the limit) if set."""

    chunk: int
    drop: int | None


def _full_chunks(limit: int) -> int:
    return max(1, -(-limit // CHUNK_SIZE))


def plan_append(sequence: int, limit: int) -> HistoryWrite:
    """Where the event numbered `sequence` (from 0) goes, and which chunk falls out."""
    chunk = sequence // CHUNK_SIZE
    # Full chunks enough for `limit`, plus the one being filled: never fewer than `limit`.
    drop = chunk - _full_chunks(limit) - 1
    return HistoryWrite(chunk, drop if sequence % CHUNK_SIZE == 0 and drop >= 0 else None)


def chunks_to_read(total: int, limit: int) -> range:
    """The chunks that hold the latest events, oldest first."""
    if total == 0:
        return range(0)
    last = (total - 1) // CHUNK_SIZE
    return range(max(0, last - _full_chunks(limit)), last + 1)


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
