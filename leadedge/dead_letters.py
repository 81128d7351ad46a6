"""What a dead-letter record carries besides the original key and value bytes."""

from __future__ import annotations

from leadedge.merge import format_time
from leadedge.models import Rejection, SourceRecord

HEADER_PREFIX = "leadedge.error."


def dead_letter_headers(
    record: SourceRecord, rejection: Rejection, now_ms: int
) -> list[tuple[str, bytes]]:
    """Headers in the spirit of Kafka Connect's DLQ context headers."""
    fields = {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "topic": record.topic,
        "partition": str(record.partition),
        "offset": str(record.offset),
        "time": format_time(now_ms),
    }
    return [(HEADER_PREFIX + name, value.encode()) for name, value in fields.items()]
