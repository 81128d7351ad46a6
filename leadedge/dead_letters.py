"""Dead letters: the original key and value bytes, with why and where from in headers."""

from __future__ import annotations

import time
from typing import Any, Protocol

from leadedge import metrics
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


class DeadLetterTopic(Protocol):
    """What sending a dead letter needs of a Faust topic."""

    async def send(self, *, key: Any, value: Any, headers: Any) -> Any:
        """Produce one record."""
        ...


async def send_dead_letter(
    topic: DeadLetterTopic, record: SourceRecord, rejection: Rejection
) -> None:
    """Produce the dead letter for `record` and count it by reason."""
    metrics.dead_letters_total.labels(rejection.reason).inc()
    await topic.send(
        key=record.key,
        value=record.value or b"",
        headers=dead_letter_headers(record, rejection, int(time.time() * 1000)),
    )
